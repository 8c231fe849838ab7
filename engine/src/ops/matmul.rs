use webjit_jit::kernels::matmul::{Epilogue, MatmulConfig, MatmulSpec};
use webjit_jit::KernelSpec;

use super::{expect_f32, expect_single};
use crate::error::{Error, Result};
use crate::recorder::{Bind, Recorder};
use crate::tensor::{DType, Tensor};

/// `a x b` (or `a x b^T` with `trans_b`): a [M, K] or [B, M, K]; b [K, N] / [N, K], or batched
/// [B, K, N] / [B, N, K]. A 2-D `b` is shared by every batch of `a`. Returns [.., M, N].
pub fn matmul(rec: &mut Recorder, a: &Tensor, b: &Tensor, trans_b: bool) -> Result<Tensor> {
    matmul_with(rec, a, b, trans_b, None)
}

/// The problem spec for these operands (used by benchmarks and the tuner).
pub fn matmul_spec(a: &Tensor, b: &Tensor, trans_b: bool) -> Result<(MatmulSpec, Vec<usize>)> {
    let op = "matmul";
    let (ab, m, k) = match a.shape() {
        &[m, k] => (1, m, k),
        &[bt, m, k] => (bt, m, k),
        s => {
            return Err(Error::Shape {
                op,
                detail: format!("a must be 2-D or 3-D, got {s:?}"),
            })
        }
    };
    let (bb, r, c) = match b.shape() {
        &[r, c] => (None, r, c),
        &[bt, r, c] => (Some(bt), r, c),
        s => {
            return Err(Error::Shape {
                op,
                detail: format!("b must be 2-D or 3-D, got {s:?}"),
            })
        }
    };
    let (kb, n) = if trans_b { (c, r) } else { (r, c) };
    if kb != k {
        return Err(Error::Shape {
            op,
            detail: format!(
                "inner dims differ: a {:?} vs b {:?} (trans_b = {trans_b})",
                a.shape(),
                b.shape()
            ),
        });
    }
    let (spec, shape) = match bb {
        // A shared 2-D b: fold a's batch into M.
        None => {
            let mut shape = a.shape()[..a.shape().len() - 1].to_vec();
            shape.push(n);
            (
                MatmulSpec {
                    m: (ab * m) as u64,
                    n: n as u64,
                    k: k as u64,
                    batch: 1,
                    trans_b,
                    epilogue: Default::default(),
                },
                shape,
            )
        }
        Some(bt) if bt == ab && a.shape().len() == 3 => (
            MatmulSpec {
                m: m as u64,
                n: n as u64,
                k: k as u64,
                batch: bt as u64,
                trans_b,
                epilogue: Default::default(),
            },
            vec![bt, m, n],
        ),
        Some(bt) => {
            return Err(Error::Shape {
                op,
                detail: format!("batch {bt} of b does not match a {:?}", a.shape()),
            })
        }
    };
    Ok((spec, shape))
}

pub fn matmul_with(
    rec: &mut Recorder,
    a: &Tensor,
    b: &Tensor,
    trans_b: bool,
    cfg: Option<MatmulConfig>,
) -> Result<Tensor> {
    let (_, shape) = matmul_spec(a, b, trans_b)?;
    let out = rec.empty(&shape, DType::F32)?;
    matmul_into(rec, a, b, trans_b, &out, cfg)?;
    Ok(out)
}

/// `matmul_with` writing into an existing output tensor of the right shape.
pub fn matmul_into(
    rec: &mut Recorder,
    a: &Tensor,
    b: &Tensor,
    trans_b: bool,
    out: &Tensor,
    cfg: Option<MatmulConfig>,
) -> Result<()> {
    expect_f32("matmul", a)?;
    expect_f32("matmul", b)?;
    expect_single("matmul", "a", a)?;
    expect_single("matmul", "b", b)?;
    let (spec, shape) = matmul_spec(a, b, trans_b)?;
    if out.shape() != shape.as_slice() || out.dtype() != DType::F32 {
        return Err(crate::error::Error::Shape {
            op: "matmul",
            detail: format!("output must be f32 {shape:?}, got {:?}", out.shape()),
        });
    }
    expect_single("matmul", "output", out)?;
    run(
        rec,
        &spec,
        cfg,
        &[Bind::whole(a), Bind::whole(b), Bind::whole(out)],
        0.0,
    )
}

