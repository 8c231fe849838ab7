//! Mean pooling of token rows into one vector per sequence: `ops::mean_pool`.

use webjit_jit::kernels::pool::{PoolConfig, PoolSpec};
use webjit_jit::KernelSpec;

use super::{expect_f32, expect_single, output, Call, LayerNormIn, Op, OpSpec};
use crate::error::{Error, Result};
use crate::recorder::{Bind, Recorder, ReplayFactory};
use crate::tensor::Tensor;

/// What `mean_pool` does around the mean (`Default`: nothing).
#[derive(Clone, Copy, Default)]
pub struct PoolOptions<'t> {
    /// LayerNorm of every token's row before it is averaged (an encoder's last LayerNorm).
    pub norm: Option<LayerNormIn<'t>>,
    /// Divide each pooled vector by `max(|v|, eps)` (a unit-length sentence embedding).
    pub l2_eps: Option<f32>,
}

/// Mean over the first `lens[b]` tokens of each sequence of x: [batch, seq, dim] ->
/// [batch, dim], with a LayerNorm of each row before it and an L2 normalization after it when
/// `opts` asks, in one dispatch (one workgroup per sequence).
///
/// ```no_run
/// # fn f(rec: &mut webjit_engine::Recorder, x: &webjit_engine::Tensor,
/// #      g: &webjit_engine::Tensor, b: &webjit_engine::Tensor) -> webjit_engine::Result<()> {
/// use webjit_engine::ops::{self, LayerNormIn, PoolOptions};
/// let opts = PoolOptions {
///     norm: Some(LayerNormIn { gamma: g, beta: b, eps: 1e-12 }),
///     l2_eps: Some(1e-12),
/// };
/// let embeddings = ops::mean_pool(x, &[5, 3], opts).record(rec)?;
/// # Ok(()) }
/// ```
pub fn mean_pool<'a>(
    x: &'a Tensor,
    lens: &'a [u32],
    opts: PoolOptions<'a>,
) -> Call<'a, MeanPool<'a>> {
    Call::new(MeanPool { x, lens, opts })
}

pub struct MeanPool<'a> {
    x: &'a Tensor,
    lens: &'a [u32],
    opts: PoolOptions<'a>,
}

impl OpSpec for MeanPool<'_> {
    type Spec = PoolSpec;
    fn spec(&self) -> Result<PoolSpec> {
        let (x, lens, opts) = (self.x, self.lens, &self.opts);
        expect_f32("mean_pool", x)?;
        expect_single("mean_pool", "input", x)?;
        let &[batch, seq, dim] = x.shape() else {
            return Err(Error::Shape {
                op: "mean_pool",
                detail: format!("expected [batch, seq, dim], got {:?}", x.shape()),
            });
        };
        if lens.len() != batch {
            return Err(Error::Shape {
                op: "mean_pool",
                detail: format!("{} lengths for a batch of {batch}", lens.len()),
            });
        }
        if let Some(&bad) = lens.iter().find(|&&l| l == 0 || l as usize > seq) {
            return Err(Error::InvalidArgument {
                op: "mean_pool",
                detail: format!("length {bad} outside 1..={seq}"),
            });
        }
        if let Some(ln) = opts.norm {
            ln.check("mean_pool", dim)?;
        }
        if let Some(eps) = opts.l2_eps.filter(|e| !(e.is_finite() && *e > 0.0)) {
            return Err(Error::InvalidArgument {
                op: "mean_pool",
                detail: format!("L2 epsilon must be positive, got {eps}"),
            });
        }
        Ok(PoolSpec {
            batch: batch as u64,
            seq: seq as u64,
            dim: dim as u64,
            norm: opts.norm.is_some(),
            l2: opts.l2_eps.is_some(),
        })
    }
}

impl Op for MeanPool<'_> {
    type Config = PoolConfig;
    type Output = Tensor;
    fn record_op(
        self,
        rec: &mut Recorder<'_>,
        out: Option<&Tensor>,
        cfg: Option<PoolConfig>,
    ) -> Result<Tensor> {
        let spec = self.spec()?;
        let (x, lens, opts) = (self.x, self.lens, self.opts);
        let (batch, dim) = (spec.batch as usize, spec.dim as usize);
        let out = output(rec, "mean_pool", out, &[batch, dim])?;
        if batch == 0 {
            return Ok(out);
        }
        let lens_t = rec.upload_u32(&[batch], lens)?;
        let (c, kernel) = rec.kernel(&spec, cfg, || {
            let (x, lens) = (x.clone(), lens.to_vec());
            let norm = opts.norm.map(|n| (n.gamma.clone(), n.beta.clone(), n.eps));
            let l2_eps = opts.l2_eps;
            ReplayFactory::ready(move |rec, c: &PoolConfig| {
                let opts = PoolOptions {
                    norm: norm.as_ref().map(|(gamma, beta, eps)| LayerNormIn {
                        gamma,
                        beta,
                        eps: *eps,
                    }),
                    l2_eps,
                };
                mean_pool(&x, &lens, opts).config(c.clone()).record(rec)
            })
        })?;
        let mut binds = vec![
            Bind::whole("x", x),
            Bind::whole("lens", &lens_t),
            Bind::whole("out", &out),
        ];
        if let Some(ln) = opts.norm {
            binds.push(Bind::whole("ln_g", ln.gamma));
            binds.push(Bind::whole("ln_b", ln.beta));
        }
        let mut params = spec.params(&c);
        params.eps = opts.norm.map_or(0.0, |n| n.eps);
        params.l2_eps = opts.l2_eps.unwrap_or(0.0);
        rec.dispatch(
            &kernel,
            bytemuck::bytes_of(&params),
            &binds,
            spec.dispatch(&c),
        )?;
        Ok(out)
    }
}
