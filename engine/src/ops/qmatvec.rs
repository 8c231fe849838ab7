//! The quantized matvec of decode (`ops::qmatvec`, `ops::qmatvec_gated`,
//! `ops::qmatvec_stacked`: the forms of one kernel family), the activation quantizer of its
//! int8 path (`ops::quantize_q8`) and whole-weight dequantization (`ops::qdequant`).

use webjit_jit::kernels::qmatvec::{
    Form, Gate, Path, Prologue, QDequantSpec, QMatvecConfig, QMatvecSpec, QuantizeQ8Config,
    QuantizeQ8Spec,
};
use webjit_jit::KernelSpec;

use super::{expect_f32, expect_single, no_out, output, Call, Op, OpSpec};
use crate::error::{Error, Result};
use crate::qtensor::QTensor;
use crate::recorder::{Bind, Recorder, Replay, ReplayFactory};
use crate::tensor::{DType, Tensor};
use crate::Engine;

/// Y [M, N] = X [M, K] W^T for a quantized W [N, K] (may be split into row segments),
/// M = 1..=8 (decode; longer inputs take `ops::qmatmul`).
pub fn qmatvec<'a>(x: &'a Tensor, w: &'a QTensor) -> Call<'a, QMatvec<'a>> {
    Call::new(QMatvec {
        x,
        ws: [Some(w), None, None],
        form: Form::Plain,
        norm: None,
    })
}

/// The gated product of an FFN in one pass: `act(X W_gate^T) * (X W_up^T)` [M, N] for two
/// quantized weights of the same shape, format and segmentation, M = 1..=8.
pub fn qmatvec_gated<'a>(
    x: &'a Tensor,
    w_gate: &'a QTensor,
    w_up: &'a QTensor,
    gate: Gate,
) -> Call<'a, QMatvec<'a>> {
    Call::new(QMatvec {
        x,
        ws: [Some(w_gate), Some(w_up), None],
        form: Form::Gated(gate),
        norm: None,
    })
}

/// Two or three quantized weights of one format and K, stacked by rows, in one pass:
/// Y [M, N1 + N2 (+ N3)] = X [M, K] [W1; W2; W3]^T, M = 1..=8 (a decoder's q, k and v
/// projections). Each weight must be one segment (one binding).
pub fn qmatvec_stacked<'a>(x: &'a Tensor, parts: &[&'a QTensor]) -> Call<'a, QMatvec<'a>> {
    let mut ws = [None; 3];
    for (slot, w) in ws.iter_mut().zip(parts) {
        *slot = Some(*w);
    }
    Call::new(QMatvec {
        x,
        ws,
        form: Form::Stacked(parts.len() as u32),
        norm: None,
    })
}

/// The row op before a decode matvec, folded into it (`Prologue`): the matvec's x is the
/// previous product F [1, K], and it multiplies X = rms_norm(H) * w_pre with
/// H = res + rms_norm(F) * w_post (with `w_post`) or H = res + F, as `ops::add_norm(F, w_post,
/// res, w_pre, eps, 0.0)` computes it. With `write_res`, H is written to `res_out` (the new
/// residual stream; one of the matvecs that read the same H writes it).
#[derive(Clone, Copy)]
pub struct NormIn<'a> {
    pub res: &'a Tensor,
    pub w_post: Option<&'a Tensor>,
    pub w_pre: &'a Tensor,
    pub eps: f32,
    pub res_out: &'a Tensor,
    pub write_res: bool,
}

impl NormIn<'_> {
    fn prologue(&self) -> Prologue {
        match self.w_post {
            Some(_) => Prologue::NormAddNorm,
            None => Prologue::AddNorm,
        }
    }

    /// The operands: f32, one binding each, K elements.
    fn check(&self, op: &'static str, k: usize) -> Result<()> {
        let named = [
            ("res", Some(self.res)),
            ("w_post", self.w_post),
            ("w_pre", Some(self.w_pre)),
            ("res_out", Some(self.res_out)),
        ];
        for (name, t) in named {
            let Some(t) = t else { continue };
            expect_f32(op, t)?;
            expect_single(op, name, t)?;
            if t.shape().iter().product::<usize>() != k {
                return Err(Error::Shape {
                    op,
                    detail: format!("{name} must have K = {k} elements, got {:?}", t.shape()),
                });
            }
        }
        Ok(())
    }
}