fn run(
    rec: &mut Recorder,
    spec: &MatmulSpec,
    cfg: Option<MatmulConfig>,
    binds: &[Bind<'_>],
    eps: f32,
) -> Result<()> {
    let engine = rec.engine();
    let c = engine.choose(spec, cfg);
    let kernel = engine.pipelines.get(&engine.gpu, spec, &c)?;
    let mut params = spec.params(&c);
    params.eps = eps;
    rec.dispatch(
        &kernel,
        bytemuck::bytes_of(&params),
        binds,
        spec.dispatch(&c),
    )
}

/// What `linear` does to the product before storing it: `+ bias`, erf GELU, `+ residual`, in
/// that order, each in the matmul's own dispatch.
#[derive(Clone, Copy, Default)]
pub struct LinearEpilogue<'t> {
    /// [N], added to every row.
    pub bias: Option<&'t Tensor>,
    /// erf GELU after the bias (BERT's feed-forward activation).
    pub gelu: bool,
    /// Shaped like the output, added last (a residual stream).
    pub residual: Option<&'t Tensor>,
}

/// A linear layer in one dispatch: `x [.., K] x w^T` (w [N, K], the weight layout of
/// safetensors and GGUF) followed by the epilogue. Returns [.., N].
pub fn linear(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    epi: LinearEpilogue<'_>,
) -> Result<Tensor> {
    linear_with(rec, x, w, epi, None)
}

/// `linear` with an explicit tile config (tests and the tuner).
pub fn linear_with(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    epi: LinearEpilogue<'_>,
    cfg: Option<MatmulConfig>,
) -> Result<Tensor> {
    let (mut outs, _) = linear_parts(rec, x, w, epi, None, 1, cfg)?;
    outs.pop().ok_or_else(|| Error::InvalidArgument {
        op: "linear",
        detail: "no output".into(),
    })
}

/// A linear layer whose output columns split into `parts` equal tensors ([.., N / parts]
/// each), in one dispatch: the Q, K and V projections of an attention layer from one weight
/// stacked by rows ([3 * H, K]) and one bias ([3 * H]). 1 to 4 parts; no residual.
pub fn linear_split(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    epi: LinearEpilogue<'_>,
    parts: usize,
) -> Result<Vec<Tensor>> {
    Ok(linear_parts(rec, x, w, epi, None, parts, None)?.0)
}

/// `linear_split` with an explicit tile config (tests).
pub fn linear_split_with(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    epi: LinearEpilogue<'_>,
    parts: usize,
    cfg: Option<MatmulConfig>,
) -> Result<Vec<Tensor>> {
    Ok(linear_parts(rec, x, w, epi, None, parts, cfg)?.0)
}

/// The LayerNorm in front of `linear_norm`: each row of x normalized over its K elements
/// (`eps` added to the variance), times `gamma` [K], plus `beta` [K].
#[derive(Clone, Copy)]
pub struct LayerNormIn<'t> {
    pub gamma: &'t Tensor,
    pub beta: &'t Tensor,
    pub eps: f32,
}

impl LayerNormIn<'_> {
    /// For rows of `k` elements: f32 single-buffer gamma and beta of `k` each, and a positive
    /// epsilon.
    pub(crate) fn check(&self, op: &'static str, k: usize) -> Result<()> {
        for (name, t) in [("gamma", self.gamma), ("beta", self.beta)] {
            expect_f32(op, t)?;
            expect_single(op, name, t)?;
            if t.numel() != k {
                return Err(Error::Shape {
                    op,
                    detail: format!("LayerNorm {name} {:?} must have {k} elements", t.shape()),
                });
            }
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(Error::InvalidArgument {
                op,
                detail: format!("LayerNorm epsilon must be positive, got {}", self.eps),
            });
        }
        Ok(())
    }
}

/// `linear_split` of `layer_norm(x)`, still one dispatch: the matmul's workgroups compute
/// the statistics of their own rows of x and normalize x as they read it. Returns the
/// `parts` outputs and the normalized x (shaped like x), which a post-LN encoder needs again
/// as its next residual. x must be 2-D or fold to [M, K] (no batched weight).
///
/// This is how an encoder layer avoids a dispatch per LayerNorm: the LayerNorm after a
/// residual add moves into the projection that reads its result.
///
/// ```no_run
/// # fn f(rec: &mut webjit_engine::Recorder, x: &webjit_engine::Tensor,
/// #      w: &webjit_engine::Tensor, g: &webjit_engine::Tensor, b: &webjit_engine::Tensor)
/// #      -> webjit_engine::Result<()> {
/// use webjit_engine::ops::{linear_norm, LayerNormIn, LinearEpilogue};
/// let norm = LayerNormIn { gamma: g, beta: b, eps: 1e-12 };
/// let (outs, x_normalized) = linear_norm(rec, x, w, norm, LinearEpilogue::default(), 1)?;
/// # Ok(()) }
/// ```
pub fn linear_norm(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    norm: LayerNormIn<'_>,
    epi: LinearEpilogue<'_>,
    parts: usize,
) -> Result<(Vec<Tensor>, Tensor)> {
    linear_norm_with(rec, x, w, norm, epi, parts, None)
}

