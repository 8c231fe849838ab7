//! Tensor handles: shape, dtype, and one or more buffer segments. A tensor larger than the
//! device's max storage binding is split along its outer rows into segments that each fit, so
//! kernels bind one segment at a time.

use std::sync::Arc;

use crate::buffer::GpuBuffer;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    U32,
}

impl DType {
    pub fn size(self) -> usize {
        4
    }
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::U32 => "u32",
        }
    }
}

/// A run of whole rows `[row_start, row_start + rows)` living in one buffer from offset 0.
#[derive(Clone)]
pub struct Segment {
    pub buffer: Arc<GpuBuffer>,
    pub row_start: usize,
    pub rows: usize,
}

#[derive(Clone)]
pub struct Tensor {
    pub(crate) shape: Vec<usize>,
    pub(crate) dtype: DType,
    pub(crate) segments: Vec<Segment>,
}

impl Tensor {
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// Length of the innermost dimension (1 for a scalar).
    pub fn row_len(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }
    /// Number of rows: the product of all but the innermost dimension.
    pub fn rows(&self) -> usize {
        if self.shape.is_empty() {
            1
        } else {
            self.shape[..self.shape.len() - 1].iter().product()
        }
    }
    pub fn bytes(&self) -> u64 {
        (self.numel() * self.dtype.size()) as u64
    }
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }
    pub fn is_segmented(&self) -> bool {
        self.segments.len() > 1
    }
    /// Bytes of segment `i`.
    pub fn segment_bytes(&self, i: usize) -> u64 {
        (self.segments[i].rows * self.row_len() * self.dtype.size()) as u64
    }
    /// The first `n` elements of a one-segment 1-D tensor, as a tensor of shape [n] on the
    /// same buffer (e.g. the sampled token at the head of the sampler's result).
    pub fn head(&self, n: usize) -> Option<Tensor> {
        if self.shape.len() != 1 || self.is_segmented() || n > self.numel() {
            return None;
        }
        let mut segments = self.segments.clone();
        segments[0].rows = 1;
        Some(Tensor {
            shape: vec![n],
            dtype: self.dtype,
            segments,
        })
    }

    /// Same buffers, new shape of the same element count and the same row split.
    pub fn reshape(&self, shape: &[usize]) -> Option<Tensor> {
        let numel: usize = shape.iter().product();
        if numel != self.numel() {
            return None;
        }
        let mut segments = self.segments.clone();
        if self.is_segmented() {
            // Segments hold whole rows: only shapes with the same row length keep that true.
            if shape.last() != self.shape.last() {
                return None;
            }
        } else if let Some(seg) = segments.first_mut() {
            // The one segment holds every row of the new shape.
            let row_len = shape.last().copied().unwrap_or(1).max(1);
            seg.rows = numel / row_len;
        }
        Some(Tensor {
            shape: shape.to_vec(),
            dtype: self.dtype,
            segments,
        })
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor({:?}, {}, {} segment(s))",
            self.shape,
            self.dtype.name(),
            self.segments.len()
        )
    }
}