/// Owned copies of a `NormIn`'s tensors, for the tuner's replays.
#[derive(Clone)]
struct NormOwned {
    res: Tensor,
    w_post: Option<Tensor>,
    w_pre: Tensor,
    eps: f32,
    res_out: Tensor,
}

impl<'a> Call<'a, QMatvec<'a>> {
    /// Folds the add_norm that makes X into this matvec (see `NormIn`). Decode only (one row);
    /// the kernel must fit X in workgroup memory (`QMatvecSpec::prologue_fits`).
    pub fn norm_prologue(mut self, n: NormIn<'a>) -> Self {
        self.op_mut().norm = Some(n);
        self
    }
}

/// X [M, K] (or [K]) quantized to 8 bits per block of 32, as the int8 matvec path reads it:
/// records the codes (u32 [M, K / 4], four signed bytes each) and the blocks' (d, d * sum of
/// codes) (f32 [M, K / 32, 2]).
pub fn quantize_q8(x: &Tensor) -> Call<'_, QuantizeQ8<'_>> {
    Call::new(QuantizeQ8 { x })
}

/// A whole quantized weight dequantized to f32 [N, K] on the GPU (tests check repacking with
/// it; the output must fit one binding).
pub fn qdequant(w: &QTensor) -> Call<'_, QDequant<'_>> {
    Call::new(QDequant { w })
}

pub struct QMatvec<'a> {
    x: &'a Tensor,
    /// W, and W2 (gated, stacked) and W3 (stacked).
    ws: [Option<&'a QTensor>; 3],
    form: Form,
    norm: Option<NormIn<'a>>,
}

impl<'a> QMatvec<'a> {
    fn weights(&self) -> impl Iterator<Item = &'a QTensor> + '_ {
        self.ws.iter().flatten().copied()
    }

