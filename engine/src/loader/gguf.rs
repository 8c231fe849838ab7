//! Incremental GGUF header parser (versions 2 and 3).
//! Format: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>. Little-endian only.
//!
//! The parser is a state machine that asks for the exact number of bytes of its next field
//! (`want`) and is given them (`feed`); the `Loader` assembles those bytes from chunks split
//! anywhere. Every length and count is checked against sane caps and against the bytes left in
//! the file (when its length is known) before the parser asks for the bytes it implies, and
//! nothing is ever allocated ahead of the bytes actually received.

use std::collections::HashSet;

use super::types::{
    layer_of, Format, MetaArray, MetaEntry, MetaValue, ModelHeader, TensorInfo, TensorType,
    ValueType,
};
use super::LoaderError;

const MAX_TENSORS: u64 = 1 << 24;
const MAX_KV: u64 = 1 << 24;
const MAX_KEY_LEN: u64 = 1 << 16;
const MAX_STRING_LEN: u64 = 1 << 26;
const MAX_ARRAY_LEN: u64 = 1 << 30;
const MAX_NAME_LEN: u64 = 1 << 12;
const MAX_DIMS: u32 = 4;
const MAX_DEPTH: usize = 8;
const MAX_ALIGNMENT: u64 = 1 << 20;
/// Fixed-size array elements are read this many at a time, so one array never needs one
/// huge read buffer.
const BATCH: u64 = 8192;
const DEFAULT_ALIGNMENT: u64 = 32;
/// Smallest tensor info: name length (8) + n_dims (4) + type (4) + offset (8).
const MIN_TENSOR_INFO: u64 = 24;
/// Smallest key/value: key length (8) + type (4) + a 1-byte value.
const MIN_KV: u64 = 13;

#[derive(Clone, Copy, Debug)]
enum St {
    Magic,
    Version,
    Counts,
    KeyLen,
    Key(usize),
    ValType,
    StrLen,
    Str(usize),
    Scalar(ValueType),
    ArrHead,
    ArrBatch(ValueType, usize),
    NameLen,
    Name(usize),
    NDims,
    Dims(u32),
    TypeOffset,
    Done,
}

struct Frame {
    elem: ValueType,
    count: u64,
    remaining: u64,
    arr: MetaArray,
}

pub(crate) struct GgufParser {
    st: St,
    file_len: Option<u64>,
    version: u32,
    n_tensors: u64,
    n_kv: u64,
    key: String,
    val_ty: ValueType,
    entries: Vec<MetaEntry>,
    stack: Vec<Frame>,
    tensors: Vec<TensorInfo>,
    name: String,
    info_offset: u64,
    dims: Vec<u64>,
    alignment: u64,
    /// Keys and tensor names seen, for duplicate checks that stay linear in hostile files
    /// with millions of entries.
    seen_keys: HashSet<String>,
    seen_names: HashSet<String>,
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[i..i + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(a)
}

impl GgufParser {
    pub(crate) fn new(file_len: Option<u64>) -> Self {
        Self {
            st: St::Magic,
            file_len,
            version: 0,
            n_tensors: 0,
            n_kv: 0,
            key: String::new(),
            val_ty: ValueType::U8,
            entries: Vec::new(),
            stack: Vec::new(),
            tensors: Vec::new(),
            name: String::new(),
            info_offset: 0,
            dims: Vec::new(),
            alignment: DEFAULT_ALIGNMENT,
            seen_keys: HashSet::new(),
            seen_names: HashSet::new(),
        }
    }

    /// Bytes of the next field; 0 once the header is complete.
    pub(crate) fn want(&self) -> usize {
        match self.st {
            St::Magic | St::Version | St::ValType | St::NDims => 4,
            St::Counts => 16,
            St::KeyLen | St::StrLen | St::NameLen => 8,
            St::ArrHead | St::TypeOffset => 12,
            St::Key(n) | St::Str(n) | St::Name(n) => n,
            St::Scalar(t) => t.fixed_size().unwrap_or(0),
            St::ArrBatch(t, n) => n * t.fixed_size().unwrap_or(0),
            St::Dims(n) => n as usize * 8,
            St::Done => 0,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self.st, St::Done)
    }

