//! The quantized matvec's problem and config types, its uniforms and its dispatch sizes.

use crate::error::JitError;
use crate::kernels::MAX_GROUPS_PER_DIM;
use crate::quant::GgmlType;
use crate::spec::{dispatch_2d, div_ceil};

crate::uniform_struct!(
    /// Uniforms of the matvec sections of `qmatvec.wgsl` and `qmatvec_i8.wgsl`. `rows` are
    /// this segment's rows, written to columns `n_offset..n_offset + rows` of Y (which has `n`
    /// columns); `part1`/`part2` are the row bounds of the stacked form's second and third
    /// weight.
    /// `eps_bits` (an f32's bits) and `write_res` are the norm prologue's (`Prologue`).
    QMatvecParams {
        n: u32, k: u32, row_words: u32, rows: u32, n_offset: u32, part1: u32, part2: u32,
        eps_bits: u32, write_res: u32, pad0: u32, pad1: u32, pad2: u32,
    }
);

impl QMatvecParams {
    /// The norm prologue's uniforms: its epsilon, and whether workgroup 0 writes H.
    pub fn with_prologue(mut self, eps: f32, write_res: bool) -> Self {
        self.eps_bits = eps.to_bits();
        self.write_res = write_res as u32;
        self
    }
}

/// Most activation rows a matvec takes; longer inputs use the tiled quantized matmul.
pub const QMATVEC_MAX_M: u32 = 8;

/// What the kernel computes, picked by the op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Form {
    /// Y = X W^T.
    Plain,
    /// Y = act(X W^T) * (X W2^T) for a second weight W2 of W's shape, format and segments.
    Gated(Gate),
    /// W, W2 (and W3) of one format and K stacked by rows: Y = X [W; W2; W3]^T. Holds the
    /// number of weights, 2 or 3; `n` and `rows` count the rows of all of them.
    Stacked(u32),
}

/// The activation of a gated matvec: `y = act(x W^T) * (x W2^T)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Gate {
    /// Gemma's GeGLU (tanh GELU).
    GeluTanh,
    /// llama's SwiGLU.
    Silu,
}

impl Gate {
    pub fn name(self) -> &'static str {
        match self {
            Gate::GeluTanh => "gelu_tanh",
            Gate::Silu => "silu",
        }
    }
}

/// What X is. `None`: read from memory. The others (decode, M = 1) fold the row op that would
/// make X into the matvec: from the previous product F [K] and the residual stream R [K],
/// every workgroup computes H = R + F (`AddNorm`, llama's residual) or
/// H = R + rmsnorm(F) * w_post (`NormAddNorm`, Gemma's post-norm), then X = rmsnorm(H) * w_pre
/// into workgroup memory, and workgroup 0 writes H (the new residual stream) when the
/// uniforms ask. It saves the add_norm dispatch before the FFN or the next q/k/v projection;
/// X must fit in workgroup memory. The decoder leaves it off by default: on an H100 the
/// redone norms cost more than the dispatches saved (`ProductPlan::norm_prologue`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Prologue {
    #[default]
    None,
    AddNorm,
    NormAddNorm,
}

impl Prologue {
    pub fn name(self) -> &'static str {
        match self {
            Prologue::None => "",
            Prologue::AddNorm => ".addnorm",
            Prologue::NormAddNorm => ".normaddnorm",
        }
    }
}

/// How the products are taken, picked by the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Path {
    /// Weights dequantized to vec4<f32>, products and sums in f32.
    F32,
    /// Products in f16, sums in f32; only where the device has `shader-f16`.
    F16,
    /// Weights decoded a block of 32 at a time into integer codes with a scale per half block
    /// and an offset (the int8 path's decoders), against X in f32: exact like `F32` (sums in
    /// another order) with far fewer instructions per weight. The formats of
    /// `Path::int8_supports`.
    Blocks,
    /// `Blocks` with the loops turned: the workgroup's R rows' blocks decoded first, then each
    /// block of X read once for all of them (fewer loads, more registers).
    BlocksX,
    /// K-quant super-blocks spread over 8 lanes each, neighbouring lanes on neighbouring words
    /// of W and X, the lane's X loaded once for the workgroup's rows and codes made f32
    /// without conversions: exact like `F32`. Q4_K and Q6_K (`Path::lanes_supports`), one
    /// activation row, K in super-blocks of 256.
    Lanes,
    /// X quantized to 8 bits per block of 32 by a separate pass, weights unpacked to signed
    /// bytes, four products per `dot4I8Packed`. Plain matvecs of the formats `Path::int8_formats`
    /// lists; approximate (the activations are rounded), so only the tuner picks it.
    Int8,
}

impl Path {
    /// Whether `format` has an int8 path.
    pub fn int8_supports(format: GgmlType) -> bool {
        matches!(
            format,
            GgmlType::Q4_0
                | GgmlType::Q5_0
                | GgmlType::Q8_0
                | GgmlType::Q4K
                | GgmlType::Q6K
                | GgmlType::IQ4NL
                | GgmlType::IQ4XS
                | GgmlType::TQ1_0
                | GgmlType::TQ2_0
                | GgmlType::MXFP4
                | GgmlType::IQ2XXS
                | GgmlType::IQ2XS
                | GgmlType::IQ2S
                | GgmlType::IQ3XXS
                | GgmlType::IQ3S
                | GgmlType::IQ1S
                | GgmlType::IQ1M
        )
    }
}

