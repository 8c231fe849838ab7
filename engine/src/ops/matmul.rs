//! Tiled f32 matmul and the linear layers built on it: `ops::matmul`, `ops::linear`,
//! `ops::linear_split` and `ops::linear_norm` (one kernel family; the epilogue and the split
//! outputs are part of the problem).

use webjit_jit::kernels::matmul::{Epilogue, MatmulConfig, MatmulSpec};
use webjit_jit::KernelSpec;

use super::{expect_f32, expect_single, no_out, output, Call, Op, OpSpec};
use crate::error::{Error, Result};
use crate::recorder::{Bind, Recorder, ReplayFactory};
use crate::tensor::{DType, Tensor};

/// `a x b` (or `a x b^T` with `trans_b`): a [M, K] or [B, M, K]; b [K, N] / [N, K], or batched
/// [B, K, N] / [B, N, K]. A 2-D `b` is shared by every batch of `a`. Returns [.., M, N].
pub fn matmul<'a>(a: &'a Tensor, b: &'a Tensor, trans_b: bool) -> Call<'a, Matmul<'a>> {
    Call::new(Matmul { a, b, trans_b })
}

pub struct Matmul<'a> {
    a: &'a Tensor,
    b: &'a Tensor,
    trans_b: bool,
}

/// The problem of these operands and the output's shape.
fn matmul_spec(a: &Tensor, b: &Tensor, trans_b: bool) -> Result<(MatmulSpec, Vec<usize>)> {
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

impl OpSpec for Matmul<'_> {
    type Spec = MatmulSpec;
    fn spec(&self) -> Result<MatmulSpec> {
        Ok(matmul_spec(self.a, self.b, self.trans_b)?.0)
    }
}

impl Op for Matmul<'_> {
    type Config = MatmulConfig;
    type Output = Tensor;
    fn record_op(
        self,
        rec: &mut Recorder<'_>,
        out: Option<&Tensor>,
        config: Option<MatmulConfig>,
    ) -> Result<Tensor> {
        let (a, b) = (self.a, self.b);
        expect_f32("matmul", a)?;
        expect_f32("matmul", b)?;
        expect_single("matmul", "a", a)?;
        expect_single("matmul", "b", b)?;
        let (spec, shape) = matmul_spec(a, b, self.trans_b)?;
        let out = output(rec, "matmul", out, &shape)?;
        expect_single("matmul", "output", &out)?;
        let trans_b = self.trans_b;
        let (c, kernel) = rec.kernel(&spec, config, || {
            let (a, b) = (a.clone(), b.clone());
            ReplayFactory::ready(move |rec, c: &MatmulConfig| {
                matmul(&a, &b, trans_b).config(c.clone()).record(rec)
            })
        })?;
        let params = spec.params(&c);
        rec.dispatch(
            &kernel,
            bytemuck::bytes_of(&params),
            &[
                Bind::whole("a", a),
                Bind::whole("b", b),
                Bind::whole("c", &out),
            ],
            spec.dispatch(&c),
        )?;
        Ok(out)
    }
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
pub fn linear<'a>(x: &'a Tensor, w: &'a Tensor, epi: LinearEpilogue<'a>) -> Call<'a, Linear<'a>> {
    Call::new(Linear(LinearArgs {
        x,
        w,
        epi,
        norm: None,
        parts: 1,
    }))
}

