//! The engine's one error type. Fields are structured so the CLI and the JS facade can report
//! them precisely (and map them to stable codes).

use thiserror::Error;
use webjit_jit::JitError;

#[derive(Debug, Error)]
pub enum Error {
    #[error("no GPU adapter found ({detail}); on a machine without a GPU install a software Vulkan driver (apt-get install mesa-vulkan-drivers)")]
    NoAdapter { detail: String },
    #[error("the GPU device could not be created: {detail}")]
    DeviceRequest { detail: String },
    #[error("the GPU device was lost ({reason}); create a new engine")]
    DeviceLost { reason: String },
    #[error("out of GPU memory allocating {bytes} bytes for {what}")]
    OutOfMemory { what: String, bytes: u64 },
    #[error("{what} needs a {bytes}-byte buffer, above the device's maximum of {max}")]
    TooLarge { what: String, bytes: u64, max: u64 },
    #[error("op `{op}`: shape error: {detail}")]
    Shape { op: &'static str, detail: String },
    #[error("op `{op}`: expected dtype {expected}, got {got}")]
    DType {
        op: &'static str,
        expected: &'static str,
        got: &'static str,
    },
    #[error("op `{op}`: {detail}")]
    InvalidArgument { op: &'static str, detail: String },
    #[error(transparent)]
    Jit(#[from] JitError),
    #[error(transparent)]
    Quant(#[from] webjit_jit::quant::QuantError),
    #[error("kernel `{key}`: the device rejected the shader: {message}")]
    ShaderCompile { key: String, message: String },
    #[error("GPU error during {during}: {message}")]
    Gpu { during: String, message: String },
    #[error("bad model file: {detail}")]
    BadModel { detail: String },
    #[error("unsupported: {what}")]
    Unsupported { what: String },
    /// A GGUF whose `general.architecture` no decoder plan exists for.
    #[error("unsupported model architecture `{arch}`: webjit decodes {supported}")]
    UnsupportedArchitecture { arch: String, supported: String },
    #[error("reading back results failed: {detail}")]
    Readback { detail: String },
    #[error(transparent)]
    Load(#[from] crate::loader::LoaderError),
    /// A tokenizer built from model metadata: `key` names the metadata key (with the element
    /// index for arrays, e.g. `tokenizer.ggml.tokens[17]`).
    #[error("tokenizer metadata `{key}`: {detail}")]
    Tokenizer { key: String, detail: String },
    /// A chat prompt could not be written: no template, one that does not parse, or one that
    /// refused the messages (`raise_exception`).
    #[error(transparent)]
    ChatTemplate(#[from] crate::chat::TemplateError),
}

impl Error {
    /// Stable machine-readable code (used by the CLI's JSON output and the JS facade).
    pub fn code(&self) -> &'static str {
        match self {
            Error::NoAdapter { .. } => "NO_ADAPTER",
            Error::DeviceRequest { .. } => "DEVICE_REQUEST_FAILED",
            Error::DeviceLost { .. } => "DEVICE_LOST",
            Error::OutOfMemory { .. } => "OUT_OF_MEMORY",
            Error::TooLarge { .. } => "TOO_LARGE",
            Error::Shape { .. } => "SHAPE",
            Error::DType { .. } => "DTYPE",
            Error::InvalidArgument { .. } => "INVALID_ARGUMENT",
            Error::Jit(_) => "KERNEL",
            Error::Quant(_) => "QUANT",
            Error::ShaderCompile { .. } => "SHADER_COMPILE",
            Error::Gpu { .. } => "GPU",
            Error::Readback { .. } => "READBACK",
            Error::Unsupported { .. } => "UNSUPPORTED_MODEL",
            Error::UnsupportedArchitecture { .. } => "UNSUPPORTED_ARCHITECTURE",
            Error::BadModel { .. } => "BAD_MODEL_FILE",
            // The device failing under a load is the device's error, not the file's.
            Error::Load(crate::loader::LoaderError::Sink { code, .. })
                if matches!(*code, "DEVICE_LOST" | "OUT_OF_MEMORY") =>
            {
                code
            }
            Error::Load(e) => e.code(),
            Error::Tokenizer { .. } => "BAD_TOKENIZER",
            Error::ChatTemplate(_) => "CHAT_TEMPLATE",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
