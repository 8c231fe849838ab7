//! What the loader produces: tensor types (with their block layouts), tensor infos, metadata,
//! the parsed header, the events, and the sink trait that receives tensor bytes.

use super::LoaderError;

/// Tensor element types of GGUF (ggml ids) and safetensors. Quantized types are stored in
/// blocks of `block_elems()` elements taking `block_bytes()` bytes each.
/// Block layouts follow ggml's `ggml-common.h` (block_q4_0 ... block_q6_K, block_iq4_nl,
/// block_iq4_xs, block_tq1_0, block_tq2_0, block_mxfp4, block_iq2_xxs ... block_iq1_m).
// The quant engineer keeps the same table in jit/src/quant/; the lead will unify them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TensorType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    IQ4NL,
    IQ4XS,
    TQ1_0,
    TQ2_0,
    MXFP4,
    IQ2XXS,
    IQ2XS,
    IQ2S,
    IQ3XXS,
    IQ3S,
    IQ1S,
    IQ1M,
    /// A safetensors dtype the engine does not use (I64, U8, F64, ...): its name and element
    /// size, so the loader can stream past it when told to skip such tensors.
    Other(&'static str, u8),
}

impl TensorType {
    pub fn from_ggml(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            10 => Self::Q2K,
            11 => Self::Q3K,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            16 => Self::IQ2XXS,
            17 => Self::IQ2XS,
            18 => Self::IQ3XXS,
            19 => Self::IQ1S,
            20 => Self::IQ4NL,
            21 => Self::IQ3S,
            22 => Self::IQ2S,
            23 => Self::IQ4XS,
            29 => Self::IQ1M,
            30 => Self::BF16,
            34 => Self::TQ1_0,
            35 => Self::TQ2_0,
            39 => Self::MXFP4,
            _ => return None,
        })
    }

    /// Safetensors dtype names; `None` for names the format does not define.
    pub fn from_safetensors(name: &str) -> Option<Self> {
        Some(match name {
            "F32" => Self::F32,
            "F16" => Self::F16,
            "BF16" => Self::BF16,
            "BOOL" => Self::Other("BOOL", 1),
            "U8" => Self::Other("U8", 1),
            "I8" => Self::Other("I8", 1),
            "F8_E5M2" => Self::Other("F8_E5M2", 1),
            "F8_E4M3" => Self::Other("F8_E4M3", 1),
            "I16" => Self::Other("I16", 2),
            "U16" => Self::Other("U16", 2),
            "I32" => Self::Other("I32", 4),
            "U32" => Self::Other("U32", 4),
            "F64" => Self::Other("F64", 8),
            "I64" => Self::Other("I64", 8),
            "U64" => Self::Other("U64", 8),
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::BF16 => "bf16",
            Self::Q4_0 => "q4_0",
            Self::Q4_1 => "q4_1",
            Self::Q5_0 => "q5_0",
            Self::Q5_1 => "q5_1",
            Self::Q8_0 => "q8_0",
            Self::Q2K => "q2_k",
            Self::Q3K => "q3_k",
            Self::Q4K => "q4_k",
            Self::Q5K => "q5_k",
            Self::Q6K => "q6_k",
            Self::IQ4NL => "iq4_nl",
            Self::IQ4XS => "iq4_xs",
            Self::TQ1_0 => "tq1_0",
            Self::TQ2_0 => "tq2_0",
            Self::MXFP4 => "mxfp4",
            Self::IQ2XXS => "iq2_xxs",
            Self::IQ2XS => "iq2_xs",
            Self::IQ2S => "iq2_s",
            Self::IQ3XXS => "iq3_xxs",
            Self::IQ3S => "iq3_s",
            Self::IQ1S => "iq1_s",
            Self::IQ1M => "iq1_m",
            Self::Other(n, _) => n,
        }
    }

    /// Elements per block (1 for plain element types).
    pub fn block_elems(self) -> u64 {
        match self {
            Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 | Self::Q8_0 => 32,
            Self::IQ4NL | Self::MXFP4 => 32,
            Self::Q2K | Self::Q3K | Self::Q4K | Self::Q5K | Self::Q6K => 256,
            Self::IQ4XS | Self::TQ1_0 | Self::TQ2_0 => 256,
            Self::IQ2XXS | Self::IQ2XS | Self::IQ2S | Self::IQ3XXS | Self::IQ3S => 256,
            Self::IQ1S | Self::IQ1M => 256,
            _ => 1,
        }
    }

    /// Bytes per block (per element for plain types).
    pub fn block_bytes(self) -> u64 {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q5_1 => 24,
            Self::Q8_0 => 34,
            Self::Q2K => 84,
            Self::Q3K => 110,
            Self::Q4K => 144,
            Self::Q5K => 176,
            Self::Q6K => 210,
            Self::IQ4NL => 18,
            Self::IQ4XS => 136,
            Self::TQ1_0 => 54,
            Self::TQ2_0 => 66,
            Self::MXFP4 => 17,
            Self::IQ2XXS => 66,
            Self::IQ2XS => 74,
            Self::IQ2S => 82,
            Self::IQ3XXS => 98,
            Self::IQ3S => 110,
            Self::IQ1S => 50,
            Self::IQ1M => 56,
            Self::Other(_, b) => b as u64,
        }
    }

    pub fn is_quantized(self) -> bool {
        self.block_elems() > 1
    }
}

