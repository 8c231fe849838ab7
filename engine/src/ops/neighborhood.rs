//! Fused neighborhood attention (NATTEN semantics):
//! `ops::neighborhood_attention(q, k, v, &NaOptions)`.

use webjit_jit::kernels::neighborhood::{NeighborhoodConfig, NeighborhoodSpec, MAX_HEAD_DIM};
use webjit_jit::KernelSpec;

use super::{expect_f32, expect_single, output, Call, Op, OpSpec};
use crate::error::{Error, Result};
use crate::recorder::{Bind, Recorder, ReplayFactory};
use crate::tensor::Tensor;

const OP: &str = "neighborhood_attention";

/// Per-axis options, one entry per token axis (1, 2 or 3; outermost first).
#[derive(Clone, Default)]
pub struct NaOptions {
    /// Kernel size per axis: odd, and `kernel * dilation <= axis length`.
    pub kernel: Vec<u32>,
    /// Dilation per axis; empty = 1 on every axis.
    pub dilation: Vec<u32>,
    /// Causal flag per axis; empty = none. A causal axis sees group positions
    /// `i - (k - 1) ..= i` (fewer near the start, no shift).
    pub causal: Vec<bool>,
    /// Additive relative positional bias [heads, 2*k0-1(, 2*k1-1(, 2*k2-1))], indexed per axis
    /// by `(key - query) + k - 1` in dilation-group steps (NAT's bias).
    pub rpb: Option<Tensor>,
    /// Softmax scale; `None` = `1/sqrt(head_dim)`.
    pub scale: Option<f32>,
}

fn invalid(detail: String) -> Error {
    Error::InvalidArgument { op: OP, detail }
}

fn shape_err(detail: String) -> Error {
    Error::Shape { op: OP, detail }
}

/// The problem these operands and options pose, every argument validated.
/// q, k, v: [batch, heads, X(, Y(, Z)), head_dim] f32.
fn neighborhood_spec(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    opts: &NaOptions,
) -> Result<NeighborhoodSpec> {
    for (name, t) in [("q", q), ("k", k), ("v", v)] {
        expect_f32(OP, t)?;
        expect_single(OP, name, t)?;
    }
    let qs = q.shape();
    if !(4..=6).contains(&qs.len()) {
        return Err(shape_err(format!(
            "q must be [batch, heads, X(, Y(, Z)), head_dim] with 1 to 3 token axes, got {qs:?}"
        )));
    }
    if k.shape() != qs || v.shape() != qs {
        return Err(shape_err(format!(
            "q {qs:?}, k {:?} and v {:?} must have the same shape",
            k.shape(),
            v.shape()
        )));
    }
    let rank = qs.len() - 3;
    let dims = &qs[2..2 + rank];
    let head_dim = qs[qs.len() - 1];
    if head_dim == 0 || !head_dim.is_multiple_of(4) || head_dim as u64 > MAX_HEAD_DIM {
        return Err(shape_err(format!(
            "head dim {head_dim} must be a positive multiple of 4 up to {MAX_HEAD_DIM}"
        )));
    }
    if dims.contains(&0) || qs[0] == 0 || qs[1] == 0 {
        return Err(shape_err(format!("q {qs:?} has an empty axis")));
    }
    let per_axis = |what: &str, n: usize| -> Result<()> {
        if n != rank {
            return Err(shape_err(format!(
                "{what} has {n} entries for {rank} token axes (q {qs:?})"
            )));
        }
        Ok(())
    };
    per_axis("kernel", opts.kernel.len())?;
    let dilation = if opts.dilation.is_empty() {
        vec![1; rank]
    } else {
        per_axis("dilation", opts.dilation.len())?;
        opts.dilation.clone()
    };
    let causal = if opts.causal.is_empty() {
        vec![false; rank]
    } else {
        per_axis("causal", opts.causal.len())?;
        opts.causal.clone()
    };
    for a in 0..rank {
        let (l, ks, d) = (dims[a] as u64, opts.kernel[a], dilation[a]);
        if ks == 0 || ks.is_multiple_of(2) {
            return Err(invalid(format!(
                "kernel size {ks} of axis {a} must be odd (the window is centred on the query)"
            )));
        }
        if d == 0 {
            return Err(invalid(format!("dilation of axis {a} must be >= 1, got 0")));
        }
        if ks as u64 > l {
            return Err(invalid(format!(
                "kernel size {ks} of axis {a} is larger than the axis length {l}"
            )));
        }
        if ks as u64 * d as u64 > l {
            return Err(invalid(format!(
                "kernel size {ks} x dilation {d} of axis {a} is larger than the axis length {l} \
                 (every dilation group needs at least kernel-size positions)"
            )));
        }
    }
    let spec = NeighborhoodSpec::new(
        qs[0] as u64,
        qs[1] as u64,
        &dims.iter().map(|&x| x as u64).collect::<Vec<_>>(),
        head_dim as u64,
        &opts.kernel,
        &dilation,
        &causal,
        opts.rpb.is_some(),
    );
    if let Some(rpb) = &opts.rpb {
        expect_f32(OP, rpb)?;
        expect_single(OP, "rpb", rpb)?;
        let mut want = vec![qs[1]];
        want.extend(opts.kernel.iter().map(|&ks| 2 * ks as usize - 1));
        if rpb.shape() != want.as_slice() {
            return Err(shape_err(format!(
                "rpb must be [heads, 2k-1 per axis] = {want:?}, got {:?}",
                rpb.shape()
            )));
        }
    }
    spec.check_problem()?;
    Ok(spec)
}

