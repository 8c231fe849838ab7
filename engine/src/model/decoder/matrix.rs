//! A decoder's weight matrix, as loaded: quantized blocks or f32.

use crate::qtensor::QTensor;
use crate::tensor::Tensor;

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
}
