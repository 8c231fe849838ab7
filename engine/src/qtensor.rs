//! Quantized weight tensors: GGUF blocks repacked into u32 words (see `webjit_jit::quant`),
//! split along rows into segments that each fit one storage binding. Rows can be written chunk
//! by chunk as a model file streams in.

use webjit_jit::quant::{self, GgmlType};

use crate::error::{Error, Result};
use crate::tensor::Segment;
use crate::Engine;

/// A [N, K] weight in GGUF layout (K contiguous), repacked for the GPU.
#[derive(Clone)]
pub struct QTensor {
    pub(crate) format: GgmlType,
    pub(crate) n: usize,
    pub(crate) k: usize,
    pub(crate) row_words: usize,
    pub(crate) segments: Vec<Segment>,
}

impl QTensor {
    pub fn format(&self) -> GgmlType {
        self.format
    }
    /// [N, K]
    pub fn shape(&self) -> [usize; 2] {
        [self.n, self.k]
    }
    /// Repacked u32 words per row.
    pub fn row_words(&self) -> usize {
        self.row_words
    }
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }
    /// Bytes of the original GGUF data (what a kernel must stream per use).
    pub fn gguf_bytes(&self) -> u64 {
        (self.n * self.format.row_bytes(self.k).unwrap_or(0)) as u64
    }
    /// Bytes of segment `i` on the GPU.
    pub fn segment_bytes(&self, i: usize) -> u64 {
        (self.segments[i].rows * self.row_words * 4) as u64
    }
}

impl std::fmt::Debug for QTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "QTensor({}, [{}, {}], {} segment(s))",
            self.format.name(),
            self.n,
            self.k,
            self.segments.len()
        )
    }
}

impl Engine {
    /// Allocates a quantized [N, K] weight (contents undefined until written). Sizes are
    /// validated before anything is allocated.
    pub fn alloc_quantized(&self, format: GgmlType, shape: [usize; 2]) -> Result<QTensor> {
        self.gpu.check_alive()?;
        let [n, k] = shape;
        let op = "upload_quantized";
        if n == 0 {
            return Err(Error::Shape {
                op,
                detail: format!("{} weight {shape:?} has no rows", format.name()),
            });
        }
        let row_words = format.row_words(k)?;
        format.row_bytes(k)?;
        let row_bytes = row_words as u64 * 4;
        let max = self
            .gpu
            .max_binding()
            .min(self.gpu.profile.limits.max_buffer_size);
        if row_bytes > max {
            return Err(Error::TooLarge {
                what: format!("one row of {} weight {shape:?}", format.name()),
                bytes: row_bytes,
                max,
            });
        }
        let total = (n as u64)
            .checked_mul(row_bytes)
            .ok_or_else(|| Error::Shape {
                op,
                detail: format!("{shape:?} overflows"),
            })?;
        let budget = self.gpu.options.memory_budget;
        if total > budget {
            return Err(Error::OutOfMemory {
                what: format!(
                    "{} weight {shape:?} (engine memory budget {budget} bytes)",
                    format.name()
                ),
                bytes: total,
            });
        }
        let rows_per_seg = ((max / row_bytes) as usize).max(1);
        let mut segments = Vec::new();
        let mut start = 0;
        while start < n {
            let rows = (n - start).min(rows_per_seg);
            // Exact sizes: a weight lives as long as its model (see `BufferPool::get_exact`).
            let buffer = self.pool.get_exact(
                &self.gpu.device,
                rows as u64 * row_bytes,
                self.gpu.profile.limits.max_buffer_size,
                "quantized weight",
            )?;
            segments.push(Segment {
                buffer,
                row_start: start,
                rows,
            });
            start += rows;
        }
        Ok(QTensor {
            format,
            n,
            k,
            row_words,
            segments,
        })
    }

    /// Repacks and writes whole rows `row_start..` of raw GGUF bytes (`raw` holds a whole
    /// number of rows). Call repeatedly to stream a weight in.
    /// A copy of `t` in new GPU buffers (a GPU-side copy; the tuner times kernels over
    /// several copies so weights are read from memory, not from a warm cache).
    pub fn copy_quantized(&self, t: &QTensor) -> Result<QTensor> {
        let out = self.alloc_quantized(t.format, [t.n, t.k])?;
        let mut rec = self.recorder();
        for (i, (a, b)) in t.segments.iter().zip(&out.segments).enumerate() {
            rec.copy(&a.buffer, 0, &b.buffer, 0, t.segment_bytes(i));
        }
        rec.submit()?;
        Ok(out)
    }

    pub fn write_quantized_rows(&self, t: &QTensor, row_start: usize, raw: &[u8]) -> Result<()> {
        let op = "write_quantized_rows";
        let row_bytes = t.format.row_bytes(t.k)?;
        if !raw.len().is_multiple_of(row_bytes) {
            return Err(Error::Shape {
                op,
                detail: format!(
                    "{} bytes is not a whole number of {row_bytes}-byte {} rows of K = {}",
                    raw.len(),
                    t.format.name(),
                    t.k
                ),
            });
        }
        let rows = raw.len() / row_bytes;
        if row_start.checked_add(rows).is_none_or(|end| end > t.n) {
            return Err(Error::Shape {
                op,
                detail: format!("rows {row_start}..+{rows} exceed the weight's {} rows", t.n),
            });
        }
        let mut words = Vec::new();
        for seg in &t.segments {
            let lo = row_start.max(seg.row_start);
            let hi = (row_start + rows).min(seg.row_start + seg.rows);
            if lo >= hi {
                continue;
            }
            words.clear();
            let src = &raw[(lo - row_start) * row_bytes..(hi - row_start) * row_bytes];
            quant::repack(t.format, src, &mut words)?;
            let offset = ((lo - seg.row_start) * t.row_words * 4) as u64;
            self.gpu
                .queue
                .write_buffer(seg.buffer.raw(), offset, bytemuck::cast_slice(&words));
        }
        Ok(())
    }

    /// Uploads a whole [N, K] weight from its raw GGUF bytes.
    pub fn upload_quantized(
        &self,
        format: GgmlType,
        shape: [usize; 2],
        raw: &[u8],
    ) -> Result<QTensor> {
        let want = format
            .row_bytes(shape[1])?
            .checked_mul(shape[0])
            .ok_or_else(|| Error::Shape {
                op: "upload_quantized",
                detail: format!("{shape:?} overflows"),
            })?;
        if raw.len() != want {
            return Err(Error::Shape {
                op: "upload_quantized",
                detail: format!(
                    "{} weight {shape:?} needs {want} bytes, got {}",
                    format.name(),
                    raw.len()
                ),
            });
        }
        let t = self.alloc_quantized(format, shape)?;
        self.write_quantized_rows(&t, 0, raw)?;
        Ok(t)
    }
}