fn scale_of(spec: &NeighborhoodSpec, opts: &NaOptions) -> Result<f32> {
    let scale = opts
        .scale
        .unwrap_or(1.0 / (spec.head_dim.max(1) as f32).sqrt());
    if !scale.is_finite() {
        return Err(invalid(format!("scale must be finite, got {scale}")));
    }
    Ok(scale)
}

/// Neighborhood attention. Shapes: q, k, v [batch, heads, X(, Y(, Z)), head_dim] (f32).
/// Records q's shape.
pub fn neighborhood_attention<'a>(
    q: &'a Tensor,
    k: &'a Tensor,
    v: &'a Tensor,
    opts: &'a NaOptions,
) -> Call<'a, Neighborhood<'a>> {
    Call::new(Neighborhood { q, k, v, opts })
}

pub struct Neighborhood<'a> {
    q: &'a Tensor,
    k: &'a Tensor,
    v: &'a Tensor,
    opts: &'a NaOptions,
}

impl OpSpec for Neighborhood<'_> {
    type Spec = NeighborhoodSpec;
    fn spec(&self) -> Result<NeighborhoodSpec> {
        neighborhood_spec(self.q, self.k, self.v, self.opts)
    }
}

impl Op for Neighborhood<'_> {
    type Config = NeighborhoodConfig;
    type Output = Tensor;
    fn record_op(
        self,
        rec: &mut Recorder<'_>,
        out: Option<&Tensor>,
        cfg: Option<NeighborhoodConfig>,
    ) -> Result<Tensor> {
        let (q, k, v, opts) = (self.q, self.k, self.v, self.opts);
        // Validate everything before allocating.
        let spec = neighborhood_spec(q, k, v, opts)?;
        let scale = scale_of(&spec, opts)?;
        let out = output(rec, OP, out, q.shape())?;
        expect_single(OP, "out", &out)?;
        let (c, kernel) = rec.kernel(&spec, cfg, || {
            let (q, k, v, opts) = (q.clone(), k.clone(), v.clone(), opts.clone());
            ReplayFactory::ready(move |rec, c: &NeighborhoodConfig| {
                neighborhood_attention(&q, &k, &v, &opts)
                    .config(c.clone())
                    .record(rec)
            })
        })?;
        let params = spec.params(&c, scale);
        // Without a bias the kernel never reads binding 4; q stands in for it.
        let rpb = opts.rpb.as_ref().unwrap_or(q);
        rec.dispatch(
            &kernel,
            bytemuck::bytes_of(&params),
            &[
                Bind::whole("q", q),
                Bind::whole("k", k),
                Bind::whole("v", v),
                Bind::whole("rpb", rpb),
                Bind::whole("out", &out),
            ],
            spec.dispatch(&c),
        )?;
        Ok(out)
    }
}
