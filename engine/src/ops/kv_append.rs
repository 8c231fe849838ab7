//! `ops::kv_append`: K and V rows of new positions into a `KvCache`.

use webjit_jit::kernels::attention_decode::{KvAppendConfig, KvAppendSpec};
use webjit_jit::KernelSpec;

use super::{expect_f32, expect_single, no_out, Call, Op, OpSpec};
use crate::error::{Error, Result};
use crate::kv_cache::KvCache;
use crate::recorder::{Bind, Recorder, ReplayFactory};
use crate::tensor::Tensor;

const OP: &str = "kv_cache";

/// Appends K and V rows for the next `n_new` positions of `cache`: k_new, v_new
/// [batch, n_new, n_kv_heads, head_dim] f32 (already RoPE'd). A quantized cache (q8_0, q4_0)
/// also rewrites k_new and v_new in place with the values it now holds (quantized, then
/// dequantized), so a prompt's attention over them sees what later decode steps will read, as
/// llama.cpp's attention over its quantized cache does; they must then be distinct tensors.
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
