//! `ops::kv_append`: K and V rows of new positions into a `KvCache`.

use webjit_jit::kernels::attention_decode::{KvAppendConfig, KvAppendSpec};
use webjit_jit::kernels::kivi::KiviFlushSpec;
use webjit_jit::KernelSpec;

use super::{expect_f32, expect_single, no_out, Call, Op, OpSpec};
use crate::error::{Error, Result};
use crate::kv_cache::{KvCache, KvDType};
use crate::recorder::{Bind, Recorder, ReplayFactory};
use crate::tensor::Tensor;

const OP: &str = "kv_cache";

/// Appends K and V rows for the next `n_new` positions of `cache`: k_new, v_new
/// [batch, n_new, n_kv_heads, head_dim] f32 (already RoPE'd). A quantized cache (q8_0, q4_0)
/// also rewrites k_new and v_new in place with the values it now holds (quantized, then
/// dequantized), so a prompt's attention over them sees what later decode steps will read, as
/// llama.cpp's attention over its quantized cache does; they must then be distinct tensors.
/// Where the cache has a `key_rotation`, k_new must come rotated (`ops::hadamard`), and the
/// queries that attend it alike: this op stores what it is given.
/// A kivi2 cache keeps k_new and v_new as they are (the prompt attends at full precision, as
/// KIVI does): it quantizes the groups the new positions complete, then keeps the last ones in
/// its f16 residual window.
pub fn kv_append<'a>(
    cache: &'a mut KvCache,
    k_new: &'a Tensor,
    v_new: &'a Tensor,
) -> Call<'a, KvAppend<'a>> {
    Call::new(KvAppend {
        cache,
        k_new,
        v_new,
    })
}

pub struct KvAppend<'a> {
    cache: &'a mut KvCache,
    k_new: &'a Tensor,
    v_new: &'a Tensor,
}

impl OpSpec for KvAppend<'_> {
    type Spec = KvAppendSpec;
    fn spec(&self) -> Result<KvAppendSpec> {
        let o = self.cache.options();
        for (name, t) in [("k_new", self.k_new), ("v_new", self.v_new)] {
            expect_f32(OP, t)?;
            expect_single(OP, name, t)?;
            let s = t.shape();
            if s.len() != 4 || s[0] != o.batch || s[2] != o.n_kv_heads || s[3] != o.head_dim {
                return Err(Error::Shape {
                    op: OP,
                    detail: format!(
                        "{name} {s:?} must be [{}, n_new, {}, {}]",
                        o.batch, o.n_kv_heads, o.head_dim
                    ),
                });
            }
        }
        let same = |a: &Tensor, b: &Tensor| {
            std::sync::Arc::ptr_eq(&a.segments()[0].buffer, &b.segments()[0].buffer)
        };
        if self.cache.dtype().quantized() && same(self.k_new, self.v_new) {
            return Err(Error::InvalidArgument {
                op: OP,
                detail: format!(
                    "a {} cache writes k_new and v_new back in place: they must be different \
                     tensors, not one buffer",
                    self.cache.dtype().name()
                ),
            });
        }
        if self.k_new.shape() != self.v_new.shape() {
            return Err(Error::Shape {
                op: OP,
                detail: format!(
                    "k_new {:?} and v_new {:?} differ",
                    self.k_new.shape(),
                    self.v_new.shape()
                ),
            });
        }
        Ok(KvAppendSpec {
            batch: o.batch as u64,
            n_new: self.k_new.shape()[1] as u64,
            n_kv_heads: o.n_kv_heads as u64,
            head_dim: o.head_dim as u64,
            kv_dtype: self.cache.dtype(),
        })
    }
}

impl Op for KvAppend<'_> {
    type Config = KvAppendConfig;
    /// The cache's storage is the output; nothing new is made.
    type Output = ();
    fn record_op(
        self,
        rec: &mut Recorder<'_>,
        out: Option<&Tensor>,
        config: Option<KvAppendConfig>,
    ) -> Result<()> {
        no_out(OP, out)?;
        let spec = self.spec()?;
        let end = self.cache.append_end(spec.n_new as usize)?;
        let cache = self.cache;
        let (k_new, v_new) = (self.k_new, self.v_new);
        let (c, kernel) = rec.kernel(&spec, config, || {
            // A replay writes the same positions again and reads them back as its output.
            let (view, k, v) = (cache.view(), k_new.clone(), v_new.clone());
            ReplayFactory::ready(move |rec, c: &KvAppendConfig| {
                let mut view = view.view();
                kv_append(&mut view, &k, &v).config(c.clone()).record(rec)?;
                Ok(view.k().clone())
            })
        })?;
        if cache.dtype() == KvDType::Kivi2 {
            // Before the residual write, which may overwrite rows the flush reads.
            let (pos, n) = (cache.len(), spec.n_new as usize);
            kivi_flush(rec, cache, pos, n, (k_new, v_new, pos))?;
        }
        let params = spec.params(cache.options().capacity as u32, cache.len() as u32);
        rec.dispatch(
            &kernel,
            bytemuck::bytes_of(&params),
            &[
                Bind::whole("k_new", k_new),
                Bind::whole("v_new", v_new),
                Bind::whole("kc", cache.k()),
                Bind::whole("vc", cache.v()),
            ],
            spec.dispatch(&c),
        )?;
        cache.set_len(end);
        Ok(())
    }
}

/// kivi2: records the flush of the groups that appending `n_new` positions at `pos` completes
/// (none: no dispatch). `rows` = (k_new, v_new, first position they hold): positions from
/// there on are read from them, earlier ones from the residual window.
pub(crate) fn kivi_flush(
    rec: &mut Recorder<'_>,
    cache: &KvCache,
    pos: usize,
    n_new: usize,
    rows: (&Tensor, &Tensor, usize),
) -> Result<()> {
    let (g0, n_groups) = KiviFlushSpec::completed(pos as u64, n_new as u64);
    if n_groups == 0 {
        return Ok(());
    }
    let o = cache.options();
    let spec = KiviFlushSpec {
        batch: o.batch as u64,
        n_kv_heads: o.n_kv_heads as u64,
        head_dim: o.head_dim as u64,
        n_groups,
    };
    // A fixed config: the flush runs once every 128 positions, so tuning it buys nothing.
    let cfg = spec.default_config(rec.engine().profile());
    let (_, kernel) = rec.kernel(&spec, Some(cfg.clone()), || {
        ReplayFactory::ready(|_, _| {
            Err(Error::InvalidArgument {
                op: OP,
                detail: "the kivi2 flush has a fixed config and no replay".into(),
            })
        })
    })?;
    let (k, v, from) = rows;
    let n_rows = (pos + n_new).saturating_sub(from);
    let params = spec.params(o.capacity as u32, from as u32, n_rows as u32, g0 as u32);
    rec.dispatch(
        &kernel,
        bytemuck::bytes_of(&params),
        &[
            Bind::whole("k_new", k),
            Bind::whole("v_new", v),
            Bind::whole("kc", cache.k()),
            Bind::whole("vc", cache.v()),
        ],
        spec.dispatch(&cfg),
    )
}