    fn first(&self) -> Result<&'a QTensor> {
        self.ws[0].ok_or_else(|| Error::InvalidArgument {
            op: "qmatvec",
            detail: "no weight".into(),
        })
    }

    fn name(&self) -> &'static str {
        match self.form {
            Form::Plain => "qmatvec",
            Form::Gated(_) => "qmatvec_gated",
            Form::Stacked(_) => "qmatvec_stacked",
        }
    }

    /// Checks the weights against each other and builds the problem of the first segment.
    fn problem(&self) -> Result<QMatvecSpec> {
        let op = self.name();
        let first = self.first()?;
        let [n, k] = first.shape();
        let m = match self.x.shape() {
            &[m, kx] if kx == k => m,
            &[kx] if kx == k => 1,
            s => {
                return Err(Error::Shape {
                    op,
                    detail: format!("x must be [M, {k}] to match weight [{n}, {k}], got {s:?}"),
                })
            }
        };
        let mut spec = QMatvecSpec {
            format: first.format(),
            m: m.min(u32::MAX as usize) as u32,
            n: n as u64,
            k: k as u64,
            rows: first.segments()[0].rows as u64,
            form: self.form,
            prologue: Prologue::None,
        };
        if let Some(nrm) = &self.norm {
            nrm.check(op, k)?;
            spec.prologue = nrm.prologue();
        }
        match self.form {
            Form::Plain => {}
            Form::Gated(_) => {
                let up = self.ws[1].ok_or_else(|| Error::InvalidArgument {
                    op,
                    detail: "no up weight".into(),
                })?;
                let same_split = first.segments().len() == up.segments().len()
                    && first
                        .segments()
                        .iter()
                        .zip(up.segments())
                        .all(|(a, b)| a.rows == b.rows && a.row_start == b.row_start);
                if up.shape() != first.shape() || up.format() != first.format() || !same_split {
                    return Err(Error::Shape {
                        op,
                        detail: format!(
                            "gate {:?} {} and up {:?} {} must have the same shape, format and segments",
                            first.shape(),
                            first.format().name(),
                            up.shape(),
                            up.format().name()
                        ),
                    });
                }
            }
            Form::Stacked(parts) => {
                if !(2..=3).contains(&parts) || self.weights().count() != parts as usize {
                    return Err(Error::InvalidArgument {
                        op,
                        detail: format!("takes 2 or 3 weights, got {parts}"),
                    });
                }
                for w in self.weights() {
                    if w.format() != first.format() || w.shape()[1] != k || w.segments().len() != 1
                    {
                        return Err(Error::Shape {
                            op,
                            detail: format!(
                                "weights must share format {} and K {k} and be one segment each, got {} {:?} in {} segment(s)",
                                first.format().name(),
                                w.format().name(),
                                w.shape(),
                                w.segments().len()
                            ),
                        });
                    }
                }
                let total: u64 = self.weights().map(|w| w.shape()[0] as u64).sum();
                spec.n = total;
                spec.rows = total;
            }
        }
        Ok(spec)
    }

    /// The replay the tuner times: on GPUs over cold copies of the weights read in turn, as a
    /// decode step reads each weight once from memory (one small weight timed alone stays in
    /// the GPU's cache and made uncoalesced configs look fast: on an H100, tuned decode ran
    /// 2.4x slower than untuned).
    fn replay(&self) -> ReplayFactory<'static, QMatvecConfig> {
        let x = self.x.clone();
        let ws: Vec<QTensor> = self.weights().cloned().collect();
        let form = self.form;
        let norm = self.norm.map(|n| NormOwned {
            res: n.res.clone(),
            w_post: n.w_post.cloned(),
            w_pre: n.w_pre.clone(),
            eps: n.eps,
            res_out: n.res_out.clone(),
        });
        ReplayFactory::Deferred(Box::new(move |engine: &Engine| {
            let sets = cold_sets(engine, ws)?;
            let mut turn = 0usize;
            let replay: Replay<'static, QMatvecConfig> = Box::new(move |rec, c: &QMatvecConfig| {
                let set = &sets[turn % sets.len()];
                turn += 1;
                let mut op = QMatvec {
                    x: &x,
                    ws: [None; 3],
                    form,
                    norm: norm.as_ref().map(|n| NormIn {
                        res: &n.res,
                        w_post: n.w_post.as_ref(),
                        w_pre: &n.w_pre,
                        eps: n.eps,
                        res_out: &n.res_out,
                        write_res: true,
                    }),
                };
                for (slot, w) in op.ws.iter_mut().zip(set) {
                    *slot = Some(w);
                }
                Call::new(op).config(c.clone()).record(rec)
            });
            Ok(replay)
        }))
    }
}

/// Bytes of weight copies a decode matvec is timed over on GPUs (more than an H100's 50 MB L2).
const COLD_BYTES: u64 = 192 << 20;
/// At most this many copies of one weight set.
const MAX_COPIES: u64 = 256;

/// `ws` and, on GPUs, copies of it up to `COLD_BYTES`. Software adapters have no such cache
/// and a tight budget; browsers neither give cache control nor need the memory spent.
fn cold_sets(engine: &Engine, ws: Vec<QTensor>) -> Result<Vec<Vec<QTensor>>> {
    let p = engine.profile();
    let software = p.cpu || p.backend.contains("webgpu");
    let bytes: u64 = ws.iter().map(|w| w.gguf_bytes()).sum::<u64>().max(1);
    let want = if software {
        1
    } else {
        (COLD_BYTES / bytes).clamp(1, MAX_COPIES) as usize
    };
    let mut sets = Vec::with_capacity(want);
    for _ in 1..want {
        sets.push(
            ws.iter()
                .map(|w| engine.copy_quantized(w))
                .collect::<Result<Vec<_>>>()?,
        );
    }
    sets.push(ws);
    Ok(sets)
}