/// A linear layer whose output columns split into `parts` equal tensors ([.., N / parts]
/// each), in one dispatch: the Q, K and V projections of an attention layer from one weight
/// stacked by rows ([3 * H, K]) and one bias ([3 * H]). 1 to 4 parts; no residual.
pub fn linear_split<'a>(
    x: &'a Tensor,
    w: &'a Tensor,
    epi: LinearEpilogue<'a>,
    parts: usize,
) -> Call<'a, LinearSplit<'a>> {
    Call::new(LinearSplit(LinearArgs {
        x,
        w,
        epi,
        norm: None,
        parts,
    }))
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
/// the statistics of their own rows of x and normalize x as they read it. Records the `parts`
/// outputs and the normalized x (shaped like x), which a post-LN encoder needs again as its
/// next residual. x must be 2-D or fold to [M, K] (no batched weight).
///
/// This is how an encoder layer avoids a dispatch per LayerNorm: the LayerNorm after a
/// residual add moves into the projection that reads its result.
///
/// ```no_run
/// # fn f(rec: &mut webjit_engine::Recorder, x: &webjit_engine::Tensor,
/// #      w: &webjit_engine::Tensor, g: &webjit_engine::Tensor, b: &webjit_engine::Tensor)
/// #      -> webjit_engine::Result<()> {
/// use webjit_engine::ops::{self, LayerNormIn, LinearEpilogue};
/// let norm = LayerNormIn { gamma: g, beta: b, eps: 1e-12 };
/// let (outs, x_normalized) = ops::linear_norm(x, w, norm, LinearEpilogue::default(), 1).record(rec)?;
/// # Ok(()) }
/// ```
pub fn linear_norm<'a>(
    x: &'a Tensor,
    w: &'a Tensor,
    norm: LayerNormIn<'a>,
    epi: LinearEpilogue<'a>,
    parts: usize,
) -> Call<'a, LinearNorm<'a>> {
    Call::new(LinearNorm(LinearArgs {
        x,
        w,
        epi,
        norm: Some(norm),
        parts,
    }))
}

/// The operands of the linear ops.
#[derive(Clone, Copy)]
struct LinearArgs<'a> {
    x: &'a Tensor,
    w: &'a Tensor,
    epi: LinearEpilogue<'a>,
    norm: Option<LayerNormIn<'a>>,
    parts: usize,
}

/// `linear`'s op.
pub struct Linear<'a>(LinearArgs<'a>);
/// `linear_split`'s op.
pub struct LinearSplit<'a>(LinearArgs<'a>);
/// `linear_norm`'s op.
pub struct LinearNorm<'a>(LinearArgs<'a>);

impl LinearArgs<'_> {
    fn spec(&self) -> Result<MatmulSpec> {
        let (mut spec, _) = matmul_spec(self.x, self.w, true)?;
        spec.epilogue = self.epilogue();
        Ok(spec)
    }

    fn epilogue(&self) -> Epilogue {
        Epilogue {
            bias: self.epi.bias.is_some(),
            gelu: self.epi.gelu,
            residual: self.epi.residual.is_some(),
            split: self.parts as u32,
            norm: self.norm.is_some(),
        }
    }

    /// A replay of the op (the whole linear layer) with a given tile config.
    fn replay(&self) -> ReplayFactory<'static, MatmulConfig> {
        let (x, w) = (self.x.clone(), self.w.clone());
        let (bias, res) = (self.epi.bias.cloned(), self.epi.residual.cloned());
        let gelu = self.epi.gelu;
        let norm = self.norm.map(|n| (n.gamma.clone(), n.beta.clone(), n.eps));
        let parts = self.parts;
        ReplayFactory::ready(move |rec, c: &MatmulConfig| {
            let args = LinearArgs {
                x: &x,
                w: &w,
                epi: LinearEpilogue {
                    bias: bias.as_ref(),
                    gelu,
                    residual: res.as_ref(),
                },
                norm: norm.as_ref().map(|(gamma, beta, eps)| LayerNormIn {
                    gamma,
                    beta,
                    eps: *eps,
                }),
                parts,
            };
            let (mut outs, _) = args.encode(rec, Some(c.clone()))?;
            outs.pop().ok_or_else(|| Error::InvalidArgument {
                op: "linear",
                detail: "no output".into(),
            })
        })
    }

    /// Records the layer: its `parts` outputs and, with a LayerNorm, the normalized x.
    fn encode(
        &self,
        rec: &mut Recorder<'_>,
        cfg: Option<MatmulConfig>,
    ) -> Result<(Vec<Tensor>, Option<Tensor>)> {
        let (x, w, epi, norm, parts) = (self.x, self.w, self.epi, self.norm, self.parts);
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
        if parts == 0
            || parts > 4
            || !n.is_multiple_of(parts)
            || (parts > 1 && epi.residual.is_some())
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
        spec.epilogue = self.epilogue();
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
            extra.push(("bias", b));
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
            extra.push(("res", r));
        }
        let k = w.shape()[1];
        let mut norm_eps = 0.0;
        if let Some(ln) = norm {
            ln.check(op, k)?;
            extra.push(("ln_g", ln.gamma));
            extra.push(("ln_b", ln.beta));
            norm_eps = ln.eps;
        }
        let mut part_shape = shape.clone();
        if let Some(last) = part_shape.last_mut() {
            *last = n / parts;
        }
        let outs = (0..parts)
            .map(|_| rec.empty(&part_shape, DType::F32))
            .collect::<Result<Vec<_>>>()?;
        const OUT_NAMES: [&str; 4] = ["c", "c1", "c2", "c3"];
        let mut binds = vec![Bind::whole("a", x), Bind::whole("b", w)];
        binds.extend(outs.iter().zip(OUT_NAMES).map(|(t, n)| Bind::whole(n, t)));
        binds.extend(extra.into_iter().map(|(n, t)| Bind::whole(n, t)));
        let xn = match norm {
            Some(_) => Some(rec.empty(x.shape(), DType::F32)?),
            None => None,
        };
        if let Some(t) = &xn {
            binds.push(Bind::whole("xn", t));
        }
        let (c, kernel) = rec.kernel(&spec, cfg, || self.replay())?;
        let mut params = spec.params(&c);
        params.eps = norm_eps;
        rec.dispatch(
            &kernel,
            bytemuck::bytes_of(&params),
            &binds,
            spec.dispatch(&c),
        )?;
        Ok((outs, xn))
    }
}

