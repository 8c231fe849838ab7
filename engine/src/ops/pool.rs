use webjit_jit::kernels::pool::{PoolConfig, PoolSpec};
use webjit_jit::KernelSpec;

use super::{expect_f32, expect_single, LayerNormIn};
use crate::error::{Error, Result};
use crate::recorder::{Bind, Recorder};
use crate::tensor::{DType, Tensor};

/// Mean over the first `lens[b]` tokens of each sequence of x: [batch, seq, dim] -> [batch, dim].
pub fn mean_pool(rec: &mut Recorder, x: &Tensor, lens: &[u32]) -> Result<Tensor> {
    mean_pool_with(rec, x, lens, None)
}

pub fn mean_pool_with(
    rec: &mut Recorder,
    x: &Tensor,
    lens: &[u32],
    cfg: Option<PoolConfig>,
) -> Result<Tensor> {
    mean_pool_opts(rec, x, lens, &PoolOptions::default(), cfg)
}

/// What `mean_pool_opts` does around the mean.
#[derive(Clone, Copy, Default)]
pub struct PoolOptions<'t> {
    /// LayerNorm of every token's row before it is averaged (an encoder's last LayerNorm).
    pub norm: Option<LayerNormIn<'t>>,
    /// Divide each pooled vector by `max(|v|, eps)` (a unit-length sentence embedding).
    pub l2_eps: Option<f32>,
}

/// `mean_pool` with a LayerNorm of each row before it and an L2 normalization after it, in
/// one dispatch (one workgroup per sequence): x [batch, seq, dim] -> [batch, dim].
///
/// ```no_run
/// # fn f(rec: &mut webjit_engine::Recorder, x: &webjit_engine::Tensor,
/// #      g: &webjit_engine::Tensor, b: &webjit_engine::Tensor) -> webjit_engine::Result<()> {
/// use webjit_engine::ops::{mean_pool_opts, LayerNormIn, PoolOptions};
/// let opts = PoolOptions {
///     norm: Some(LayerNormIn { gamma: g, beta: b, eps: 1e-12 }),
///     l2_eps: Some(1e-12),
/// };
/// let embeddings = mean_pool_opts(rec, x, &[5, 3], &opts, None)?;
/// # Ok(()) }
/// ```
pub fn mean_pool_opts(
    rec: &mut Recorder,
    x: &Tensor,
    lens: &[u32],
    opts: &PoolOptions<'_>,
    cfg: Option<PoolConfig>,
) -> Result<Tensor> {
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
    let engine = rec.engine();
    let out = engine.empty(&[batch, dim], DType::F32)?;
    if batch == 0 {
        return Ok(out);
    }
    let mut binds = vec![Bind::whole(x)];
    if let Some(ln) = opts.norm {
        ln.check("mean_pool", dim)?;
    }
    if let Some(eps) = opts.l2_eps.filter(|e| !(e.is_finite() && *e > 0.0)) {
        return Err(Error::InvalidArgument {
            op: "mean_pool",
            detail: format!("L2 epsilon must be positive, got {eps}"),
        });
    }
    let lens_t = engine.upload_u32(&[batch], lens)?;
    binds.push(Bind::whole(&lens_t));
    binds.push(Bind::whole(&out));
    if let Some(ln) = opts.norm {
        binds.push(Bind::whole(ln.gamma));
        binds.push(Bind::whole(ln.beta));
    }
    let spec = PoolSpec {
        batch: batch as u64,
        seq: seq as u64,
        dim: dim as u64,
        norm: opts.norm.is_some(),
        l2: opts.l2_eps.is_some(),
    };
    let c = engine.choose(&spec, cfg);
    let kernel = engine.pipelines.get(&engine.gpu, &spec, &c)?;
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
