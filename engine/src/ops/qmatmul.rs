use webjit_jit::kernels::qmatmul::{QMatmulConfig, QMatmulSpec};
use webjit_jit::KernelSpec;

use crate::error::{Error, Result};
use crate::qtensor::QTensor;
use crate::recorder::{Bind, Recorder};
use crate::tensor::{DType, Tensor};

/// Y [M, N] = X [M, K] W^T for a quantized W [N, K], any M (prefill).
pub fn qmatmul(rec: &mut Recorder, x: &Tensor, w: &QTensor) -> Result<Tensor> {
    qmatmul_with(rec, x, w, None)
}

/// The problem spec for these operands; `rows` is the first segment's (the largest).
pub fn qmatmul_spec(x: &Tensor, w: &QTensor) -> Result<QMatmulSpec> {
    let [n, k] = w.shape();
    let m = match x.shape() {
        &[m, kx] if kx == k => m,
        s => {
            return Err(Error::Shape {
                op: "qmatmul",
                detail: format!("x must be [M, {k}] to match weight [{n}, {k}], got {s:?}"),
            })
        }
    };
    Ok(QMatmulSpec {
        format: w.format(),
        m: m as u64,
        n: n as u64,
        k: k as u64,
        rows: w.segments()[0].rows as u64,
    })
}

pub fn qmatmul_with(
    rec: &mut Recorder,
    x: &Tensor,
    w: &QTensor,
    cfg: Option<QMatmulConfig>,
) -> Result<Tensor> {
    let spec = qmatmul_spec(x, w)?;
    let y = rec.empty(&[spec.m as usize, spec.n as usize], DType::F32)?;
    qmatmul_into(rec, x, w, &y, cfg)?;
    Ok(y)
}

/// `qmatmul_with` writing into an existing f32 output [M, N].
pub fn qmatmul_into(
    rec: &mut Recorder,
    x: &Tensor,
    w: &QTensor,
    y: &Tensor,
    cfg: Option<QMatmulConfig>,
) -> Result<()> {
    let spec = qmatmul_spec(x, w)?;
    super::qmatvec::check_operands("qmatmul", x, y, [spec.m as usize, spec.n as usize])?;
    let engine = rec.engine();
    let c = engine.choose(&spec, cfg);
    let kernel = engine.pipelines.get(&engine.gpu, &spec, &c)?;
    // K splits write partial outputs [ks, M, N], summed into y by one more pass.
    let split = spec.split_sum(&c);
    let part = match split {
        Some(_) => Some(rec.empty(
            &[c.ks as usize * spec.m as usize, spec.n as usize],
            DType::F32,
        )?),
        None => None,
    };
    let out = part.as_ref().unwrap_or(y);
    for (i, seg) in w.segments().iter().enumerate() {
        let params = spec.params(seg.row_start as u64, seg.rows as u64);
        let wb = Bind {
            buffer: &seg.buffer,
            size: w.segment_bytes(i),
        };
        rec.dispatch(
            &kernel,
            bytemuck::bytes_of(&params),
            &[wb, Bind::whole(x), Bind::whole(out)],
            spec.dispatch_rows(&c, seg.rows as u64),
        )?;
    }
    if let (Some(ss), Some(part)) = (split, &part) {
        let (sc, sk) = engine.kernel_for(&ss, None)?;
        rec.dispatch(
            &sk,
            bytemuck::bytes_of(&ss.params()),
            &[Bind::whole(part), Bind::whole(y)],
            ss.dispatch(&sc),
        )?;
    }
    Ok(())
}
