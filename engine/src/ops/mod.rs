//! Ops: validate the operands -> pick a config (the caller's, else the tuned one, else the
//! spec's default) -> encode dispatches into a `Recorder`.
//!
//! Every op has one entry, a function that takes its operands and options and returns a
//! [`Call`]; `record` records it:
//!
//! ```no_run
//! # fn f(rec: &mut webjit_engine::Recorder, x: &webjit_engine::Tensor,
//! #      w: &webjit_engine::Tensor, y: &webjit_engine::Tensor) -> webjit_engine::Result<()> {
//! use webjit_engine::ops;
//! let h = ops::rms_norm(x, w, 1e-6, 0.0).record(rec)?; // a new output, the engine's config
//! ops::matmul(&h, w, true).out(y).record(rec)?;        // into an existing tensor
//! let spec = ops::matmul(&h, w, true).spec()?;          // the kernel problem it poses
//! # let _ = spec; Ok(()) }
//! ```
//!
//! `.config(c)` runs a given config of the op's kernel (tests run every config of a space this
//! way; the tuner's replays too). While a recording captures (`Recorder::capture_kernels`),
//! each kernel an op runs with the engine's choice is kept with a replay of the op: that is how
//! the tuner learns what a model runs.

mod attention;
mod attention_decode;
mod block_sparse;
mod block_sparse_buffers;
mod block_sparse_opts;
mod elementwise;
mod embedding;
mod hadamard;
mod kv_append;
mod matmul;
mod neighborhood;
mod pool;
mod qk_rope;
mod qmatmul;
mod qmatvec;
mod rope;
mod rowwise;
mod sample;

pub use attention::{attention, Attention, AttentionOptions};
pub use attention_decode::{attention_decode, AttentionDecode, DecodeOptions};
pub use block_sparse::{block_sparse_attention, BlockSparse, SparseConfigs, SparseOutput};
pub use block_sparse_buffers::{SelectedBlocks, SparseBuffers};
pub use block_sparse_opts::{BlockMask, BlockSelect, Granularity, Partition, SparseOptions};
pub use elementwise::{
    add, elementwise, gelu_erf, gelu_tanh, gelu_tanh_mul, mul, scale, silu, silu_mul, softcap,
    Elementwise,
};
pub use embedding::{
    check_ids, embedding, embedding_add, embedding_gpu_ids, qembedding, Embedding, QEmbedding,
};
pub use hadamard::{hadamard, Hadamard};
pub use kv_append::{kv_append, KvAppend};
pub use matmul::{
    linear, linear_norm, linear_split, matmul, LayerNormIn, Linear, LinearEpilogue, Matmul,
};
pub use neighborhood::{neighborhood_attention, NaOptions, Neighborhood};
pub use pool::{mean_pool, MeanPool, PoolOptions};
pub use qk_rope::{qk_rope_append, qk_rope_append_packed, QkNorms, QkRope};
pub use qmatmul::{qmatmul, QMatmul};
pub use qmatvec::{
    qdequant, qmatvec, qmatvec_gated, qmatvec_stacked, quantize_q8, NormIn, QMatvec,
};
pub use rope::{rope, rope_table, rope_table_with, rope_with_table, Rope, RopeFreqs, RopeOptions};
pub use rowwise::{
    add_norm, l2_normalize, layer_norm, rms_norm, rms_norm_add, rowwise, softmax, AddNorm, Rowwise,
};
pub use sample::{SampleResult, Sampler};

use crate::error::{Error, Result};
use crate::recorder::Recorder;
use crate::tensor::{DType, Tensor};

/// An op's operands and options, ready to be recorded (see [`Call`]).
pub trait Op: Sized {
    /// The config of the op's kernel that `Call::config` sets.
    type Config: Clone;
    type Output;
    /// Records the op: into `out` when the caller gave one (ops with one output tensor), with
    /// `config` when the caller gave one.
    fn record_op(
        self,
        rec: &mut Recorder<'_>,
        out: Option<&Tensor>,
        config: Option<Self::Config>,
    ) -> Result<Self::Output>;
}

/// An op with a single kernel problem, which `Call::spec` returns (benchmarks and tests
/// enumerate its space).
pub trait OpSpec {
    type Spec;
    fn spec(&self) -> Result<Self::Spec>;
}

/// An op about to be recorded: `.out(t)` and `.config(c)` are optional, `.record(rec)` records.
#[must_use = "an op does nothing until it is recorded"]
pub struct Call<'o, O: Op> {
    op: O,
    out: Option<&'o Tensor>,
    config: Option<O::Config>,
}

impl<'o, O: Op> Call<'o, O> {
    pub(crate) fn new(op: O) -> Self {
        Self {
            op,
            out: None,
            config: None,
        }
    }

    /// Writes the output into `t` (which must have the output's shape) instead of a new
    /// tensor. Ops with several outputs refuse it.
    pub fn out(mut self, t: &'o Tensor) -> Self {
        self.out = Some(t);
        self
    }

    /// Runs config `c` of the op's kernel instead of the tuned or default one.
    pub fn config(mut self, c: O::Config) -> Self {
        self.config = Some(c);
        self
    }

    /// `config` when `c` is some.
    pub fn config_opt(mut self, c: Option<O::Config>) -> Self {
        self.config = c.or(self.config);
        self
    }

    pub fn record(self, rec: &mut Recorder<'_>) -> Result<O::Output> {
        self.op.record_op(rec, self.out, self.config)
    }

    /// The op's operands and options.
    pub fn op(&self) -> &O {
        &self.op
    }

    pub(crate) fn op_mut(&mut self) -> &mut O {
        &mut self.op
    }
}

impl<O: Op + OpSpec> Call<'_, O> {
    /// The kernel problem these operands pose.
    pub fn spec(&self) -> Result<O::Spec> {
        self.op.spec()
    }
}

/// Refuses `out` for ops with several outputs.
pub(crate) fn no_out(op: &'static str, out: Option<&Tensor>) -> Result<()> {
    match out {
        Some(_) => Err(Error::InvalidArgument {
            op,
            detail: "this op writes several outputs; `out` is not supported".into(),
        }),
        None => Ok(()),
    }
}

/// `out` if given (checked to be a single f32 binding of `shape`), else a new tensor.
pub(crate) fn output(
    rec: &mut Recorder<'_>,
    op: &'static str,
    out: Option<&Tensor>,
    shape: &[usize],
) -> Result<Tensor> {
    match out {
        Some(t) => {
            if t.shape() != shape || t.dtype() != DType::F32 {
                return Err(Error::Shape {
                    op,
                    detail: format!("output must be f32 {shape:?}, got {:?}", t.shape()),
                });
            }
            Ok(t.clone())
        }
        None => rec.empty(shape, DType::F32),
    }
}

pub(crate) fn expect_f32(op: &'static str, t: &Tensor) -> Result<()> {
    if t.dtype() != DType::F32 {
        return Err(Error::DType {
            op,
            expected: "f32",
            got: t.dtype().name(),
        });
    }
    Ok(())
}

pub(crate) fn expect_single(op: &'static str, what: &str, t: &Tensor) -> Result<()> {
    if t.is_segmented() {
        return Err(Error::InvalidArgument {
            op,
            detail: format!(
                "{what} {:?} is split over {} buffers; this op needs it in one binding",
                t.shape(),
                t.segments().len()
            ),
        });
    }
    Ok(())
}
