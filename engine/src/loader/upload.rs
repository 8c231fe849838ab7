//! The engine-side sink: uploads each tensor to the GPU piece by piece as it streams in.
//! F32 goes up as is; F16 and BF16 are widened to f32 on the host (per piece, so no whole
//! tensor is ever held); quantized tensors go up as their raw bytes in u32 words.
// TODO(quant repack): call jit/src/quant's repacking here (per block-aligned piece) once it
// lands, instead of uploading raw GGUF blocks.

use std::collections::HashMap;

use half::{bf16, f16};

use super::{LoaderError, TensorInfo, TensorSink, TensorType};
use crate::{DType, Engine, Error, Tensor};

/// A tensor on the GPU and what it holds.
#[derive(Debug, Clone)]
pub struct LoadedTensor {
    /// F32: the values (shape = the file's shape). Quantized: raw block bytes as u32 words,
    /// little-endian, zero-padded to a multiple of 4 bytes: `[rows, row_bytes / 4]` when a row
    /// is a whole number of words, else `[words]`.
    pub tensor: Tensor,
    /// The type in the file.
    pub source: TensorType,
}

struct Pending {
    name: String,
    tensor: Tensor,
    /// Output bytes written so far.
    written: u64,
    /// Up to 3 output bytes waiting for a whole word (quantized blocks are not 4-byte sized).
    carry: Vec<u8>,
}

pub struct GpuSink<'e> {
    engine: &'e Engine,
    pub tensors: HashMap<String, LoadedTensor>,
    pending: Option<Pending>,
    /// Bytes uploaded since the last queue submit.
    since_submit: u64,
}

fn sink_err(tensor: &str, e: Error) -> LoaderError {
    LoaderError::Sink {
        tensor: tensor.to_string(),
        code: e.code(),
        detail: e.to_string(),
    }
}

impl<'e> GpuSink<'e> {
    pub fn new(engine: &'e Engine) -> Self {
        Self {
            engine,
            tensors: HashMap::new(),
            pending: None,
            since_submit: 0,
        }
    }

    fn create(&self, info: &TensorInfo) -> Result<Tensor, LoaderError> {
        let dims: Option<Vec<usize>> = info
            .shape
            .iter()
            .map(|&d| usize::try_from(d).ok())
            .collect();
        let too_big = || {
            sink_err(
                &info.name,
                Error::Shape {
                    op: "load",
                    detail: format!("shape {:?} does not fit this platform", info.shape),
                },
            )
        };
        let dims = dims.ok_or_else(too_big)?;
        let (shape, dtype) = match info.dtype {
            TensorType::F32 | TensorType::F16 | TensorType::BF16 => (dims, DType::F32),
            t if t.is_quantized() => {
                let row_bytes =
                    info.shape.last().copied().unwrap_or(1) / t.block_elems() * t.block_bytes();
                let shape = match info.size.checked_div(row_bytes) {
                    Some(rows) if row_bytes.is_multiple_of(4) => {
                        vec![rows as usize, (row_bytes / 4) as usize]
                    }
                    _ => vec![info.size.div_ceil(4) as usize],
                };
                (shape, DType::U32)
            }
            _ => {
                return Err(LoaderError::UnsupportedDType {
                    tensor: info.name.clone(),
                    dtype: info.dtype.name().to_string(),
                })
            }
        };
        self.engine
            .empty(&shape, dtype)
            .map_err(|e| sink_err(&info.name, e))
    }

    /// Writes `bytes` (a multiple of 4) at byte `offset` (a multiple of 4) of `t`'s layout,
    /// across segments.
    fn write(&self, t: &Tensor, mut offset: u64, mut bytes: &[u8]) {
        let row_bytes = (t.row_len() * t.dtype().size()) as u64;
        for seg in t.segments() {
            if bytes.is_empty() {
                break;
            }
            let lo = seg.row_start as u64 * row_bytes;
            let hi = lo + seg.rows as u64 * row_bytes;
            if offset >= hi {
                continue;
            }
            let n = ((hi - offset) as usize).min(bytes.len());
            self.engine
                .gpu
                .queue
                .write_buffer(seg.buffer.raw(), offset - lo, &bytes[..n]);
            offset += n as u64;
            bytes = &bytes[n..];
        }
    }

    fn emit(&mut self, out: &[u8]) {
        let Some(p) = self.pending.as_mut() else {
            return;
        };
        let mut out = out;
        let mut joined = Vec::new();
        if !p.carry.is_empty() {
            joined.extend_from_slice(&p.carry);
            joined.extend_from_slice(out);
            p.carry.clear();
            out = &joined;
        }
        let whole = out.len() / 4 * 4;
        let p_off = p.written;
        p.carry.extend_from_slice(&out[whole..]);
        p.written += whole as u64;
        let t = p.tensor.clone();
        if whole > 0 {
            self.write(&t, p_off, &out[..whole]);
        }
        self.since_submit += whole as u64;
        // write_buffer stages on the host until a submit: flush so staging does not grow
        // with the model.
        if self.since_submit >= 16 << 20 {
            self.engine.gpu.queue.submit(std::iter::empty());
            self.since_submit = 0;
        }
    }
}

impl TensorSink for GpuSink<'_> {
    fn tensor_data(
        &mut self,
        info: &TensorInfo,
        _offset: u64,
        bytes: &[u8],
    ) -> Result<(), LoaderError> {
        if self.pending.as_ref().map(|p| &p.name) != Some(&info.name) {
            let tensor = self.create(info)?;
            self.pending = Some(Pending {
                name: info.name.clone(),
                tensor,
                written: 0,
                carry: Vec::new(),
            });
        }
        match info.dtype {
            TensorType::F16 => {
                let v: Vec<f32> = bytes
                    .chunks_exact(2)
                    .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect();
                self.emit(bytemuck::cast_slice(&v));
            }
            TensorType::BF16 => {
                let v: Vec<f32> = bytes
                    .chunks_exact(2)
                    .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect();
                self.emit(bytemuck::cast_slice(&v));
            }
            _ => self.emit(bytes),
        }
        Ok(())
    }

    fn tensor_ready(&mut self, info: &TensorInfo) -> Result<(), LoaderError> {
        let p = match self.pending.take() {
            Some(p) if p.name == info.name => p,
            // A zero-byte tensor gets no data pieces.
            _ => Pending {
                name: info.name.clone(),
                tensor: self.create(info)?,
                written: 0,
                carry: Vec::new(),
            },
        };
        if !p.carry.is_empty() {
            let mut last = p.carry.clone();
            last.resize(4, 0);
            self.write(&p.tensor, p.written, &last);
        }
        self.tensors.insert(
            info.name.clone(),
            LoadedTensor {
                tensor: p.tensor,
                source: info.dtype,
            },
        );
        Ok(())
    }
}