    /// Human-readable name of the field being read (for errors).
    pub(crate) fn describe(&self) -> String {
        let kv = || {
            let mut s = format!("metadata {} (`{}`)", self.entries.len(), self.key);
            for f in &self.stack {
                s += &format!(" element {}", f.count - f.remaining);
            }
            s
        };
        let tensor = || format!("tensor info {} (`{}`)", self.tensors.len(), self.name);
        match self.st {
            St::Magic => "magic".into(),
            St::Version => "version".into(),
            St::Counts => "tensor and metadata counts".into(),
            St::KeyLen => format!("metadata {} key length", self.entries.len()),
            St::Key(_) => format!("metadata {} key", self.entries.len()),
            St::ValType => format!("{} value type", kv()),
            St::StrLen => format!("{} string length", kv()),
            St::Str(_) => format!("{} string", kv()),
            St::Scalar(t) => format!("{} {t:?} value", kv()),
            St::ArrHead => format!("{} array header", kv()),
            St::ArrBatch(t, _) => format!("{} {t:?} array data", kv()),
            St::NameLen => format!("tensor info {} name length", self.tensors.len()),
            St::Name(_) => format!("tensor info {} name", self.tensors.len()),
            St::NDims => format!("{} n_dims", tensor()),
            St::Dims(_) => format!("{} dims", tensor()),
            St::TypeOffset => format!("{} type and offset", tensor()),
            St::Done => "end of header".into(),
        }
    }

    fn too_large(&self, at: u64, value: u64, max: u64) -> LoaderError {
        LoaderError::TooLarge {
            field: self.describe(),
            offset: at,
            value,
            max,
        }
    }

    /// The cap for a count/length read at `at` whose payload starts at `payload_at` and takes
    /// `unit` bytes per item: the smaller of `cap` and what the rest of the file can hold.
    fn bound(&self, payload_at: u64, unit: u64, cap: u64) -> u64 {
        match self.file_len {
            Some(len) => cap.min(len.saturating_sub(payload_at) / unit.max(1)),
            None => cap,
        }
    }

    /// `value` items of `unit`+ bytes from `payload_at` on, past `bound`: past `cap` the value is
    /// absurd (`TooLarge`); within it the file is too short for them: cut (`Truncated`).
    fn over_limit(
        &self,
        field: String,
        at: u64,
        payload_at: u64,
        (value, unit, cap): (u64, u64, u64),
    ) -> LoaderError {
        match self.file_len {
            Some(len) if value <= cap => LoaderError::Truncated {
                field: format!("{field} ({value} items of at least {unit} bytes each)"),
                offset: at,
                needed: value
                    .saturating_mul(unit.max(1))
                    .saturating_sub(len.saturating_sub(payload_at)),
                got: len,
            },
            _ => LoaderError::TooLarge {
                field,
                offset: at,
                value,
                max: self.bound(payload_at, unit, cap),
            },
        }
    }

    fn checked_len(&self, at: u64, value: u64, unit: u64, cap: u64) -> Result<usize, LoaderError> {
        let max = self.bound(at + 8, unit, cap);
        if value > max {
            return Err(self.over_limit(self.describe(), at, at + 8, (value, unit, cap)));
        }
        usize::try_from(value).map_err(|_| self.too_large(at, value, max))
    }