impl OpSpec for Linear<'_> {
    type Spec = MatmulSpec;
    fn spec(&self) -> Result<MatmulSpec> {
        self.0.spec()
    }
}

impl Op for Linear<'_> {
    type Config = MatmulConfig;
    type Output = Tensor;
    fn record_op(
        self,
        rec: &mut Recorder<'_>,
        out: Option<&Tensor>,
        config: Option<MatmulConfig>,
    ) -> Result<Tensor> {
        no_out("linear", out)?;
        let (mut outs, _) = self.0.encode(rec, config)?;
        outs.pop().ok_or_else(|| Error::InvalidArgument {
            op: "linear",
            detail: "no output".into(),
        })
    }
}

impl OpSpec for LinearSplit<'_> {
    type Spec = MatmulSpec;
    fn spec(&self) -> Result<MatmulSpec> {
        self.0.spec()
    }
}

impl Op for LinearSplit<'_> {
    type Config = MatmulConfig;
    type Output = Vec<Tensor>;
    fn record_op(
        self,
        rec: &mut Recorder<'_>,
        out: Option<&Tensor>,
        config: Option<MatmulConfig>,
    ) -> Result<Vec<Tensor>> {
        no_out("linear_split", out)?;
        Ok(self.0.encode(rec, config)?.0)
    }
}

impl OpSpec for LinearNorm<'_> {
    type Spec = MatmulSpec;
    fn spec(&self) -> Result<MatmulSpec> {
        self.0.spec()
    }
}

impl Op for LinearNorm<'_> {
    type Config = MatmulConfig;
    type Output = (Vec<Tensor>, Tensor);
    fn record_op(
        self,
        rec: &mut Recorder<'_>,
        out: Option<&Tensor>,
        config: Option<MatmulConfig>,
    ) -> Result<(Vec<Tensor>, Tensor)> {
        no_out("linear_norm", out)?;
        let (outs, xn) = self.0.encode(rec, config)?;
        let xn = xn.ok_or_else(|| Error::InvalidArgument {
            op: "linear",
            detail: "no normalized input".into(),
        })?;
        Ok((outs, xn))
    }
}
