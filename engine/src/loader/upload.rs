//! The engine-side sink: uploads each tensor to the GPU piece by piece as it streams in.
//! F32 goes up as is; F16 and BF16 are widened to f32 on the host (per piece, so no whole
//! tensor is ever held). Quantized tensors are repacked into the GPU layout of
//! `webjit_jit::quant` row by row as their bytes arrive (`GpuSink::qtensors`), holding at most
//! one partial row; with `repack_quantized` off they go up as raw GGUF bytes in u32 words.

use std::collections::HashMap;

use half::{bf16, f16};

use webjit_jit::quant::GgmlType;

use super::{LoaderError, TensorInfo, TensorSink, TensorType};
use crate::{DType, Engine, Error, QTensor, Tensor};

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

/// Tensors the host needs besides the GPU (RoPE frequency factors, which go into the host-made
/// RoPE tables): the sink also keeps them in `GpuSink::host`.
pub const HOST_TENSORS: [&str; 3] = [
    "rope_freqs.weight",
    "rope_factors_short.weight",
    "rope_factors_long.weight",
];

/// At most this many bytes of a host tensor are kept (a factor vector has head_dim / 2 values).
const MAX_HOST_BYTES: usize = 1 << 20;

struct Pending {
    name: String,
    tensor: Tensor,
    /// Output bytes written so far.
    written: u64,
    /// Up to 3 output bytes waiting for a whole word (quantized blocks are not 4-byte sized).
    carry: Vec<u8>,
}

/// A quantized weight being repacked row by row.
struct QPending {
    name: String,
    tensor: QTensor,
    row_bytes: usize,
    next_row: usize,
    /// Bytes of the row not yet complete.
    carry: Vec<u8>,
}

pub struct GpuSink {
    engine: Engine,
    pub tensors: HashMap<String, LoadedTensor>,
    /// Quantized weights, repacked for the quantized matmul kernels ([rows, K] with K the
    /// innermost dim of the file's shape).
    pub qtensors: HashMap<String, QTensor>,
    /// Repack quantized tensors into `qtensors` (default). Off: raw words into `tensors`.
    pub repack_quantized: bool,
    /// Host copies of the small f32 tensors in `HOST_TENSORS` (RoPE factors), as values.
    pub host: HashMap<String, Vec<f32>>,
    /// Bytes of a `HOST_TENSORS` tensor still arriving.
    host_raw: Vec<u8>,
    qpending: Option<QPending>,
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

impl GpuSink {
    pub fn new(engine: &Engine) -> Self {
        Self {
            engine: engine.clone(),
            tensors: HashMap::new(),
            qtensors: HashMap::new(),
            repack_quantized: true,
            host: HashMap::new(),
            host_raw: Vec::new(),
            qpending: None,
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
        // Exact sizes: a weight lives as long as its model (see `BufferPool::get_exact`).
        self.engine
            .empty_exact(&shape, dtype)
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

impl GpuSink {
    fn repacks(&self, info: &TensorInfo) -> bool {
        self.repack_quantized && info.dtype.is_quantized()
    }

    fn qcreate(&self, info: &TensorInfo) -> Result<QPending, LoaderError> {
        let format = GgmlType::from_name(info.dtype.name()).ok_or_else(|| {
            LoaderError::UnsupportedDType {
                tensor: info.name.clone(),
                dtype: info.dtype.name().to_string(),
            }
        })?;
        // Shapes are row-major here (innermost dim last), so K is the last dim.
        let k = info.shape.last().copied().unwrap_or(1);
        let n: u64 = info.shape.iter().rev().skip(1).product();
        let (n, k) = (usize::try_from(n), usize::try_from(k));
        let (Ok(n), Ok(k)) = (n, k) else {
            return Err(sink_err(
                &info.name,
                Error::Shape {
                    op: "load",
                    detail: format!("shape {:?} is too large", info.shape),
                },
            ));
        };
        let tensor = self
            .engine
            .alloc_quantized(format, [n, k])
            .map_err(|e| sink_err(&info.name, e))?;
        let row_bytes = format
            .row_bytes(k)
            .map_err(|e| sink_err(&info.name, e.into()))?;
        Ok(QPending {
            name: info.name.clone(),
            tensor,
            row_bytes,
            next_row: 0,
            carry: Vec::new(),
        })
    }

    /// Repacks and uploads every complete row in `carry` + `bytes`.
    fn qdata(&mut self, info: &TensorInfo, bytes: &[u8]) -> Result<(), LoaderError> {
        if self.qpending.as_ref().map(|p| &p.name) != Some(&info.name) {
            self.qpending = Some(self.qcreate(info)?);
        }
        let Some(p) = self.qpending.as_mut() else {
            return Ok(());
        };
        p.carry.extend_from_slice(bytes);
        let whole = p.carry.len() / p.row_bytes * p.row_bytes;
        if whole > 0 {
            self.engine
                .write_quantized_rows(&p.tensor, p.next_row, &p.carry[..whole])
                .map_err(|e| sink_err(&info.name, e))?;
            p.next_row += whole / p.row_bytes;
            p.carry.drain(..whole);
            self.since_submit += whole as u64;
        }
        if self.since_submit >= 16 << 20 {
            self.engine.gpu.queue.submit(std::iter::empty());
            self.since_submit = 0;
        }
        Ok(())
    }
}

impl TensorSink for GpuSink {
    fn tensor_data(
        &mut self,
        info: &TensorInfo,
        _offset: u64,
        bytes: &[u8],
    ) -> Result<(), LoaderError> {
        if self.repacks(info) {
            return self.qdata(info, bytes);
        }
        if HOST_TENSORS.contains(&info.name.as_str()) {
            if self.host_raw.len() + bytes.len() > MAX_HOST_BYTES {
                return Err(sink_err(
                    &info.name,
                    Error::Shape {
                        op: "load",
                        detail: format!("above {MAX_HOST_BYTES} bytes"),
                    },
                ));
            }
            self.host_raw.extend_from_slice(bytes);
        }
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
        if self.repacks(info) {
            let p = match self.qpending.take() {
                Some(p) if p.name == info.name => p,
                _ => self.qcreate(info)?,
            };
            if !p.carry.is_empty() || p.next_row != p.tensor.shape()[0] {
                return Err(sink_err(
                    &info.name,
                    Error::Shape {
                        op: "load",
                        detail: format!("{} of {} rows arrived", p.next_row, p.tensor.shape()[0]),
                    },
                ));
            }
            self.qtensors.insert(info.name.clone(), p.tensor);
            return Ok(());
        }
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
        if HOST_TENSORS.contains(&info.name.as_str()) {
            let raw = std::mem::take(&mut self.host_raw);
            let values: Vec<f32> = match info.dtype {
                TensorType::F32 => raw
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                TensorType::F16 => raw
                    .chunks_exact(2)
                    .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                TensorType::BF16 => raw
                    .chunks_exact(2)
                    .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                other => {
                    return Err(sink_err(
                        &info.name,
                        Error::Unsupported {
                            what: format!(
                                "{} for a RoPE factor tensor (expected F32)",
                                other.name()
                            ),
                        },
                    ))
                }
            };
            self.host.insert(info.name.clone(), values);
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