    /// Consumes exactly `want()` bytes read at absolute offset `at`.
    pub(crate) fn feed(&mut self, b: &[u8], at: u64) -> Result<(), LoaderError> {
        debug_assert_eq!(b.len(), self.want());
        match self.st {
            St::Magic => {
                if b != b"GGUF" {
                    return Err(LoaderError::BadMagic {
                        format: "GGUF",
                        found: b.to_vec(),
                    });
                }
                self.st = St::Version;
            }
            St::Version => {
                let v = u32_at(b, 0);
                if v != 2 && v != 3 {
                    return Err(LoaderError::UnsupportedVersion { version: v });
                }
                self.version = v;
                self.st = St::Counts;
            }
            St::Counts => {
                let (nt, nkv) = (u64_at(b, 0), u64_at(b, 8));
                let max_t = self.bound(at + 16, MIN_TENSOR_INFO, MAX_TENSORS);
                if nt > max_t {
                    let limit = (nt, MIN_TENSOR_INFO, MAX_TENSORS);
                    return Err(self.over_limit("tensor count".into(), at, at + 16, limit));
                }
                let max_kv = self.bound(at + 16, MIN_KV, MAX_KV);
                if nkv > max_kv {
                    let limit = (nkv, MIN_KV, MAX_KV);
                    return Err(self.over_limit("metadata count".into(), at + 8, at + 16, limit));
                }
                self.n_tensors = nt;
                self.n_kv = nkv;
                self.next_kv();
            }
            St::KeyLen => {
                let n = self.checked_len(at, u64_at(b, 0), 1, MAX_KEY_LEN)?;
                self.st = St::Key(n);
            }
            St::Key(_) => {
                self.key = String::from_utf8(b.to_vec()).map_err(|_| LoaderError::BadUtf8 {
                    field: self.describe(),
                    offset: at,
                })?;
                if !self.seen_keys.insert(self.key.clone()) {
                    return Err(LoaderError::Duplicate {
                        what: "metadata key",
                        name: self.key.clone(),
                        offset: at,
                    });
                }
                self.st = St::ValType;
            }
            St::ValType => {
                let id = u32_at(b, 0);
                let t = ValueType::from_id(id).ok_or_else(|| LoaderError::UnknownValueType {
                    field: self.describe(),
                    offset: at,
                    value_type: id,
                })?;
                self.val_ty = t;
                self.st = match t {
                    ValueType::Str => St::StrLen,
                    ValueType::Array => St::ArrHead,
                    t => St::Scalar(t),
                };
            }
            St::StrLen => {
                let n = self.checked_len(at, u64_at(b, 0), 1, MAX_STRING_LEN)?;
                // A zero-length field is fed at once with no bytes by the loader.
                self.st = St::Str(n);
            }
            St::Str(_) => self.string_done(b, at)?,
            St::Scalar(t) => {
                let v = scalar(t, b).ok_or_else(|| LoaderError::InvalidValue {
                    field: self.describe(),
                    offset: at,
                    detail: format!("bool byte {} is neither 0 nor 1", b[0]),
                })?;
                self.value_done(v, at)?;
            }
            St::ArrHead => {
                let id = u32_at(b, 0);
                let elem = ValueType::from_id(id).ok_or_else(|| LoaderError::UnknownValueType {
                    field: format!("{} element type", self.describe()),
                    offset: at,
                    value_type: id,
                })?;
                if self.stack.len() >= MAX_DEPTH {
                    return Err(LoaderError::InvalidValue {
                        field: self.describe(),
                        offset: at,
                        detail: format!("arrays nested deeper than {MAX_DEPTH}"),
                    });
                }
                let count = u64_at(b, 4);
                let max = self.bound(at + 12, elem.min_size(), MAX_ARRAY_LEN);
                if count > max {
                    let limit = (count, elem.min_size(), MAX_ARRAY_LEN);
                    return Err(self.over_limit(self.describe(), at + 4, at + 12, limit));
                }
                let arr = match elem {
                    ValueType::Str => MetaArray::Str {
                        bytes: Vec::new(),
                        ends: Vec::new(),
                    },
                    ValueType::Array => MetaArray::Array(Vec::new()),
                    t => MetaArray::Fixed {
                        ty: t,
                        raw: Vec::new(),
                    },
                };
                self.stack.push(Frame {
                    elem,
                    count,
                    remaining: count,
                    arr,
                });
                self.advance_array(at + 12)?;
            }
            St::ArrBatch(t, n) => {
                if t == ValueType::Bool {
                    if let Some(i) = b.iter().position(|&x| x > 1) {
                        return Err(LoaderError::InvalidValue {
                            field: self.describe(),
                            offset: at + i as u64,
                            detail: format!("bool byte {} is neither 0 nor 1", b[i]),
                        });
                    }
                }
                if let Some(top) = self.stack.last_mut() {
                    if let MetaArray::Fixed { raw, .. } = &mut top.arr {
                        raw.extend_from_slice(b);
                    }
                    top.remaining -= n as u64;
                }
                self.advance_array(at + b.len() as u64)?;
            }
            St::NameLen => {
                self.info_offset = at;
                let n = self.checked_len(at, u64_at(b, 0), 1, MAX_NAME_LEN)?;
                self.st = St::Name(n);
            }
            St::Name(_) => {
                self.name = String::from_utf8(b.to_vec()).map_err(|_| LoaderError::BadUtf8 {
                    field: self.describe(),
                    offset: at,
                })?;
                self.st = St::NDims;
            }
            St::NDims => {
                let nd = u32_at(b, 0);
                if nd == 0 || nd > MAX_DIMS {
                    return Err(LoaderError::InvalidValue {
                        field: self.describe(),
                        offset: at,
                        detail: format!("n_dims {nd} is not in 1..={MAX_DIMS}"),
                    });
                }
                self.st = St::Dims(nd);
            }
            St::Dims(nd) => {
                self.dims = (0..nd as usize).map(|i| u64_at(b, i * 8)).collect();
                self.st = St::TypeOffset;
            }
            St::TypeOffset => self.tensor_done(u32_at(b, 0), u64_at(b, 4), at)?,
            St::Done => {}
        }
        Ok(())
    }

