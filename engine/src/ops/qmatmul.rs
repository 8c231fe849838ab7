//! The quantized matmul of prefill: `ops::qmatmul(x, w)`.

use webjit_jit::kernels::qmatmul::{QMatmulConfig, QMatmulSpec, SplitSumConfig};
use webjit_jit::KernelSpec;

use super::qmatvec::check_operands;
use super::{output, Call, Op, OpSpec};
use crate::error::{Error, Result};
use crate::qtensor::QTensor;
use crate::recorder::{Bind, Recorder, ReplayFactory};
use crate::tensor::{DType, Tensor};

/// Y [M, N] = X [M, K] W^T for a quantized W [N, K] (may be split into row segments), any M.
pub fn qmatmul<'a>(x: &'a Tensor, w: &'a QTensor) -> Call<'a, QMatmul<'a>> {
    Call::new(QMatmul {
        x,
        w,
        sum_config: None,
    })
}

pub struct QMatmul<'a> {
    x: &'a Tensor,
    w: &'a QTensor,
    /// The config of the pass that sums split-K partials.
    sum_config: Option<SplitSumConfig>,
}

impl<'a> Call<'a, QMatmul<'a>> {
    /// Runs config `c` of the split-K sum pass (when the main config splits K).
    pub fn sum_config(mut self, c: SplitSumConfig) -> Self {
        self.op_mut().sum_config = Some(c);
        self
    }
}

impl OpSpec for QMatmul<'_> {
    type Spec = QMatmulSpec;
    /// The problem of the first (largest) segment of W.
    fn spec(&self) -> Result<QMatmulSpec> {
        let [n, k] = self.w.shape();
        let m = match self.x.shape() {
            &[m, kx] if kx == k => m,
            s => {
                return Err(Error::Shape {
                    op: "qmatmul",
                    detail: format!("x must be [M, {k}] to match weight [{n}, {k}], got {s:?}"),
                })
            }
        };
        Ok(QMatmulSpec {
            format: self.w.format(),
            m: m as u64,
            n: n as u64,
            k: k as u64,
            rows: self.w.segments()[0].rows as u64,
        })
    }
}

impl Op for QMatmul<'_> {
    type Config = QMatmulConfig;
    type Output = Tensor;
    fn record_op(
        self,
        rec: &mut Recorder<'_>,
        out: Option<&Tensor>,
        cfg: Option<QMatmulConfig>,
    ) -> Result<Tensor> {
        let spec = self.spec()?;
        let (x, w) = (self.x, self.w);
        let y = output(rec, "qmatmul", out, &[spec.m as usize, spec.n as usize])?;
        check_operands("qmatmul", x, &y, [spec.m as usize, spec.n as usize])?;
        let replay = |sum: Option<SplitSumConfig>| {
            let (x, w) = (x.clone(), w.clone());
            move |rec: &mut Recorder<'_>, c: QMatmulConfig, s: Option<SplitSumConfig>| {
                let mut call = qmatmul(&x, &w).config(c);
                if let Some(s) = s.or(sum.clone()) {
                    call = call.sum_config(s);
                }
                call.record(rec)
            }
        };
        let sum_cfg = self.sum_config.clone();
        let (c, kernel) = rec.kernel(&spec, cfg, || {
            let f = replay(sum_cfg.clone());
            ReplayFactory::ready(move |rec, c: &QMatmulConfig| f(rec, c.clone(), None))
        })?;
        // K splits write partial outputs [ks, M, N], summed into y by one more pass.
        let split = spec.split_sum(&c);
        let part = match split {
            Some(_) => Some(rec.empty(
                &[c.ks as usize * spec.m as usize, spec.n as usize],
                DType::F32,
            )?),
            None => None,
        };
        let dst = part.as_ref().unwrap_or(&y);
        for (i, seg) in w.segments().iter().enumerate() {
            let params = spec.params(seg.row_start as u64, seg.rows as u64);
            rec.dispatch(
                &kernel,
                bytemuck::bytes_of(&params),
                &[
                    Bind::weight("w", w, i),
                    Bind::whole("x", x),
                    Bind::whole("y", dst),
                ],
                spec.dispatch_rows(&c, seg.rows as u64),
            )?;
        }
        if let (Some(ss), Some(part)) = (split, &part) {
            let main = c.clone();
            let (sc, sk) = rec.kernel(&ss, self.sum_config.clone(), || {
                let f = replay(None);
                ReplayFactory::ready(move |rec, s: &SplitSumConfig| {
                    f(rec, main.clone(), Some(s.clone()))
                })
            })?;
            rec.dispatch(
                &sk,
                bytemuck::bytes_of(&ss.params()),
                &[Bind::whole("part", part), Bind::whole("y", &y)],
                ss.dispatch(&sc),
            )?;
        }
        Ok(y)
    }
}
