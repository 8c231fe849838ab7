//! A decoder's weight matrix, as loaded: quantized blocks or f32.

use crate::error::{Error, Result};
use crate::qtensor::QTensor;
use crate::recorder::Recorder;
use crate::tensor::{DType, Segment, Tensor};
use crate::Engine;

/// A weight matrix W [N, K] applied as y = x W^T: quantized blocks or f32.
#[derive(Clone)]
pub enum Matrix {
    Quantized(QTensor),
    Dense(Tensor),
}

impl Matrix {
    pub fn shape(&self) -> [usize; 2] {
        match self {
            Matrix::Quantized(q) => q.shape(),
            Matrix::Dense(t) => [t.shape()[0], t.shape()[1]],
        }
    }

    pub fn quantized(&self) -> Option<&QTensor> {
        match self {
            Matrix::Quantized(q) => Some(q),
            Matrix::Dense(_) => None,
        }
    }

    /// The matrix cut along its rows into consecutive blocks of `rows` rows each (which must
    /// add up to N): fused weights (Phi-3's qkv and gate_up) become the matrices the layer
    /// plan expects. GPU-side copies, submitted before this returns; the fused matrix is freed
    /// when dropped.
    pub fn split_rows(&self, engine: &Engine, rows: &[usize]) -> Result<Vec<Matrix>> {
        let [n, k] = self.shape();
        if rows.iter().sum::<usize>() != n || rows.contains(&0) {
            return Err(Error::BadModel {
                detail: format!("a fused [{n}, {k}] weight cannot be cut into rows {rows:?}"),
            });
        }
        let mut rec = engine.recorder();
        let mut out = Vec::with_capacity(rows.len());
        let mut r0 = 0;
        for &nr in rows {
            out.push(match self {
                Matrix::Quantized(q) => {
                    let part = engine.alloc_quantized(q.format(), [nr, k])?;
                    let row_bytes = (q.row_words() * 4) as u64;
                    copy_rows(&mut rec, q.segments(), part.segments(), row_bytes, r0, nr);
                    Matrix::Quantized(part)
                }
                Matrix::Dense(t) => {
                    let part = engine.empty(&[nr, k], DType::F32)?;
                    let row_bytes = (k * 4) as u64;
                    copy_rows(&mut rec, t.segments(), part.segments(), row_bytes, r0, nr);
                    Matrix::Dense(part)
                }
            });
            r0 += nr;
        }
        rec.submit()?;
        Ok(out)
    }
}

/// Records copies of rows `r0..r0 + n` of `src` into rows `0..n` of `dst` (both split along
/// rows into segments of `row_bytes`-byte rows).
fn copy_rows(
    rec: &mut Recorder,
    src: &[Segment],
    dst: &[Segment],
    row_bytes: u64,
    r0: usize,
    n: usize,
) {
    for d in dst {
        // This destination segment holds source rows lo..hi.
        let (lo, hi) = (r0 + d.row_start, r0 + (d.row_start + d.rows).min(n));
        for s in src {
            let (a, b) = (lo.max(s.row_start), hi.min(s.row_start + s.rows));
            if a >= b {
                continue;
            }
            rec.copy(
                &s.buffer,
                (a - s.row_start) as u64 * row_bytes,
                &d.buffer,
                (a - lo) as u64 * row_bytes,
                (b - a) as u64 * row_bytes,
            );
        }
    }
}