    fn string_done(&mut self, b: &[u8], at: u64) -> Result<(), LoaderError> {
        if let Some(top) = self.stack.last_mut() {
            if let MetaArray::Str { bytes, ends } = &mut top.arr {
                bytes.extend_from_slice(b);
                ends.push(bytes.len());
            }
            top.remaining -= 1;
            return self.advance_array(at + b.len() as u64);
        }
        let s = String::from_utf8(b.to_vec()).map_err(|_| LoaderError::BadUtf8 {
            field: self.describe(),
            offset: at,
        })?;
        self.value_done(MetaValue::Str(s), at)
    }

    /// After an array element: ask for the next one, or close the array.
    fn advance_array(&mut self, at: u64) -> Result<(), LoaderError> {
        let Some(top) = self.stack.last() else {
            return Ok(());
        };
        if top.remaining == 0 {
            if let Some(f) = self.stack.pop() {
                return self.value_done(MetaValue::Array(f.arr), at);
            }
            return Ok(());
        }
        self.st = match top.elem {
            ValueType::Str => St::StrLen,
            ValueType::Array => St::ArrHead,
            t => St::ArrBatch(t, top.remaining.min(BATCH) as usize),
        };
        Ok(())
    }

    fn value_done(&mut self, v: MetaValue, at: u64) -> Result<(), LoaderError> {
        if let Some(top) = self.stack.last_mut() {
            // Only arrays nest inside arrays; scalars come in batches and strings directly.
            if let (MetaArray::Array(list), MetaValue::Array(a)) = (&mut top.arr, v) {
                list.push(a);
            }
            top.remaining -= 1;
            return self.advance_array(at);
        }
        if self.key == "general.alignment" {
            let ok = match (&v, self.val_ty) {
                (MetaValue::Uint(a), ValueType::U32) => a.is_power_of_two() && *a <= MAX_ALIGNMENT,
                _ => false,
            };
            match v {
                MetaValue::Uint(a) if ok => self.alignment = a,
                _ => {
                    return Err(LoaderError::InvalidValue {
                        field: "general.alignment".into(),
                        offset: at,
                        detail: format!(
                            "must be a u32 power of two <= {MAX_ALIGNMENT}, got {:?} {v:?}",
                            self.val_ty
                        ),
                    })
                }
            }
        }
        self.entries.push(MetaEntry {
            key: std::mem::take(&mut self.key),
            ty: self.val_ty,
            value: v,
        });
        self.next_kv();
        Ok(())
    }

    fn next_kv(&mut self) {
        self.st = if (self.entries.len() as u64) < self.n_kv {
            St::KeyLen
        } else if (self.tensors.len() as u64) < self.n_tensors {
            St::NameLen
        } else {
            St::Done
        };
    }

