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
    let &[_, _, head_dim] = x.shape() else {
        return Err(Error::Shape {
            op: "rope",
            detail: format!("expected [tokens, heads, head_dim], got {:?}", x.shape()),
        });
    };
    if positions.len() != x.shape()[0] {
        return Err(Error::Shape {
            op: "rope",
            detail: format!("{} positions for {} tokens", positions.len(), x.shape()[0]),
        });
    }
    let table = rope_table_tensor(rec, positions, opts.rot_dims.unwrap_or(head_dim), opts.base)?;
    rope_with_table(rec, x, &table, opts, cfg)
}

/// The (cos, sin) table of `positions` for `rot` rotated dims: [tokens, rot / 2, 2] f32.
/// Computed once and shared by every rope call at the same positions and base (all of a
/// decoder's q and k of one layer kind).
pub fn rope_table_tensor(
    rec: &mut Recorder,
    positions: &[u32],
    rot: usize,
    base: f64,
) -> Result<Tensor> {
    if !(base.is_finite() && base > 0.0) {
        return Err(Error::InvalidArgument {
            op: "rope",
            detail: format!("base must be positive, got {base}"),
        });
    }
    let table = rope_table(positions, rot, base);
    rec.upload_f32(&[positions.len(), rot / 2, 2], &table)
}

/// `rope_with` on a table from `rope_table_tensor` (its positions are the tokens of x).
pub fn rope_with_table(
    rec: &mut Recorder,
    x: &Tensor,
    table: &Tensor,
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
    let rot = opts.rot_dims.unwrap_or(head_dim);
    if table.shape() != [tokens, rot / 2, 2] {
        return Err(Error::Shape {
            op: "rope",
            detail: format!(
                "table {:?} is not [{tokens}, {}, 2] (one position per token)",
                table.shape(),
                rot / 2
            ),
        });
    }
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
    if tokens == 0 || heads == 0 {
        return rec.empty(x.shape(), DType::F32);
    }
    let out = rec.empty(x.shape(), DType::F32)?;
    let params = spec.params();
    rec.dispatch(
        &kernel,
        bytemuck::bytes_of(&params),
        &[Bind::whole(x), Bind::whole(table), Bind::whole(&out)],
        spec.dispatch(&c),
    )?;
    Ok(out)
}