/// One tensor of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: TensorType,
    /// Row-major, outermost first (GGUF stores `ne` innermost first; it is reversed here), so
    /// `shape.last()` is the row length for both formats.
    pub shape: Vec<u64>,
    /// Absolute byte offset of the tensor's data in the file.
    pub offset: u64,
    /// Bytes of data.
    pub size: u64,
    /// Block index `N` from `blk.N.`, `layer.N.` or `layers.N.` in the name.
    pub layer: Option<usize>,
    /// Position in the file's tensor list.
    pub index: usize,
    /// Skipped (not delivered to the sink): a dtype the engine does not use, when skipping.
    pub skipped: bool,
}

impl TensorInfo {
    pub fn numel(&self) -> u64 {
        self.shape.iter().product()
    }
}

/// A GGUF metadata value. Integers are widened; `MetaEntry::ty` keeps the stored type.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    Uint(u64),
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array(MetaArray),
}

/// GGUF metadata value type ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    Str = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    pub fn from_id(id: u32) -> Option<Self> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => Str,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }
    /// Size of a fixed-size value; `None` for strings and arrays.
    pub fn fixed_size(self) -> Option<usize> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            Str | Array => None,
        }
    }
    /// The fewest bytes one value of this type can take (for bounding counts by file size).
    pub fn min_size(self) -> u64 {
        match self {
            ValueType::Str => 8,
            ValueType::Array => 12,
            t => t.fixed_size().unwrap_or(1) as u64,
        }
    }
}

/// A GGUF metadata array, stored compactly: tokenizer vocabularies have 262144 entries.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaArray {
    /// Fixed-size elements as their little-endian bytes.
    Fixed {
        ty: ValueType,
        raw: Vec<u8>,
    },
    /// Strings as one byte blob and end offsets (GGUF strings are not always valid UTF-8 in
    /// the wild, e.g. byte tokens, so array strings stay bytes).
    Str {
        bytes: Vec<u8>,
        ends: Vec<usize>,
    },
    Array(Vec<MetaArray>),
}