/// `linear_norm` with an explicit tile config (tests and the tuner).
pub fn linear_norm_with(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    norm: LayerNormIn<'_>,
    epi: LinearEpilogue<'_>,
    parts: usize,
    cfg: Option<MatmulConfig>,
) -> Result<(Vec<Tensor>, Tensor)> {
    let (outs, xn) = linear_parts(rec, x, w, epi, Some(norm), parts, cfg)?;
    let xn = xn.ok_or_else(|| Error::InvalidArgument {
        op: "linear",
        detail: "no normalized input".into(),
    })?;
    Ok((outs, xn))
}

fn linear_parts(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    epi: LinearEpilogue<'_>,
    norm: Option<LayerNormIn<'_>>,
    parts: usize,
    cfg: Option<MatmulConfig>,
) -> Result<(Vec<Tensor>, Option<Tensor>)> {
    let op = "linear";
    if w.shape().len() != 2 {
        return Err(Error::Shape {
            op,
            detail: format!("the weight must be 2-D [N, K], got {:?}", w.shape()),
        });
    }
    expect_f32(op, x)?;
    expect_f32(op, w)?;
    expect_single(op, "x", x)?;
    expect_single(op, "weight", w)?;
    let (mut spec, shape) = matmul_spec(x, w, true)?;
    let n = w.shape()[0];
    if parts == 0 || parts > 4 || !n.is_multiple_of(parts) || (parts > 1 && epi.residual.is_some())
    {
        return Err(Error::InvalidArgument {
            op,
            detail: format!(
                "cannot split {n} output columns into {parts} parts{}",
                if epi.residual.is_some() {
                    " with a residual"
                } else {
                    ""
                }
            ),
        });
    }
    spec.epilogue = Epilogue {
        bias: epi.bias.is_some(),
        gelu: epi.gelu,
        residual: epi.residual.is_some(),
        split: parts as u32,
        norm: norm.is_some(),
    };
    if norm.is_some() && spec.batch > 1 {
        return Err(Error::Shape {
            op,
            detail: "a LayerNorm of the input needs a 2-D weight shared by every row".into(),
        });
    }
    let mut extra = Vec::new();
    if let Some(b) = epi.bias {
        expect_f32(op, b)?;
        expect_single(op, "bias", b)?;
        if b.numel() != n {
            return Err(Error::Shape {
                op,
                detail: format!("bias {:?} must have {n} elements", b.shape()),
            });
        }
        extra.push(b);
    }
    if let Some(r) = epi.residual {
        expect_f32(op, r)?;
        expect_single(op, "residual", r)?;
        if r.numel() != shape.iter().product::<usize>() {
            return Err(Error::Shape {
                op,
                detail: format!("residual {:?} must match the output {shape:?}", r.shape()),
            });
        }
        extra.push(r);
    }
    let k = w.shape()[1];
    let mut norm_eps = 0.0;
    if let Some(ln) = norm {
        ln.check(op, k)?;
        extra.push(ln.gamma);
        extra.push(ln.beta);
        norm_eps = ln.eps;
    }
    let mut part_shape = shape.clone();
    if let Some(last) = part_shape.last_mut() {
        *last = n / parts;
    }
    let outs = (0..parts)
        .map(|_| rec.empty(&part_shape, DType::F32))
        .collect::<Result<Vec<_>>>()?;
    let mut binds = vec![Bind::whole(x), Bind::whole(w)];
    binds.extend(outs.iter().map(Bind::whole));
    binds.extend(extra.into_iter().map(Bind::whole));
    let xn = match norm {
        Some(_) => Some(rec.empty(x.shape(), DType::F32)?),
        None => None,
    };
    if let Some(t) = &xn {
        binds.push(Bind::whole(t));
    }
    run(rec, &spec, cfg, &binds, norm_eps)?;
    Ok((outs, xn))
}
