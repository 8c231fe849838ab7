//! The quantized matrix-vector product of decode, one family with its variants.
//!
//! Weights W are [N, K] in GGUF layout, repacked into u32 words (`crate::quant`); activations
//! X are [M, K] f32 with M <= 8; Y = X W^T is [M, N] f32. A weight larger than one storage
//! binding is split into row segments; each segment is one dispatch that writes its columns of
//! Y at `n_offset`.
//!
//! - What is computed is the problem's [`Form`], picked by the op: one weight, two weights
//!   gated (an FFN's gate and up with its activation), or two or three weights stacked by rows
//!   (a decoder's q, k and v).
//! - How the products are taken is the config's [`Path`], picked by the default or the tuner:
//!   dequantized to f32 (or f16) vectors, decoded a block of 32 at a time with the scales
//!   applied per half block (`Path::Blocks`, f32 like the float path), K-quant super-blocks
//!   spread over 8 lanes each with coalesced reads of W and X (`Path::Lanes`, f32, Q4_K and
//!   Q6_K), or the int8 dot-product path, which needs X quantized to 8 bits first
//!   ([`QuantizeQ8Spec`]).
//!
//! Files: `problem` (spec, config and uniform types, dispatch sizes), `spec` (the `KernelSpec`
//! impl: keys, checks, space, default), `float`, `blocks`, `lanes` and `int8` (the WGSL of each path), `quantize`
//! (the activation quantizer of the int8 path), `dequant` (whole-weight dequantization, which
//! tests check repacking with).

mod blocks;
mod dequant;
mod float;
mod int8;
mod lanes;
mod problem;
mod prologue;
mod quantize;
mod spec;

pub use dequant::{QDequantConfig, QDequantParams, QDequantSpec};
pub use problem::{
    check_k, Form, Gate, Path, Prologue, QMatvecConfig, QMatvecParams, QMatvecSpec, Reduce,
    QMATVEC_MAX_M,
};
pub use quantize::{QuantizeQ8Config, QuantizeQ8Params, QuantizeQ8Spec, Q8_BLOCK};
