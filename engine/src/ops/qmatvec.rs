use webjit_jit::kernels::qmatvec::{Gate, PreNorm, QDequantSpec, QMatvecConfig, QMatvecSpec};
use webjit_jit::kernels::qmatvec_i8::{
    QMatvecI8Config, QMatvecI8Spec, QuantizeQ8Config, QuantizeQ8Spec,
};
use webjit_jit::KernelSpec;

use super::{expect_f32, expect_single};
use crate::error::{Error, Result};
use crate::qtensor::QTensor;
use crate::recorder::{Bind, Recorder};
use crate::tensor::{DType, Tensor};

/// Y [M, N] = X [M, K] W^T for a quantized W [N, K], M = 1..=8 (decode).
pub fn qmatvec(rec: &mut Recorder, x: &Tensor, w: &QTensor) -> Result<Tensor> {
    qmatvec_with(rec, x, w, None)
}

/// The problem spec for these operands; `rows` is the first segment's (the largest).
pub fn qmatvec_spec(x: &Tensor, w: &QTensor) -> Result<QMatvecSpec> {
    let op = "qmatvec";
    let [n, k] = w.shape();
    let m = match x.shape() {
        &[m, kx] if kx == k => m,
        &[kx] if kx == k => 1,
        s => {
            return Err(Error::Shape {
                op,
                detail: format!("x must be [M, {k}] to match weight [{n}, {k}], got {s:?}"),
            })
        }
    };
    Ok(QMatvecSpec {
        format: w.format(),
        m: m.min(u32::MAX as usize) as u32,
        n: n as u64,
        k: k as u64,
        rows: w.segments()[0].rows as u64,
        gate: None,
        stacked: 0,
        prenorm: None,
    })
}

pub fn qmatvec_with(
    rec: &mut Recorder,
    x: &Tensor,
    w: &QTensor,
    cfg: Option<QMatvecConfig>,
) -> Result<Tensor> {
    let spec = qmatvec_spec(x, w)?;
    let y = rec.empty(&[spec.m as usize, spec.n as usize], DType::F32)?;
    qmatvec_into(rec, x, w, &y, cfg)?;
    Ok(y)
}

/// `qmatvec_with` writing into an existing f32 output [M, N] (benchmarks and decode loops
/// reuse one output).
pub fn qmatvec_into(
    rec: &mut Recorder,
    x: &Tensor,
    w: &QTensor,
    y: &Tensor,
    cfg: Option<QMatvecConfig>,
) -> Result<()> {
    let spec = qmatvec_spec(x, w)?;
    super::qmatvec::check_operands("qmatvec", x, y, [spec.m as usize, spec.n as usize])?;
    let engine = rec.engine();
    // One pipeline serves every segment: the segment's rows go to the uniforms.
    let (c, kernel) = engine.kernel_for(&spec, cfg)?;
    if c.int8 {
        // The int8 path (a tuning record's pick, or the caller's): quantize X, then the
        // pipeline the config rendered is the int8 matvec.
        let (xq, xs) = quantize_q8(rec, x, None)?;
        let i8c = webjit_jit::kernels::qmatvec::i8_config(&c);
        return qmatvec_i8_quantized(rec, &spec.i8_spec(), (&i8c, &kernel), &xq, &xs, w, y);
    }
    for (i, seg) in w.segments().iter().enumerate() {
        let params = spec.params(seg.row_start as u64, seg.rows as u64);
        let wb = Bind {
            buffer: &seg.buffer,
            size: w.segment_bytes(i),
        };
        rec.dispatch(
            &kernel,
            bytemuck::bytes_of(&params),
            &[wb, Bind::whole(x), Bind::whole(y)],
            spec.dispatch_rows(&c, seg.rows as u64),
        )?;
    }
    Ok(())
}

/// The gated product of an FFN in one pass: `act(X W_gate^T) * (X W_up^T)` [M, N] for two
/// quantized weights of the same shape, format and segmentation, M = 1..=8.
pub fn qmatvec_gated(
    rec: &mut Recorder,
    x: &Tensor,
    w_gate: &QTensor,
    w_up: &QTensor,
    gate: Gate,
    cfg: Option<QMatvecConfig>,
) -> Result<Tensor> {
    Ok(gated_impl(rec, x, None, w_gate, w_up, gate, cfg)?.0)
}

