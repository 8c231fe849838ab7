//! Typed loader errors. Every variant that comes from the file names the field and the byte
//! offset (from the start of the file) where it was read, so a bad download can be diagnosed.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LoaderError {
    #[error("file ends at byte {got} while reading {field} at offset {offset} (needs {needed} more bytes)")]
    Truncated {
        field: String,
        offset: u64,
        needed: u64,
        got: u64,
    },
    #[error("not a {format} file: magic at offset 0 is {found:02x?}")]
    BadMagic {
        format: &'static str,
        found: Vec<u8>,
    },
    #[error("unsupported GGUF version {version} at offset 4 (supported: 2, 3)")]
    UnsupportedVersion { version: u32 },
    #[error("{field} at offset {offset} is {value}, above the limit of {max}")]
    TooLarge {
        field: String,
        offset: u64,
        value: u64,
        max: u64,
    },
    #[error("{field} at offset {offset}: unknown metadata value type {value_type}")]
    UnknownValueType {
        field: String,
        offset: u64,
        value_type: u32,
    },
    #[error("tensor `{tensor}` (info at offset {offset}): unknown ggml tensor type {ggml_type}")]
    UnknownTensorType {
        tensor: String,
        offset: u64,
        ggml_type: u32,
    },
    #[error("tensor `{tensor}`: dtype {dtype} is not supported (f32, f16 and bf16 are)")]
    UnsupportedDType { tensor: String, dtype: String },
    #[error("{field} at offset {offset}: {detail}")]
    InvalidValue {
        field: String,
        offset: u64,
        detail: String,
    },
    #[error("{field} at offset {offset} is not valid UTF-8")]
    BadUtf8 { field: String, offset: u64 },
    #[error("tensor `{tensor}` (info at offset {offset}): the product of dims {dims:?} overflows")]
    DimOverflow {
        tensor: String,
        offset: u64,
        dims: Vec<u64>,
    },
    #[error("tensor `{tensor}` (info at offset {offset}): data offset {data_offset} is not a multiple of the alignment {alignment}")]
    Misaligned {
        tensor: String,
        offset: u64,
        data_offset: u64,
        alignment: u64,
    },
    #[error("tensor `{tensor}`: bytes [{start}, {end}) lie outside the file of {file_len} bytes")]
    OutOfBounds {
        tensor: String,
        start: u64,
        end: u64,
        file_len: u64,
    },
    #[error("tensors `{first}` and `{second}` overlap at file offset {offset}")]
    Overlap {
        first: String,
        second: String,
        offset: u64,
    },
    #[error("duplicate {what} `{name}` at offset {offset}")]
    Duplicate {
        what: &'static str,
        name: String,
        offset: u64,
    },
    #[error("safetensors header (offset {offset}): {detail}")]
    BadJson { offset: u64, detail: String },
    #[error("size mismatch for {what}: expected {expected} bytes, got {got}")]
    SizeMismatch {
        what: String,
        expected: u64,
        got: u64,
    },
    #[error("sha256 mismatch: expected {expected}, got {got}")]
    Checksum { expected: String, got: String },
    #[error("tensor `{tensor}`: the sink failed [{code}]: {detail}")]
    Sink {
        tensor: String,
        code: &'static str,
        detail: String,
    },
    #[error("reading the weight source at offset {offset}: {detail}")]
    Io { offset: u64, detail: String },
    #[error("loader used after {state}")]
    State { state: &'static str },
    #[error(
        "not a GGUF or safetensors file: it starts with {}, which looks like {looks_like}",
        show_start(first)
    )]
    UnknownFormat {
        first: Vec<u8>,
        looks_like: &'static str,
    },
}

/// The first bytes as text when they are printable, else as hex.
fn show_start(b: &[u8]) -> String {
    if b.iter()
        .all(|c| c.is_ascii_graphic() || c.is_ascii_whitespace())
    {
        format!("{:?}", String::from_utf8_lossy(b))
    } else {
        b.iter()
            .map(|c| format!("{c:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl LoaderError {
    /// Stable machine-readable code (CLI JSON, JS facade).
    pub fn code(&self) -> &'static str {
        match self {
            LoaderError::Truncated { .. } => "LOAD_TRUNCATED",
            LoaderError::BadMagic { .. } => "LOAD_BAD_MAGIC",
            LoaderError::UnsupportedVersion { .. } => "LOAD_UNSUPPORTED_VERSION",
            LoaderError::TooLarge { .. } => "LOAD_TOO_LARGE",
            LoaderError::UnknownValueType { .. } => "LOAD_UNKNOWN_VALUE_TYPE",
            LoaderError::UnknownTensorType { .. } => "LOAD_UNKNOWN_TENSOR_TYPE",
            LoaderError::UnsupportedDType { .. } => "LOAD_UNSUPPORTED_DTYPE",
            LoaderError::InvalidValue { .. } => "LOAD_INVALID_VALUE",
            LoaderError::BadUtf8 { .. } => "LOAD_BAD_UTF8",
            LoaderError::DimOverflow { .. } => "LOAD_DIM_OVERFLOW",
            LoaderError::Misaligned { .. } => "LOAD_MISALIGNED",
            LoaderError::OutOfBounds { .. } => "LOAD_OUT_OF_BOUNDS",
            LoaderError::Overlap { .. } => "LOAD_OVERLAP",
            LoaderError::Duplicate { .. } => "LOAD_DUPLICATE",
            LoaderError::BadJson { .. } => "LOAD_BAD_JSON",
            LoaderError::SizeMismatch { .. } => "LOAD_SIZE_MISMATCH",
            LoaderError::Checksum { .. } => "LOAD_CHECKSUM",
            LoaderError::Sink { .. } => "LOAD_SINK",
            LoaderError::Io { .. } => "LOAD_IO",
            LoaderError::State { .. } => "LOAD_STATE",
            LoaderError::UnknownFormat { .. } => "LOAD_UNKNOWN_FORMAT",
        }
    }
}