impl OpSpec for QMatvec<'_> {
    type Spec = QMatvecSpec;
    /// The problem of the first (largest) segment of W.
    fn spec(&self) -> Result<QMatvecSpec> {
        self.problem()
    }
}

impl Op for QMatvec<'_> {
    type Config = QMatvecConfig;
    type Output = Tensor;
    fn record_op(
        self,
        rec: &mut Recorder<'_>,
        out: Option<&Tensor>,
        cfg: Option<QMatvecConfig>,
    ) -> Result<Tensor> {
        let spec = self.problem()?;
        let op = self.name();
        let (x, w) = (self.x, self.first()?);
        let (m, n) = (spec.m as usize, spec.n as usize);
        let y = output(rec, op, out, &[m, n])?;
        check_operands(op, x, &y, [m, n])?;
        // One pipeline serves every segment: the segment's rows go to the uniforms.
        let (c, kernel) = rec.kernel(&spec, cfg, || self.replay())?;
        if c.path == Path::Int8 && self.norm.is_some() {
            return Err(Error::InvalidArgument {
                op,
                detail: "the int8 path takes no norm prologue".into(),
            });
        }
        // The prologue's operands and uniforms (`NormIn`), after the kernel's own.
        let norm_binds: Vec<Bind> = match &self.norm {
            Some(n) => {
                let mut b = vec![Bind::whole("res", n.res)];
                if let Some(wp) = n.w_post {
                    b.push(Bind::whole("wpost", wp));
                }
                b.push(Bind::whole("wpre", n.w_pre));
                b.push(Bind::whole("res_out", n.res_out));
                b
            }
            None => vec![],
        };
        let norm = self.norm;
        let uniforms = move |p: webjit_jit::kernels::qmatvec::QMatvecParams, first: bool| match norm
        {
            Some(n) => p.with_prologue(n.eps, n.write_res && first),
            None => p,
        };
        if c.path == Path::Int8 {
            let (xq, xs) = quantize_q8(x).record(rec)?;
            for i in 0..w.segments().len() {
                let seg = &w.segments()[i];
                let params = spec.params(seg.row_start as u64, seg.rows as u64);
                rec.dispatch(
                    &kernel,
                    bytemuck::bytes_of(&params),
                    &[
                        Bind::weight("w", w, i),
                        Bind::whole("xq", &xq),
                        Bind::whole("xs", &xs),
                        Bind::whole("y", &y),
                    ],
                    spec.dispatch_rows(&c, seg.rows as u64),
                )?;
            }
            return Ok(y);
        }
        if let Form::Stacked(_) = self.form {
            let rows: Vec<u64> = self.weights().map(|w| w.shape()[0] as u64).collect();
            let params = uniforms(spec.params_stacked(&rows), true);
            let mut binds = vec![
                Bind::weight("w", w, 0),
                Bind::whole("x", x),
                Bind::whole("y", &y),
            ];
            for (wi, name) in self.weights().skip(1).zip(["w2", "w3"]) {
                binds.push(Bind::weight(name, wi, 0));
            }
            binds.extend(norm_binds.iter().cloned());
            rec.dispatch(
                &kernel,
                bytemuck::bytes_of(&params),
                &binds,
                spec.dispatch_rows(&c, spec.rows),
            )?;
            return Ok(y);
        }
        for (i, seg) in w.segments().iter().enumerate() {
            let params = uniforms(spec.params(seg.row_start as u64, seg.rows as u64), i == 0);
            let mut binds = vec![
                Bind::weight("w", w, i),
                Bind::whole("x", x),
                Bind::whole("y", &y),
            ];
            if let (Form::Gated(_), Some(up)) = (self.form, self.ws[1]) {
                binds.push(Bind::weight("w2", up, i));
            }
            binds.extend(norm_binds.iter().cloned());
            rec.dispatch(
                &kernel,
                bytemuck::bytes_of(&params),
                &binds,
                spec.dispatch_rows(&c, seg.rows as u64),
            )?;
        }
        Ok(y)
    }
}