impl MetaArray {
    pub fn len(&self) -> usize {
        match self {
            MetaArray::Fixed { ty, raw } => raw.len() / ty.fixed_size().unwrap_or(1),
            MetaArray::Str { ends, .. } => ends.len(),
            MetaArray::Array(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// String element `i` (bytes).
    pub fn str_at(&self, i: usize) -> Option<&[u8]> {
        match self {
            MetaArray::Str { bytes, ends } => {
                let end = *ends.get(i)?;
                let start = if i == 0 { 0 } else { ends[i - 1] };
                bytes.get(start..end)
            }
            _ => None,
        }
    }
    /// The elements of a bool array.
    pub fn bools(&self) -> Option<Vec<bool>> {
        match self {
            MetaArray::Fixed {
                ty: ValueType::Bool,
                raw,
            } => Some(raw.iter().map(|&b| b != 0).collect()),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct MetaEntry {
    pub key: String,
    pub ty: ValueType,
    pub value: MetaValue,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Gguf,
    Safetensors,
}

impl Format {
    /// How many first bytes `detect` wants (fewer only when the file is that short).
    pub const DETECT_BYTES: usize = 16;

    /// The format of a file from its first bytes (`DETECT_BYTES`, or the whole file when
    /// shorter): GGUF by its magic, safetensors by its header length and the `{` that opens its
    /// JSON. Anything else is refused here, with what it looks like, rather than handed to a
    /// parser whose complaint would be about a field of a format the file never was: the usual
    /// case is an HTML page (a 404 page, or a dev server's SPA fallback) where a model was
    /// expected. A file too short to tell is left to the parsers, which call it truncated.
    pub fn detect(first: &[u8]) -> Result<Format, super::LoaderError> {
        if first.starts_with(b"GGUF") || (first.len() < 4 && b"GGUF".starts_with(first)) {
            return Ok(Format::Gguf);
        }
        let text = first
            .strip_prefix(&[0xef, 0xbb, 0xbf][..])
            .unwrap_or(first)
            .trim_ascii_start();
        if text.starts_with(b"<") {
            return Err(super::LoaderError::UnknownFormat {
                first: first.to_vec(),
                looks_like: "an HTML or XML page: a 404 page, or a server that answers a \
                             missing file with its index.html? Check the URL",
            });
        }
        if first.len() < 9 {
            return Ok(Format::Safetensors);
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&first[..8]);
        let len = u64::from_le_bytes(len);
        if (2..=100 << 20).contains(&len) && first[8] == b'{' {
            return Ok(Format::Safetensors);
        }
        let printable = first
            .iter()
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace());
        Err(super::LoaderError::UnknownFormat {
            first: first.to_vec(),
            looks_like: if printable {
                "text"
            } else {
                "binary data of another format"
            },
        })
    }

    /// Guess from the first bytes: GGUF has a magic, safetensors does not.
    pub fn sniff(first: &[u8]) -> Format {
        if first.starts_with(b"GGUF") {
            Format::Gguf
        } else {
            Format::Safetensors
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Format::Gguf => "gguf",
            Format::Safetensors => "safetensors",
        }
    }
}

/// The parsed header: everything known before the first tensor byte.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelHeader {
    pub format: Format,
    /// GGUF version (0 for safetensors).
    pub version: u32,
    /// `general.architecture` (GGUF); for safetensors a guess from tensor names ("bert" for
    /// `encoder.layer.N.`), else `None`.
    pub architecture: Option<String>,
    /// In file order; `TensorInfo::index` is the position here.
    pub tensors: Vec<TensorInfo>,
    pub metadata: Vec<MetaEntry>,
    /// Absolute offset of the data section.
    pub data_start: u64,
    /// Bytes the file must have: the end of the last tensor.
    pub total_bytes: u64,
    /// Distinct block indices found in tensor names.
    pub n_layers: usize,
    pub alignment: u64,
}

impl ModelHeader {
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.value)
    }
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Loader events, in order: `Header`, then `Progress`/`TensorReady`/`LayerReady` as data
/// arrives, then `Done`.
#[derive(Debug)]
pub enum LoadEvent<'a> {
    Header(&'a ModelHeader),
    /// After each push: bytes consumed so far, of `total` when known.
    Progress {
        bytes: u64,
        total: Option<u64>,
        tensors_ready: usize,
        n_tensors: usize,
    },
    TensorReady(&'a TensorInfo),
    /// Every tensor of block `layer` has been delivered (`tensor_ready` returned).
    LayerReady {
        layer: usize,
    },
    Done {
        bytes: u64,
        tensors: usize,
    },
}

/// Receives tensor bytes as they arrive. For each delivered tensor: `tensor_data` with
/// consecutive pieces (`offset` counts bytes from the tensor's start; pieces are cut at
/// block/element boundaries), then `tensor_ready`. The loader keeps none of a piece after
/// the call returns, so a sink that needs whole tensors assembles them itself.
pub trait TensorSink {
    fn event(&mut self, _event: &LoadEvent<'_>) -> Result<(), LoaderError> {
        Ok(())
    }
    fn tensor_data(
        &mut self,
        info: &TensorInfo,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), LoaderError>;
    fn tensor_ready(&mut self, info: &TensorInfo) -> Result<(), LoaderError>;
}

/// `blk.N.` (GGUF), `encoder.layer.N.` / `layers.N.` (safetensors, with any prefix).
pub fn layer_of(name: &str) -> Option<usize> {
    let parts: Vec<&str> = name.split('.').collect();
    parts.windows(3).find_map(|w| {
        if matches!(w[0], "blk" | "layer" | "layers") && !w[1].is_empty() && w[1].len() <= 6 {
            w[1].parse().ok()
        } else {
            None
        }
    })
}
