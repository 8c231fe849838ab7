//! Ops: validate arguments -> pick a config (the caller's, else the spec's default) -> encode
//! dispatches into a `Recorder`. Each op has a `*_with` form taking an explicit config, which
//! tests and the tuner use to run every config of a space.

mod attention;
mod attention_decode;
mod block_sparse;
mod block_sparse_opts;
mod elementwise;
mod embedding;
mod matmul;
mod neighborhood;
mod pool;
mod qk_rope;
mod qmatmul;
mod qmatvec;
mod rope;
mod rowwise;
mod sample;

pub use attention::{attention, attention_into, attention_spec, attention_with, AttentionOptions};
pub use attention_decode::{
    attention_decode, attention_decode_into, attention_decode_with, decode_spec, DecodeOptions,
};
pub use block_sparse::{
    block_sparse_attention, block_sparse_attention_into, block_sparse_attention_with,
    block_sparse_layout, block_sparse_select_into, SelectedBlocks, SparseBuffers, SparseConfigs,
    SparseOutput,
};
pub use block_sparse_opts::{BlockMask, BlockSelect, Granularity, Partition, SparseOptions};
pub use elementwise::{
    add, elementwise_with, gelu_erf, gelu_tanh, gelu_tanh_mul, mul, scale, silu, silu_mul,
};
pub use embedding::{
    check_ids, embedding, embedding_add, embedding_add_with, embedding_gpu_ids, embedding_with,
    qembedding_into,
};
pub use matmul::{
    linear, linear_norm, linear_norm_with, linear_split, linear_split_with, linear_with, matmul,
    matmul_into, matmul_spec, matmul_with, LayerNormIn, LinearEpilogue,
};
pub use neighborhood::{
    neighborhood_attention, neighborhood_attention_into, neighborhood_attention_with,
    neighborhood_spec, NaOptions,
};
pub use pool::{mean_pool, mean_pool_opts, mean_pool_with, PoolOptions};
pub use qk_rope::{qk_rope_append, qk_rope_append_packed, QkNorms};
pub use qmatmul::{qmatmul, qmatmul_into, qmatmul_spec, qmatmul_with};
pub use qmatvec::{
    qdequant, qmatvec, qmatvec_gated, qmatvec_gated_pre, qmatvec_i8, qmatvec_i8_into,
    qmatvec_i8_quantized, qmatvec_i8_spec, qmatvec_into, qmatvec_pre, qmatvec_spec,
    qmatvec_stacked, qmatvec_stacked_pre, qmatvec_with, quantize_q8, PreNormArgs,
};
pub use rope::{rope, rope_table_tensor, rope_with, rope_with_table, RopeOptions};
pub use rowwise::{
    add_norm, l2_normalize, layer_norm, rms_norm, rms_norm_add, rowwise_with, softmax,
};
pub use sample::{SampleResult, Sampler};

use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

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