/// Shared operand checks of the quantized products: x is one f32 binding, y is one f32
/// binding of shape `want` ([M, N]).
pub(super) fn check_operands(
    op: &'static str,
    x: &Tensor,
    y: &Tensor,
    want: [usize; 2],
) -> Result<()> {
    expect_f32(op, x)?;
    expect_single(op, "x", x)?;
    if y.shape() != want || y.dtype() != DType::F32 {
        return Err(Error::Shape {
            op,
            detail: format!("output must be f32 {want:?}, got {:?}", y.shape()),
        });
    }
    expect_single(op, "output", y)
}

pub struct QuantizeQ8<'a> {
    x: &'a Tensor,
}

impl OpSpec for QuantizeQ8<'_> {
    type Spec = QuantizeQ8Spec;
    fn spec(&self) -> Result<QuantizeQ8Spec> {
        let op = "quantize_q8";
        expect_f32(op, self.x)?;
        expect_single(op, "x", self.x)?;
        let (m, k) = match self.x.shape() {
            &[m, k] => (m, k),
            &[k] => (1, k),
            s => {
                return Err(Error::Shape {
                    op,
                    detail: format!("x must be [M, K] or [K], got {s:?}"),
                })
            }
        };
        Ok(QuantizeQ8Spec {
            m: m.min(u32::MAX as usize) as u32,
            k: k as u64,
        })
    }
}

impl Op for QuantizeQ8<'_> {
    type Config = QuantizeQ8Config;
    type Output = (Tensor, Tensor);
    fn record_op(
        self,
        rec: &mut Recorder<'_>,
        out: Option<&Tensor>,
        cfg: Option<QuantizeQ8Config>,
    ) -> Result<(Tensor, Tensor)> {
        no_out("quantize_q8", out)?;
        let spec = self.spec()?;
        let x = self.x;
        let (c, kernel) = rec.kernel(&spec, cfg, || {
            let x = x.clone();
            // The codes are compared (as the scales follow from them).
            ReplayFactory::ready(move |rec, c: &QuantizeQ8Config| {
                Ok(quantize_q8(&x).config(c.clone()).record(rec)?.1)
            })
        })?;
        let (m, k) = (spec.m as usize, spec.k as usize);
        let xq = rec.empty(&[m, k / 4], DType::U32)?;
        let xs = rec.empty(&[m, k / 32, 2], DType::F32)?;
        rec.dispatch(
            &kernel,
            bytemuck::bytes_of(&spec.params()),
            &[
                Bind::whole("x", x),
                Bind::whole("xq", &xq),
                Bind::whole("xs", &xs),
            ],
            spec.dispatch(&c),
        )?;
        Ok((xq, xs))
    }
}

pub struct QDequant<'a> {
    w: &'a QTensor,
}

impl Op for QDequant<'_> {
    /// Dequantization is not tuned: its one kernel runs the default.
    type Config = ();
    type Output = Tensor;
    fn record_op(
        self,
        rec: &mut Recorder<'_>,
        out: Option<&Tensor>,
        _cfg: Option<()>,
    ) -> Result<Tensor> {
        let w = self.w;
        let [n, k] = w.shape();
        let out = output(rec, "qdequant", out, &[n, k])?;
        expect_single("qdequant", "output", &out)?;
        for (i, seg) in w.segments().iter().enumerate() {
            let spec = QDequantSpec {
                format: w.format(),
                rows: seg.rows as u64,
                k: k as u64,
            };
            let (c, kernel) = rec.engine().kernel_for(&spec, None)?;
            let seg_out = rec.empty(&[seg.rows, k], DType::F32)?;
            rec.dispatch(
                &kernel,
                bytemuck::bytes_of(&spec.params()),
                &[Bind::weight("w", w, i), Bind::whole("out", &seg_out)],
                spec.dispatch(&c),
            )?;
            rec.copy(
                &seg_out.segments()[0].buffer,
                0,
                &out.segments()[0].buffer,
                (seg.row_start * k * 4) as u64,
                (seg.rows * k * 4) as u64,
            );
        }
        Ok(out)
    }
}
