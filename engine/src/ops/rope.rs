use webjit_jit::kernels::rope::{rope_table, RopeConfig, RopeLayout, RopeSpec};
use webjit_jit::KernelSpec;

use super::{expect_f32, expect_single};
use crate::error::{Error, Result};
use crate::recorder::{Bind, Recorder};
use crate::tensor::{DType, Tensor};

#[derive(Clone, Debug)]
pub struct RopeOptions {
    pub layout: RopeLayout,
    /// Frequency base (10 000 for most models, 1 000 000 for Gemma 3's global layers).
    pub base: f64,
    /// Rotated dims per head; `None` rotates the whole head.
    pub rot_dims: Option<usize>,
}

/// Rotary embedding of x: [tokens, heads, head_dim] at `positions` (one per token).
pub fn rope(
    rec: &mut Recorder,
    x: &Tensor,
    positions: &[u32],
    opts: &RopeOptions,
) -> Result<Tensor> {
    rope_with(rec, x, positions, opts, None)
}

pub fn rope_with(
    rec: &mut Recorder,
    x: &Tensor,
    positions: &[u32],
    opts: &RopeOptions,
    cfg: Option<RopeConfig>,
) -> Result<Tensor> {
    expect_f32("rope", x)?;
    expect_single("rope", "input", x)?;
    let &[tokens, heads, head_dim] = x.shape() else {
        return Err(Error::Shape {
            op: "rope",
            detail: format!("expected [tokens, heads, head_dim], got {:?}", x.shape()),
        });
    };
    if positions.len() != tokens {
        return Err(Error::Shape {
            op: "rope",
            detail: format!("{} positions for {tokens} tokens", positions.len()),
        });
    }
    if !(opts.base.is_finite() && opts.base > 0.0) {
        return Err(Error::InvalidArgument {
            op: "rope",
            detail: format!("base must be positive, got {}", opts.base),
        });
    }
    let rot = opts.rot_dims.unwrap_or(head_dim);
    let spec = RopeSpec {
        layout: opts.layout,
        tokens: tokens as u64,
        heads: heads as u64,
        head_dim: head_dim as u64,
        rot: rot as u64,
    };
    let engine = rec.engine();
    let c = engine.choose(&spec, cfg);
    let kernel = engine.pipelines.get(&engine.gpu, &spec, &c)?;
    let table = rope_table(positions, rot, opts.base);
    if tokens == 0 || heads == 0 {
        return rec.empty(x.shape(), DType::F32);
    }
    let cs = rec.upload_f32(&[table.len()], &table)?;
    let out = rec.empty(x.shape(), DType::F32)?;
    let params = spec.params();
    rec.dispatch(
        &kernel,
        bytemuck::bytes_of(&params),
        &[Bind::whole(x), Bind::whole(&cs), Bind::whole(&out)],
        spec.dispatch(&c),
    )?;
    Ok(out)
}
