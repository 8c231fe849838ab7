//! Rotary position embedding: `ops::rope` (table computed on the host for the given
//! positions) and `ops::rope_with_table` (a table shared by every q and k of a step).

pub use webjit_jit::kernels::rope::RopeFreqs;
use webjit_jit::kernels::rope::{rope_table_with as host_table, RopeConfig, RopeLayout, RopeSpec};
use webjit_jit::KernelSpec;

use super::{expect_f32, expect_single, output, Call, Op, OpSpec};
use crate::error::{Error, Result};
use crate::recorder::{Bind, Recorder, ReplayFactory};
use crate::tensor::Tensor;

const OP: &str = "rope";

#[derive(Clone, Debug)]
pub struct RopeOptions {
    pub layout: RopeLayout,
    /// Frequency base (10 000 for most models, 1 000 000 for Gemma 3's global layers).
    pub base: f64,
    /// Rotated dims per head; `None` rotates the whole head.
    pub rot_dims: Option<usize>,
}

/// Rotary embedding of x [tokens, heads, head_dim] at `positions` (one per token). Records x's
/// shape.
pub fn rope<'a>(x: &'a Tensor, positions: &'a [u32], opts: &'a RopeOptions) -> Call<'a, Rope<'a>> {
    Call::new(Rope {
        x,
        table: Table::Positions(positions),
        opts,
    })
}

/// `rope` with the (cos, sin) table of the tokens' positions from `rope_table`
/// ([tokens, rot / 2, 2]).
pub fn rope_with_table<'a>(
    x: &'a Tensor,
    table: &'a Tensor,
    opts: &'a RopeOptions,
) -> Call<'a, Rope<'a>> {
    Call::new(Rope {
        x,
        table: Table::Gpu(table),
        opts,
    })
}

/// The (cos, sin) table of `positions` for `rot` rotated dims: [tokens, rot / 2, 2] f32, written
/// at submit. Computed once and shared by every rope at the same positions and base (all of a
/// decoder's q and k of one layer kind).
pub fn rope_table(rec: &mut Recorder, positions: &[u32], rot: usize, base: f64) -> Result<Tensor> {
    rope_table_with(rec, positions, rot, base, &RopeFreqs::default())
}

/// `rope_table` with a model's frequency factors, linear scaling and attention factor.
pub fn rope_table_with(
    rec: &mut Recorder,
    positions: &[u32],
    rot: usize,
    base: f64,
    freqs: &RopeFreqs,
) -> Result<Tensor> {
    if !(base.is_finite() && base > 0.0) {
        return Err(Error::InvalidArgument {
            op: OP,
            detail: format!("base must be positive, got {base}"),
        });
    }
    if let Some(f) = &freqs.factors {
        if f.len() != rot / 2 || f.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(Error::InvalidArgument {
                op: OP,
                detail: format!(
                    "{} frequency factors for {} rotated pairs (each must be finite and > 0)",
                    f.len(),
                    rot / 2
                ),
            });
        }
    }
    let table = host_table(positions, rot, base, freqs);
    rec.upload_f32(&[positions.len(), rot / 2, 2], &table)
}

#[derive(Clone, Copy)]
enum Table<'a> {
    Positions(&'a [u32]),
    Gpu(&'a Tensor),
}

pub struct Rope<'a> {
    x: &'a Tensor,
    table: Table<'a>,
    opts: &'a RopeOptions,
}

impl Rope<'_> {
    /// (tokens, heads, head_dim, rot), checked against the table or positions.
    fn dims(&self) -> Result<(usize, usize, usize, usize)> {
        expect_f32(OP, self.x)?;
        expect_single(OP, "input", self.x)?;
        let &[tokens, heads, head_dim] = self.x.shape() else {
            return Err(Error::Shape {
                op: OP,
                detail: format!(
                    "expected [tokens, heads, head_dim], got {:?}",
                    self.x.shape()
                ),
            });
        };
        let rot = self.opts.rot_dims.unwrap_or(head_dim);
        match self.table {
            Table::Positions(p) if p.len() != tokens => Err(Error::Shape {
                op: OP,
                detail: format!("{} positions for {tokens} tokens", p.len()),
            }),
            Table::Gpu(t) if t.shape() != [tokens, rot / 2, 2] => Err(Error::Shape {
                op: OP,
                detail: format!(
                    "table {:?} is not [{tokens}, {}, 2] (one position per token)",
                    t.shape(),
                    rot / 2
                ),
            }),
            _ => Ok((tokens, heads, head_dim, rot)),
        }
    }
}

impl OpSpec for Rope<'_> {
    type Spec = RopeSpec;
    fn spec(&self) -> Result<RopeSpec> {
        let (tokens, heads, head_dim, rot) = self.dims()?;
        Ok(RopeSpec {
            layout: self.opts.layout,
            tokens: tokens as u64,
            heads: heads as u64,
            head_dim: head_dim as u64,
            rot: rot as u64,
        })
    }
}

impl Op for Rope<'_> {
    type Config = RopeConfig;
    type Output = Tensor;
    fn record_op(
        self,
        rec: &mut Recorder<'_>,
        out: Option<&Tensor>,
        cfg: Option<RopeConfig>,
    ) -> Result<Tensor> {
        let spec = self.spec()?;
        let x = self.x;
        let table = match self.table {
            Table::Gpu(t) => t.clone(),
            Table::Positions(p) => rope_table(rec, p, spec.rot as usize, self.opts.base)?,
        };
        let (c, kernel) = rec.kernel(&spec, cfg, || {
            let (x, table, opts) = (x.clone(), table.clone(), self.opts.clone());
            ReplayFactory::ready(move |rec, c: &RopeConfig| {
                rope_with_table(&x, &table, &opts)
                    .config(c.clone())
                    .record(rec)
            })
        })?;
        let out = output(rec, OP, out, x.shape())?;
        if spec.tokens == 0 || spec.heads == 0 {
            return Ok(out);
        }
        rec.dispatch(
            &kernel,
            bytemuck::bytes_of(&spec.params()),
            &[
                Bind::whole("x", x),
                Bind::whole("cs", &table),
                Bind::whole("out", &out),
            ],
            spec.dispatch(&c),
        )?;
        Ok(out)
    }
}