/// `qmatvec_gated` with the fused pre-norm: `o` and `pre` as in `qmatvec_pre`; `y` is the
/// gated product [1, N].
pub fn qmatvec_gated_pre(
    rec: &mut Recorder,
    o: &Tensor,
    pre: &PreNormArgs,
    w_gate: &QTensor,
    w_up: &QTensor,
    gate: Gate,
    cfg: Option<QMatvecConfig>,
) -> Result<PreNormed> {
    let (y, xo) = gated_impl(rec, o, Some(pre), w_gate, w_up, gate, cfg)?;
    PreNormed::new(xo, y)
}

fn gated_impl(
    rec: &mut Recorder,
    x: &Tensor,
    pre: Option<&PreNormArgs>,
    w_gate: &QTensor,
    w_up: &QTensor,
    gate: Gate,
    cfg: Option<QMatvecConfig>,
) -> Result<(Tensor, Option<(Tensor, Tensor)>)> {
    let op = "qmatvec_gated";
    let mut spec = qmatvec_spec(x, w_gate)?;
    spec.gate = Some(gate);
    let xo = prenorm_setup(rec, op, &mut spec, x, pre)?;
    let same_split = w_gate.segments().len() == w_up.segments().len()
        && w_gate
            .segments()
            .iter()
            .zip(w_up.segments())
            .all(|(a, b)| a.rows == b.rows && a.row_start == b.row_start);
    if w_up.shape() != w_gate.shape() || w_up.format() != w_gate.format() || !same_split {
        return Err(Error::Shape {
            op,
            detail: format!(
                "gate {:?} {} and up {:?} {} must have the same shape, format and segments",
                w_gate.shape(),
                w_gate.format().name(),
                w_up.shape(),
                w_up.format().name()
            ),
        });
    }
    let y = rec.empty(&[spec.m as usize, spec.n as usize], DType::F32)?;
    check_operands(op, x, &y, [spec.m as usize, spec.n as usize])?;
    let engine = rec.engine();
    let (c, kernel) = engine.kernel_for(&spec, cfg)?;
    for (i, (seg, seg2)) in w_gate.segments().iter().zip(w_up.segments()).enumerate() {
        let mut params = spec.params(seg.row_start as u64, seg.rows as u64);
        let mut binds = vec![
            Bind {
                buffer: &seg.buffer,
                size: w_gate.segment_bytes(i),
            },
            Bind::whole(x),
            Bind::whole(&y),
            Bind {
                buffer: &seg2.buffer,
                size: w_up.segment_bytes(i),
            },
        ];
        prenorm_binds(&mut params, &mut binds, pre, xo.as_ref());
        rec.dispatch(
            &kernel,
            bytemuck::bytes_of(&params),
            &binds,
            spec.dispatch_rows(&c, seg.rows as u64),
        )?;
    }
    Ok((y, xo))
}

/// Two or three quantized weights of one format and K, stacked by rows, in one pass:
/// Y [M, N1 + N2 (+ N3)] = X [M, K] [W1; W2; W3]^T, M = 1..=8 (a decoder's q, k and v
/// projections). Each weight must be one segment (one binding).
pub fn qmatvec_stacked(
    rec: &mut Recorder,
    x: &Tensor,
    parts: &[&QTensor],
    cfg: Option<QMatvecConfig>,
) -> Result<Tensor> {
    Ok(stacked_impl(rec, x, None, parts, cfg)?.0)
}

/// `qmatvec_stacked` with the fused pre-norm: `o` and `pre` as in `qmatvec_pre`; `y` is the
/// stacked product [1, N1 + N2 (+ N3)].
pub fn qmatvec_stacked_pre(
    rec: &mut Recorder,
    o: &Tensor,
    pre: &PreNormArgs,
    parts: &[&QTensor],
    cfg: Option<QMatvecConfig>,
) -> Result<PreNormed> {
    let (y, xo) = stacked_impl(rec, o, Some(pre), parts, cfg)?;
    PreNormed::new(xo, y)
}