/// How a workgroup's partial sums are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reduce {
    /// Tree reduction in workgroup memory: works everywhere (browsers included).
    Workgroup,
    /// `subgroupAdd`, then one workgroup-memory pass over the subgroup sums. Only where the
    /// device has subgroups.
    Subgroup,
    /// No reduction: each invocation owns R whole rows and walks all of K. Uncoalesced on a
    /// GPU, but on CPU-backed adapters (lavapipe, SwiftShader) each SIMD lane streams its own
    /// row and the per-workgroup overhead is paid once per WG * R rows. Float paths only.
    None,
}

/// Y[M, N] = X[M, K] W[N, K]^T for one weight segment of `rows` rows, in the form `form`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QMatvecSpec {
    pub format: GgmlType,
    /// Activation rows, 1..=8.
    pub m: u32,
    pub n: u64,
    pub k: u64,
    /// Rows of W in the segment one dispatch covers (N when unsegmented).
    pub rows: u64,
    pub form: Form,
    pub prologue: Prologue,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QMatvecConfig {
    pub path: Path,
    pub wg: u32,
    /// Rows of W per workgroup (per invocation with `Reduce::None`).
    pub r: u32,
    pub reduce: Reduce,
}

impl QMatvecSpec {
    /// A plain problem: X [m, k] times W [n, k] whose first segment has `rows` rows.
    pub fn plain(format: GgmlType, m: u32, n: u64, k: u64, rows: u64) -> Self {
        Self {
            format,
            m,
            n,
            k,
            rows,
            form: Form::Plain,
            prologue: Prologue::None,
        }
    }

    pub fn params(&self, n_offset: u64, rows: u64) -> QMatvecParams {
        QMatvecParams {
            n: self.n as u32,
            k: self.k as u32,
            row_words: self.format.row_words(self.k as usize).unwrap_or(0) as u32,
            rows: rows as u32,
            n_offset: n_offset as u32,
            part1: 0,
            part2: 0,
            eps_bits: 0,
            write_res: 0,
            pad0: 0,
            pad1: 0,
            pad2: 0,
        }
    }

    /// Uniforms of the stacked form: `parts` are the row counts of W, W2 (and W3).
    pub fn params_stacked(&self, parts: &[u64]) -> QMatvecParams {
        let total: u64 = parts.iter().sum();
        let first = parts.first().copied().unwrap_or(0);
        let mut p = self.params(0, total);
        p.part1 = first as u32;
        p.part2 = (first + parts.get(1).copied().unwrap_or(0)) as u32;
        p
    }

    /// Workgroups for a segment of `rows` rows.
    pub fn dispatch_rows(&self, cfg: &QMatvecConfig, rows: u64) -> [u32; 3] {
        let per_group = match (cfg.path, cfg.reduce) {
            (Path::Int8, _) => cfg.r,
            (_, Reduce::None) => cfg.r * cfg.wg,
            _ => cfg.r,
        };
        dispatch_2d(div_ceil(rows, per_group as u64), MAX_GROUPS_PER_DIM)
    }

    /// Accumulators per output: 2 for the gated form (W and W2).
    pub(super) fn accumulators(&self) -> u32 {
        match self.form {
            Form::Gated(_) => 2,
            _ => 1,
        }
    }

    /// Weights the kernel binds (W, W2, W3).
    pub(super) fn weights(&self) -> u32 {
        match self.form {
            Form::Plain => 1,
            Form::Gated(_) => 2,
            Form::Stacked(n) => n,
        }
    }

    /// The key infix of the gated and stacked forms.
    pub(super) fn form_infix(&self) -> String {
        match self.form {
            Form::Plain => String::new(),
            Form::Gated(g) => format!(".gated_{}", g.name()),
            Form::Stacked(s) => format!(".stacked{s}"),
        }
    }

    /// The key infix of the form and the prologue.
    pub(super) fn infix(&self) -> String {
        format!("{}{}", self.form_infix(), self.prologue.name())
    }
}

/// Checks shared by the quantized kernels: K is whole GPU blocks and a multiple of 4.
pub fn check_k(family: &str, format: GgmlType, k: u64) -> Result<(), JitError> {
    let b = format.gpu_block_elems() as u64;
    if k == 0 || !k.is_multiple_of(b) || !k.is_multiple_of(4) {
        return Err(JitError::UnsupportedProblem {
            family: family.into(),
            reason: format!(
                "K = {k} must be a positive multiple of the {} block size {} (and of 4)",
                format.name(),
                b.max(4)
            ),
        });
    }
    if k > u32::MAX as u64 {
        return Err(JitError::UnsupportedProblem {
            family: family.into(),
            reason: format!("K = {k} exceeds 2^32"),
        });
    }
    Ok(())
}