    fn tensor_done(&mut self, type_id: u32, rel: u64, at: u64) -> Result<(), LoaderError> {
        let name = std::mem::take(&mut self.name);
        let info_at = self.info_offset;
        let dtype =
            TensorType::from_ggml(type_id).ok_or_else(|| LoaderError::UnknownTensorType {
                tensor: name.clone(),
                offset: at,
                ggml_type: type_id,
            })?;
        let dims = std::mem::take(&mut self.dims);
        let numel = dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| LoaderError::DimOverflow {
                tensor: name.clone(),
                offset: info_at,
                dims: dims.clone(),
            })?;
        let be = dtype.block_elems();
        if !dims[0].is_multiple_of(be) {
            return Err(LoaderError::InvalidValue {
                field: format!("tensor `{name}` dims"),
                offset: info_at,
                detail: format!(
                    "row length {} is not a multiple of the {} block size {be}",
                    dims[0],
                    dtype.name()
                ),
            });
        }
        let size = (numel / be)
            .checked_mul(dtype.block_bytes())
            .ok_or_else(|| LoaderError::DimOverflow {
                tensor: name.clone(),
                offset: info_at,
                dims: dims.clone(),
            })?;
        if !rel.is_multiple_of(self.alignment) {
            return Err(LoaderError::Misaligned {
                tensor: name,
                offset: at + 4,
                data_offset: rel,
                alignment: self.alignment,
            });
        }
        if !self.seen_names.insert(name.clone()) {
            return Err(LoaderError::Duplicate {
                what: "tensor",
                name,
                offset: info_at,
            });
        }
        self.tensors.push(TensorInfo {
            layer: layer_of(&name),
            name,
            dtype,
            shape: dims.iter().rev().copied().collect(),
            // Relative for now; made absolute once the data section's start is known.
            offset: rel,
            size,
            index: self.tensors.len(),
            skipped: false,
        });
        self.next_kv();
        Ok(())
    }

    /// The header, once `is_done()`; `end` is the absolute offset just past the tensor infos.
    pub(crate) fn finish(self, end: u64) -> Result<ModelHeader, LoaderError> {
        let data_start = end.div_ceil(self.alignment) * self.alignment;
        let mut tensors = self.tensors;
        for t in &mut tensors {
            t.offset =
                t.offset
                    .checked_add(data_start)
                    .ok_or_else(|| LoaderError::OutOfBounds {
                        tensor: t.name.clone(),
                        start: t.offset,
                        end: u64::MAX,
                        file_len: self.file_len.unwrap_or(u64::MAX),
                    })?;
        }
        let architecture = self.entries.iter().find_map(|e| match (&*e.key, &e.value) {
            ("general.architecture", MetaValue::Str(s)) => Some(s.clone()),
            _ => None,
        });
        super::finish_header(
            ModelHeader {
                format: Format::Gguf,
                version: self.version,
                architecture,
                tensors,
                metadata: self.entries,
                data_start,
                total_bytes: data_start,
                n_layers: 0,
                alignment: self.alignment,
            },
            self.file_len,
        )
    }
}

fn scalar(t: ValueType, b: &[u8]) -> Option<MetaValue> {
    let mut a = [0u8; 8];
    a[..b.len()].copy_from_slice(b);
    let u = u64::from_le_bytes(a);
    Some(match t {
        ValueType::U8 | ValueType::U16 | ValueType::U32 | ValueType::U64 => MetaValue::Uint(u),
        ValueType::I8 => MetaValue::Int(b[0] as i8 as i64),
        ValueType::I16 => MetaValue::Int(u as u16 as i16 as i64),
        ValueType::I32 => MetaValue::Int(u as u32 as i32 as i64),
        ValueType::I64 => MetaValue::Int(u as i64),
        ValueType::F32 => MetaValue::Float(f32::from_bits(u as u32) as f64),
        ValueType::F64 => MetaValue::Float(f64::from_bits(u)),
        ValueType::Bool => match b[0] {
            0 => MetaValue::Bool(false),
            1 => MetaValue::Bool(true),
            _ => return None,
        },
        ValueType::Str | ValueType::Array => return None,
    })
}
