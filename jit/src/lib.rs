//! webjit-jit: typed kernel specs rendered to WGSL and validated with naga. Pure Rust, no GPU.

pub mod compile;
pub mod error;
pub mod kernels;
pub mod profile;
pub mod quant;
pub mod render;
pub mod spec;
pub mod tune;
pub mod validate;

pub use compile::{compile, CompiledKernel};
pub use error::JitError;
pub use profile::{DeviceProfile, ProfileLimits, Subgroups};
pub use spec::{Access, BindingDecl, KernelSpec, UniformStruct};

/// WGSL templates, embedded at build time.
pub mod shaders {
    pub const ELEMENTWISE: &str = include_str!("../../shaders/elementwise.wgsl");
    pub const ROWWISE: &str = include_str!("../../shaders/rowwise.wgsl");
    pub const REDUCE: &str = include_str!("../../shaders/reduce.wgsl");
    pub const ROPE: &str = include_str!("../../shaders/rope.wgsl");
    pub const HADAMARD: &str = include_str!("../../shaders/hadamard.wgsl");
    pub const QK_ROPE: &str = include_str!("../../shaders/qk_rope.wgsl");
    pub const EMBEDDING: &str = include_str!("../../shaders/embedding.wgsl");
    pub const MATMUL: &str = include_str!("../../shaders/matmul.wgsl");
    pub const MATMUL_UNROLLED: &str = include_str!("../../shaders/matmul_unrolled.wgsl");
    pub const MATMUL_EPILOGUE: &str = include_str!("../../shaders/matmul_epilogue.wgsl");
    pub const PROBE: &str = include_str!("../../shaders/probe.wgsl");
    pub const QUANT: &str = include_str!("../../shaders/quant.wgsl");
    pub const QMATVEC: &str = include_str!("../../shaders/qmatvec.wgsl");
    pub const QMATVEC_I8: &str = include_str!("../../shaders/qmatvec_i8.wgsl");
    pub const QMATVEC_LANES: &str = include_str!("../../shaders/qmatvec_lanes.wgsl");
    pub const QMATMUL: &str = include_str!("../../shaders/qmatmul.wgsl");
    pub const BANDWIDTH: &str = include_str!("../../shaders/bandwidth.wgsl");
    pub const POOL: &str = include_str!("../../shaders/pool.wgsl");
    pub const ATTENTION: &str = include_str!("../../shaders/attention.wgsl");
    pub const ATTENTION_TILE: &str = include_str!("../../shaders/attention_tile.wgsl");
    pub const ATTENTION_DECODE: &str = include_str!("../../shaders/attention_decode.wgsl");
    pub const KV_QUANT: &str = include_str!("../../shaders/kv_quant.wgsl");
    pub const KIVI: &str = include_str!("../../shaders/kivi.wgsl");
    pub const KIVI_DECODE: &str = include_str!("../../shaders/kivi_decode.wgsl");
    pub const SAMPLE: &str = include_str!("../../shaders/sample.wgsl");
    pub const NEIGHBORHOOD: &str = include_str!("../../shaders/neighborhood.wgsl");
    pub const BLOCK_SPARSE: &str = include_str!("../../shaders/block_sparse.wgsl");
    pub const BLOCK_SPARSE_ATTEND: &str = include_str!("../../shaders/block_sparse_attend.wgsl");
    pub const BLOCK_SPARSE_GATHER: &str = include_str!("../../shaders/block_sparse_gather.wgsl");
    pub const BLOCK_SPARSE_TILE: &str = include_str!("../../shaders/block_sparse_tile.wgsl");
    /// Every template (tests check each one's sections).
    pub const ALL: &[&str] = &[
        ELEMENTWISE,
        ROWWISE,
        REDUCE,
        ROPE,
        HADAMARD,
        QK_ROPE,
        EMBEDDING,
        MATMUL,
        MATMUL_UNROLLED,
        MATMUL_EPILOGUE,
        PROBE,
        POOL,
        ATTENTION,
        ATTENTION_TILE,
        ATTENTION_DECODE,
        KV_QUANT,
        KIVI,
        KIVI_DECODE,
        QUANT,
        QMATVEC,
        QMATVEC_I8,
        QMATVEC_LANES,
        QMATMUL,
        BANDWIDTH,
        SAMPLE,
        NEIGHBORHOOD,
        BLOCK_SPARSE,
        BLOCK_SPARSE_ATTEND,
        BLOCK_SPARSE_GATHER,
        BLOCK_SPARSE_TILE,
    ];
}
