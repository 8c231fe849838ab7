//! Decode attention against a `KvCache`: one query row per head, split over the cache length
//! (pass 1 writes per-split softmax partials to scratch) and merged by a second pass.

use webjit_jit::kernels::attention_decode::{
    DecodeConfig, DecodeReduceConfig, DecodeReduceSpec, DecodeSpec,
};
use webjit_jit::KernelSpec;

use super::attention::scale_and_cap;
use super::{expect_f32, expect_single, output, Call, Op, OpSpec};
use crate::error::{Error, Result};
use crate::kv_cache::KvCache;
use crate::recorder::{Bind, Recorder, ReplayFactory};
use crate::tensor::{DType, Tensor};

const OP: &str = "attention_decode";

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DecodeOptions {
    /// Attend only the last `window` positions (sliding-window layers).
    pub window: Option<u32>,
    /// Softmax scale; `None` = `1/sqrt(head_dim)`.
    pub scale: Option<f32>,
    /// Logit soft-capping `cap * tanh(s / cap)` after scaling.
    pub softcap: Option<f32>,
}

/// Decode attention of q [batch, n_heads, head_dim] f32 (the newest position, already appended
/// to `cache`) over the cache. Records [batch, n_heads, head_dim]. `Call::config` sets the
/// split pass's config, `reduce_config` the merge pass's.
pub fn attention_decode<'a>(
    q: &'a Tensor,
    cache: &'a KvCache,
    opts: &'a DecodeOptions,
) -> Call<'a, AttentionDecode<'a>> {
    Call::new(AttentionDecode {
        q,
        cache,
        opts,
        reduce: None,
    })
}

pub struct AttentionDecode<'a> {
    q: &'a Tensor,
    cache: &'a KvCache,
    opts: &'a DecodeOptions,
    reduce: Option<DecodeReduceConfig>,
}

impl<'a> Call<'a, AttentionDecode<'a>> {
    /// Runs config `c` of the merge pass.
    pub fn reduce_config(mut self, c: DecodeReduceConfig) -> Self {
        self.op_mut().reduce = Some(c);
        self
    }
}

impl OpSpec for AttentionDecode<'_> {
    type Spec = DecodeSpec;
    /// The split pass's problem.
    fn spec(&self) -> Result<DecodeSpec> {
        decode_spec(self.q, self.cache, self.opts)
    }
}

/// The split pass's problem, checked.
fn decode_spec(q: &Tensor, cache: &KvCache, opts: &DecodeOptions) -> Result<DecodeSpec> {
    expect_f32(OP, q)?;
    expect_single(OP, "q", q)?;
    let o = cache.options();
    let s = q.shape();
    if s.len() != 3 || s[0] != o.batch || s[2] != o.head_dim || !s[1].is_multiple_of(o.n_kv_heads) {
        return Err(Error::Shape {
            op: OP,
            detail: format!(
                "q {s:?} must be [{}, n_heads, {}] with n_heads a multiple of {} kv heads",
                o.batch, o.head_dim, o.n_kv_heads
            ),
        });
    }
    let (_, n) = cache.visible(opts.window)?;
    Ok(DecodeSpec {
        batch: o.batch as u64,
        n_heads: s[1] as u64,
        n_kv_heads: o.n_kv_heads as u64,
        head_dim: o.head_dim as u64,
        kv_dtype: cache.dtype(),
        kv_len: n as u64,
    })
}

impl Op for AttentionDecode<'_> {
    type Config = DecodeConfig;
    type Output = Tensor;
    fn record_op(
        self,
        rec: &mut Recorder<'_>,
        out: Option<&Tensor>,
        cfg: Option<DecodeConfig>,
    ) -> Result<Tensor> {
        let (q, cache, opts) = (self.q, self.cache, self.opts);
        let spec = decode_spec(q, cache, opts)?;
        let out = output(rec, OP, out, q.shape())?;
        expect_single(OP, "out", &out)?;
        let (scale, cap) = scale_and_cap(spec.head_dim as usize, opts.scale, opts.softcap)?;
        let (kv_start, _) = cache.visible(opts.window)?;
        // Replays run over a copy of the cache's handles with its length and options, so they
        // attend exactly what this step attends.
        let replay_of = |reduce: Option<DecodeReduceConfig>| {
            let (q, view, opts) = (q.clone(), cache.view(), opts.clone());
            move |rec: &mut Recorder<'_>,
                  c: Option<DecodeConfig>,
                  rc: Option<DecodeReduceConfig>| {
                let mut call = attention_decode(&q, &view, &opts).config_opt(c);
                if let Some(rc) = rc.or(reduce.clone()) {
                    call = call.reduce_config(rc);
                }
                call.record(rec)
            }
        };
        let reduce_cfg = self.reduce.clone();
        let (c, kernel) = rec.kernel(&spec, cfg, || {
            let f = replay_of(reduce_cfg.clone());
            ReplayFactory::ready(move |rec, c: &DecodeConfig| f(rec, Some(c.clone()), None))
        })?;
        let params = spec.params(&c, cache.options().capacity as u32, kv_start, scale, cap);
        if c.single_pass() {
            rec.dispatch(
                &kernel,
                bytemuck::bytes_of(&params),
                &[
                    Bind::whole("q", q),
                    Bind::whole("kc", cache.k()),
                    Bind::whole("vc", cache.v()),
                    Bind::whole("out", &out),
                ],
                spec.dispatch(&c),
            )?;
            return Ok(out);
        }
        let rows = spec.batch as usize * spec.n_heads as usize * params.n_split as usize;
        let part_ml = rec.empty(&[rows, 2], DType::F32)?;
        let part_acc = rec.empty(&[rows, spec.head_dim as usize], DType::F32)?;
        for t in [&part_ml, &part_acc] {
            expect_single(OP, "scratch", t)?;
        }
        rec.dispatch(
            &kernel,
            bytemuck::bytes_of(&params),
            &[
                Bind::whole("q", q),
                Bind::whole("kc", cache.k()),
                Bind::whole("vc", cache.v()),
                Bind::whole("part_ml", &part_ml),
                Bind::whole("part_acc", &part_acc),
            ],
            spec.dispatch(&c),
        )?;
        let rspec = DecodeReduceSpec {
            batch: spec.batch,
            n_heads: spec.n_heads,
            head_dim: spec.head_dim,
        };
        let split_cfg = c.clone();
        let (rc, rkernel) = rec.kernel(&rspec, self.reduce.clone(), || {
            let f = replay_of(None);
            ReplayFactory::ready(move |rec, rc: &DecodeReduceConfig| {
                f(rec, Some(split_cfg.clone()), Some(rc.clone()))
            })
        })?;
        rec.dispatch(
            &rkernel,
            bytemuck::bytes_of(&params),
            &[
                Bind::whole("part_ml", &part_ml),
                Bind::whole("part_acc", &part_acc),
                Bind::whole("out", &out),
            ],
            rspec.dispatch(&rc),
        )?;
        Ok(out)
    }
}