fn stacked_impl(
    rec: &mut Recorder,
    x: &Tensor,
    pre: Option<&PreNormArgs>,
    parts: &[&QTensor],
    cfg: Option<QMatvecConfig>,
) -> Result<(Tensor, Option<(Tensor, Tensor)>)> {
    let op = "qmatvec_stacked";
    let (Some(first), 2..=3) = (parts.first(), parts.len()) else {
        return Err(Error::InvalidArgument {
            op,
            detail: format!("takes 2 or 3 weights, got {}", parts.len()),
        });
    };
    let k = first.shape()[1];
    for w in parts {
        if w.format() != first.format() || w.shape()[1] != k || w.segments().len() != 1 {
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
    let rows: Vec<u64> = parts.iter().map(|w| w.shape()[0] as u64).collect();
    let total: u64 = rows.iter().sum();
    let mut spec = qmatvec_spec(x, first)?;
    spec.n = total;
    spec.rows = total;
    spec.stacked = parts.len() as u32;
    let xo = prenorm_setup(rec, op, &mut spec, x, pre)?;
    let y = rec.empty(&[spec.m as usize, total as usize], DType::F32)?;
    check_operands(op, x, &y, [spec.m as usize, total as usize])?;
    let engine = rec.engine();
    let (c, kernel) = engine.kernel_for(&spec, cfg)?;
    let mut binds = vec![
        Bind {
            buffer: &first.segments()[0].buffer,
            size: first.segment_bytes(0),
        },
        Bind::whole(x),
        Bind::whole(&y),
    ];
    for w in &parts[1..] {
        binds.push(Bind {
            buffer: &w.segments()[0].buffer,
            size: w.segment_bytes(0),
        });
    }
    let mut params = spec.params_stacked(&rows);
    prenorm_binds(&mut params, &mut binds, pre, xo.as_ref());
    rec.dispatch(
        &kernel,
        bytemuck::bytes_of(&params),
        &binds,
        spec.dispatch_rows(&c, total),
    )?;
    Ok((y, xo))
}

/// The operands of a matvec's fused pre-norm (`PreNorm`): the matvec's input is
/// `rmsnorm(residual + post(o)) * norm_w`, where `post(o) = rmsnorm(o) * post_w` with a
/// post-norm weight and `o` without one. Weights are f32 [K] (no offset added: GGUF norm
/// weights already hold Gemma's `1 + w`); `residual` is f32 [1, K].
#[derive(Clone, Copy, Debug)]
pub struct PreNormArgs<'a> {
    pub residual: &'a Tensor,
    pub post_w: Option<&'a Tensor>,
    pub norm_w: &'a Tensor,
    pub eps: f32,
}

/// Y [1, N] = rmsnorm(residual + post(o)) * norm_w W^T for a quantized W [N, K], with the
/// add and the norms done inside the matvec (one dispatch instead of two). Also returns the
/// new residual stream `residual + post(o)` [1, K] and the normed input [1, K]: the same
/// results as `ops::add_norm` followed by `qmatvec`, up to f32 rounding.
pub fn qmatvec_pre(
    rec: &mut Recorder,
    o: &Tensor,
    pre: &PreNormArgs,
    w: &QTensor,
    cfg: Option<QMatvecConfig>,
) -> Result<PreNormed> {
    let op = "qmatvec_pre";
    let mut spec = qmatvec_spec(o, w)?;
    let xo = prenorm_setup(rec, op, &mut spec, o, Some(pre))?;
    let y = rec.empty(&[spec.m as usize, spec.n as usize], DType::F32)?;
    check_operands(op, o, &y, [spec.m as usize, spec.n as usize])?;
    let (c, kernel) = rec.engine().kernel_for(&spec, cfg)?;
    for (i, seg) in w.segments().iter().enumerate() {
        let mut params = spec.params(seg.row_start as u64, seg.rows as u64);
        let mut binds = vec![
            Bind {
                buffer: &seg.buffer,
                size: w.segment_bytes(i),
            },
            Bind::whole(o),
            Bind::whole(&y),
        ];
        prenorm_binds(&mut params, &mut binds, Some(pre), xo.as_ref());
        rec.dispatch(
            &kernel,
            bytemuck::bytes_of(&params),
            &binds,
            spec.dispatch_rows(&c, seg.rows as u64),
        )?;
    }
    PreNormed::new(xo, y)
}

/// What a matvec with a fused pre-norm produces.
#[derive(Debug)]
pub struct PreNormed {
    /// The new residual stream `residual + post(o)` [1, K].
    pub residual: Tensor,
    /// The matvec's input `rmsnorm(residual) * norm_w` [1, K].
    pub normed: Tensor,
    /// The product.
    pub y: Tensor,
}

impl PreNormed {
    fn new(outs: Option<(Tensor, Tensor)>, y: Tensor) -> Result<Self> {
        let (residual, normed) = outs.ok_or_else(|| Error::InvalidArgument {
            op: "qmatvec_pre",
            detail: "the fused pre-norm produced no residual output".into(),
        })?;
        Ok(Self {
            residual,
            normed,
            y,
        })
    }
}

/// Checks the pre-norm operands, sets the spec's `prenorm` and allocates the residual and
/// normed outputs; nothing without `pre`.
fn prenorm_setup(
    rec: &mut Recorder,
    op: &'static str,
    spec: &mut QMatvecSpec,
    o: &Tensor,
    pre: Option<&PreNormArgs>,
) -> Result<Option<(Tensor, Tensor)>> {
    let Some(a) = pre else {
        return Ok(None);
    };
    let k = spec.k as usize;
    if spec.m != 1 {
        return Err(Error::Shape {
            op,
            detail: format!("the fused pre-norm takes one row, got {} rows", spec.m),
        });
    }
    let mut vectors = vec![("norm_w", a.norm_w, vec![k])];
    if let Some(pw) = a.post_w {
        vectors.push(("post_w", pw, vec![k]));
    }
    for (name, t, want) in vectors {
        if t.shape() != want.as_slice() && t.shape() != [1, k] {
            return Err(Error::Shape {
                op,
                detail: format!("{name} must be [{k}], got {:?}", t.shape()),
            });
        }
        expect_f32(op, t)?;
        expect_single(op, name, t)?;
    }
    if a.residual.shape() != o.shape() {
        return Err(Error::Shape {
            op,
            detail: format!(
                "residual {:?} must have o's shape {:?}",
                a.residual.shape(),
                o.shape()
            ),
        });
    }
    expect_f32(op, a.residual)?;
    expect_single(op, "residual", a.residual)?;
    spec.prenorm = Some(match a.post_w {
        Some(_) => PreNorm::PostNormAdd,
        None => PreNorm::Add,
    });
    Ok(Some((
        rec.empty(&[1, k], DType::F32)?,
        rec.empty(&[1, k], DType::F32)?,
    )))
}

/// Appends the pre-norm bindings (residual, norm weight, residual out, post-norm weight,
/// normed out) in the kernel's binding order and puts eps in the uniforms.
fn prenorm_binds<'a>(
    params: &mut webjit_jit::kernels::qmatvec::QMatvecParams,
    binds: &mut Vec<Bind<'a>>,
    pre: Option<&'a PreNormArgs>,
    outs: Option<&'a (Tensor, Tensor)>,
) {
    let (Some(a), Some((xo, xn))) = (pre, outs) else {
        return;
    };
    params.eps = a.eps;
    binds.push(Bind::whole(a.residual));
    binds.push(Bind::whole(a.norm_w));
    binds.push(Bind::whole(xo));
    if let Some(pw) = a.post_w {
        binds.push(Bind::whole(pw));
    }
    binds.push(Bind::whole(xn));
}

