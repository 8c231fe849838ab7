use webjit_jit::kernels::pool::{PoolConfig, PoolSpec};
use webjit_jit::KernelSpec;

use super::{expect_f32, expect_single};
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
    let lens_t = engine.upload_u32(&[batch], lens)?;
    let spec = PoolSpec {
        batch: batch as u64,
        seq: seq as u64,
        dim: dim as u64,
    };
    let c = engine.choose(&spec, cfg);
    let kernel = engine.pipelines.get(&engine.gpu, &spec, &c)?;
    let params = spec.params(&c);
    rec.dispatch(
        &kernel,
        bytemuck::bytes_of(&params),
        &[Bind::whole(x), Bind::whole(&lens_t), Bind::whole(&out)],
        spec.dispatch(&c),
    )?;
    Ok(out)
}