/// Dequantizes a whole quantized weight to f32 [N, K] on the GPU (tests use it to check
/// repacking; the output must fit one binding).
pub fn qdequant(rec: &mut Recorder, w: &QTensor) -> Result<Tensor> {
    let [n, k] = w.shape();
    let engine = rec.engine();
    let out = engine.empty(&[n, k], DType::F32)?;
    expect_single("qdequant", "output", &out)?;
    for (i, seg) in w.segments().iter().enumerate() {
        let spec = QDequantSpec {
            format: w.format(),
            rows: seg.rows as u64,
            k: k as u64,
        };
        let (c, kernel) = engine.kernel_for(&spec, None)?;
        let seg_out = engine.empty(&[seg.rows, k], DType::F32)?;
        rec.dispatch(
            &kernel,
            bytemuck::bytes_of(&spec.params()),
            &[
                Bind {
                    buffer: &seg.buffer,
                    size: w.segment_bytes(i),
                },
                Bind::whole(&seg_out),
            ],
            spec.dispatch(&c),
        )?;
        let bytes = (seg.rows * k * 4) as u64;
        rec.copy(
            seg_out.segments()[0].buffer.raw(),
            0,
            out.segments()[0].buffer.raw(),
            (seg.row_start * k * 4) as u64,
            bytes,
        );
    }
    Ok(out)
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

/// X [M, K] (or [K]) quantized to 8 bits per block of 32 for the int8 matvec: the codes
/// (u32 [M, K / 4], four signed bytes each) and the blocks' (d, d * sum of codes) (f32
/// [M, K / 32, 2]).
pub fn quantize_q8(
    rec: &mut Recorder,
    x: &Tensor,
    cfg: Option<QuantizeQ8Config>,
) -> Result<(Tensor, Tensor)> {
    let op = "quantize_q8";
    expect_f32(op, x)?;
    expect_single(op, "x", x)?;
    let (m, k) = match x.shape() {
        &[m, k] => (m, k),
        &[k] => (1, k),
        s => {
            return Err(Error::Shape {
                op,
                detail: format!("x must be [M, K] or [K], got {s:?}"),
            })
        }
    };
    let spec = QuantizeQ8Spec {
        m: m.min(u32::MAX as usize) as u32,
        k: k as u64,
    };
    let engine = rec.engine();
    let (c, kernel) = engine.kernel_for(&spec, cfg)?;
    let xq = rec.empty(&[m, k / 4], DType::U32)?;
    let xs = rec.empty(&[m, k / 32, 2], DType::F32)?;
    rec.dispatch(
        &kernel,
        bytemuck::bytes_of(&spec.params()),
        &[Bind::whole(x), Bind::whole(&xq), Bind::whole(&xs)],
        spec.dispatch(&c),
    )?;
    Ok((xq, xs))
}

/// The int8 problem spec for these operands (an error for formats without an int8 path).
pub fn qmatvec_i8_spec(x: &Tensor, w: &QTensor) -> Result<QMatvecI8Spec> {
    let s = qmatvec_spec(x, w)?;
    if !QMatvecI8Spec::supports(s.format) {
        return Err(Error::InvalidArgument {
            op: "qmatvec_i8",
            detail: format!(
                "no int8 path for {} weights (Q4_0, Q5_0, Q8_0, Q4_K and Q6_K have one)",
                s.format.name()
            ),
        });
    }
    Ok(s.i8_spec())
}

/// `qmatvec` on the int8 path: X is quantized to 8 bits per block of 32 (one extra dispatch),
/// then each 4 products are one `dot4I8Packed`. Results differ from `qmatvec` by the
/// activations' rounding.
pub fn qmatvec_i8(
    rec: &mut Recorder,
    x: &Tensor,
    w: &QTensor,
    cfg: Option<QMatvecI8Config>,
) -> Result<Tensor> {
    let spec = qmatvec_i8_spec(x, w)?;
    let y = rec.empty(&[spec.m as usize, spec.n as usize], DType::F32)?;
    qmatvec_i8_into(rec, x, w, &y, cfg)?;
    Ok(y)
}

/// `qmatvec_i8` writing into an existing f32 output [M, N].
pub fn qmatvec_i8_into(
    rec: &mut Recorder,
    x: &Tensor,
    w: &QTensor,
    y: &Tensor,
    cfg: Option<QMatvecI8Config>,
) -> Result<()> {
    let spec = qmatvec_i8_spec(x, w)?;
    check_operands("qmatvec_i8", x, y, [spec.m as usize, spec.n as usize])?;
    // Check the matvec's config before any dispatch is recorded.
    let (c, kernel) = rec.engine().kernel_for(&spec, cfg)?;
    let (xq, xs) = quantize_q8(rec, x, None)?;
    qmatvec_i8_quantized(rec, &spec, (&c, &kernel), &xq, &xs, w, y)
}

/// The matvec of `qmatvec_i8` on already quantized activations (`quantize_q8`'s output), with
/// the config `c` and its pipeline (from `Engine::kernel_for`).
pub fn qmatvec_i8_quantized(
    rec: &mut Recorder,
    spec: &QMatvecI8Spec,
    (c, kernel): (&QMatvecI8Config, &crate::pipeline::Kernel),
    xq: &Tensor,
    xs: &Tensor,
    w: &QTensor,
    y: &Tensor,
) -> Result<()> {
    let op = "qmatvec_i8";
    let (m, k) = (spec.m as usize, spec.k as usize);
    if xq.shape() != [m, k / 4] || xs.shape() != [m, k / 32, 2] {
        return Err(Error::Shape {
            op,
            detail: format!(
                "quantized x must be [{m}, {}] codes and [{m}, {}, 2] scales, got {:?} and {:?}",
                k / 4,
                k / 32,
                xq.shape(),
                xs.shape()
            ),
        });
    }
    for (i, seg) in w.segments().iter().enumerate() {
        let params = spec.params(seg.row_start as u64, seg.rows as u64);
        let wb = Bind {
            buffer: &seg.buffer,
            size: w.segment_bytes(i),
        };
        rec.dispatch(
            kernel,
            bytemuck::bytes_of(&params),
            &[wb, Bind::whole(xq), Bind::whole(xs), Bind::whole(y)],
            spec.dispatch_rows(c, seg.rows as u64),
        )?;
    }
    Ok(())
}
