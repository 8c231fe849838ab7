//! SentencePiece (BPE-style "SPM") tokenizer built from GGUF metadata, producing the same ids
//! as llama.cpp (`llm_tokenizer_spm` and `tokenizer_st_partition` in `src/llama-vocab.cpp`).
//!
//! The vocabulary comes from `tokenizer.ggml.tokens` / `.scores` / `.token_type`; special ids,
//! `add_bos_token`, `add_eos_token` and `add_space_prefix` from their keys, with llama.cpp's
//! defaults for the `llama` tokenizer model. Gemma 3 says `add_space_prefix = false`, so no
//! dummy " " is put in front of the text.
//!
//! Encoding (`encode.rs`): control/user-defined tokens written in the text are cut out first
//! (longest token text first), every other fragment has its spaces escaped to U+2581 and is
//! merged pairwise by score; characters that form no token become `<0xNN>` byte tokens.
//! Decoding (`decode.rs`): pieces are concatenated as bytes, so a streaming decoder can hold
//! back an incomplete UTF-8 sequence. No file system here: this compiles for wasm32.

mod decode;
mod encode;

use std::collections::HashMap;

pub use decode::{chat_prompt, StreamDecoder, Utf8Stream};

use crate::error::{Error, Result};
use crate::loader::{MetaArray, MetaEntry, MetaValue, ValueType};

/// llama.cpp's `llama_token_attr` bits (only those this tokenizer acts on).
pub(crate) mod attr {
    pub const UNKNOWN: u8 = 1 << 0;
    pub const UNUSED: u8 = 1 << 1;
    pub const NORMAL: u8 = 1 << 2;
    pub const CONTROL: u8 = 1 << 3;
    pub const USER_DEFINED: u8 = 1 << 4;
    pub const BYTE: u8 = 1 << 5;
}

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
fn attr_of_type(t: i32) -> u8 {
    match t {
        1 => attr::NORMAL,
        2 => attr::UNKNOWN,
        3 => attr::CONTROL,
        4 => attr::USER_DEFINED,
        5 => attr::UNUSED,
        6 => attr::BYTE,
        // 0 (undefined) and anything else: decoded as nothing, never matched as special.
        _ => 0,
    }
}

/// Token texts that llama.cpp treats as end-of-generation (and forces to CONTROL) whatever
/// their stored type: its text-based auto-detection in `llama_vocab::impl::load`.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
];

/// Vocabularies above this are refused: ids are i32 in llama.cpp and the GPU side.
const MAX_VOCAB: usize = 1 << 24;

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_TYPES: &str = "tokenizer.ggml.token_type";

pub struct SpmTokenizer {
    /// [n_vocab] token texts (U+2581 for spaces, `<0xNN>` for byte tokens).
    texts: Vec<String>,
    /// [n_vocab] merge priority: higher merges first.
    scores: Vec<f32>,
    /// [n_vocab] `attr` bits.
    attrs: Vec<u8>,
    to_id: HashMap<String, u32>,
    /// Special tokens matched in text (control, user-defined, unknown), longest text first.
    specials: Vec<u32>,
    /// Token for each byte value, for characters that form no token.
    byte_ids: [u32; 256],
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    /// Sorted ids that end generation (eos, eot, eom and the `EOG_TEXTS` tokens).
    eog: Vec<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
}

fn bad(key: impl Into<String>, detail: impl Into<String>) -> Error {
    Error::Tokenizer {
        key: key.into(),
        detail: detail.into(),
    }
}

fn find<'a>(meta: &'a [MetaEntry], key: &str) -> Option<&'a MetaEntry> {
    meta.iter().find(|e| e.key == key)
}

fn get_bool(meta: &[MetaEntry], key: &str) -> Result<Option<bool>> {
    match find(meta, key).map(|e| &e.value) {
        None => Ok(None),
        Some(MetaValue::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(bad(key, format!("expected a bool, found {v:?}"))),
    }
}

/// A token id from metadata; must lie in the vocabulary.
fn get_id(meta: &[MetaEntry], key: &str, n_vocab: usize) -> Result<Option<u32>> {
    let v = match find(meta, key).map(|e| &e.value) {
        None => return Ok(None),
        Some(MetaValue::Uint(u)) => *u,
        Some(MetaValue::Int(i)) if *i >= 0 => *i as u64,
        Some(v) => return Err(bad(key, format!("expected a token id, found {v:?}"))),
    };
    if v >= n_vocab as u64 {
        return Err(bad(
            key,
            format!("token id {v} is outside the vocabulary of {n_vocab} tokens"),
        ));
    }
    Ok(Some(v as u32))
}

/// The little-endian 4-byte elements of a fixed-size array, checked to hold `n` of them.
fn fixed4<'a>(e: &'a MetaEntry, n: usize, want: &[ValueType]) -> Result<(ValueType, &'a [u8])> {
    let MetaValue::Array(MetaArray::Fixed { ty, raw }) = &e.value else {
        return Err(bad(&e.key, "expected an array of numbers"));
    };
    if !want.contains(ty) {
        return Err(bad(
            &e.key,
            format!("element type {ty:?}, expected one of {want:?}"),
        ));
    }
    let len = raw.len() / 4;
    if len != n {
        return Err(bad(
            &e.key,
            format!("{len} elements for a vocabulary of {n} tokens"),
        ));
    }
    Ok((*ty, raw))
}

fn word(raw: &[u8], i: usize) -> [u8; 4] {
    [raw[4 * i], raw[4 * i + 1], raw[4 * i + 2], raw[4 * i + 3]]
}

impl SpmTokenizer {
    /// Builds the tokenizer from a GGUF header's metadata (`ModelHeader::metadata`). Every
    /// inconsistency (wrong types, arrays of different lengths, non-UTF-8 or duplicate token
    /// texts, ids outside the vocabulary, malformed byte tokens) is a typed error.
    pub fn from_gguf(meta: &[MetaEntry]) -> Result<Self> {
        match find(meta, KEY_MODEL).map(|e| &e.value) {
            Some(MetaValue::Str(s)) if s == "llama" => {}
            Some(MetaValue::Str(s)) => {
                return Err(bad(
                    KEY_MODEL,
                    format!("tokenizer model `{s}` is not SentencePiece (`llama`)"),
                ))
            }
            Some(v) => return Err(bad(KEY_MODEL, format!("expected a string, found {v:?}"))),
            None => return Err(bad(KEY_MODEL, "missing")),
        }
        let tokens = find(meta, KEY_TOKENS).ok_or_else(|| bad(KEY_TOKENS, "missing"))?;
        let MetaValue::Array(arr @ MetaArray::Str { .. }) = &tokens.value else {
            return Err(bad(KEY_TOKENS, "expected an array of strings"));
        };
        let n = arr.len();
        if n == 0 || n > MAX_VOCAB {
            return Err(bad(
                KEY_TOKENS,
                format!("{n} tokens (expected 1 ..= {MAX_VOCAB})"),
            ));
        }

        // Scores and types are optional (llama.cpp: score 0, type normal), but when present
        // they must describe every token.
        let scores = match find(meta, KEY_SCORES) {
            None => vec![0.0; n],
            Some(e) => {
                let (ty, raw) = fixed4(e, n, &[ValueType::F32, ValueType::I32])?;
                let mut v = Vec::with_capacity(n);
                for i in 0..n {
                    let s = match ty {
                        ValueType::I32 => i32::from_le_bytes(word(raw, i)) as f32,
                        _ => f32::from_le_bytes(word(raw, i)),
                    };
                    // NaN would make the merge order depend on the heap's internals.
                    if s.is_nan() {
                        return Err(bad(format!("{KEY_SCORES}[{i}]"), "score is NaN"));
                    }
                    v.push(s);
                }
                v
            }
        };
        let mut attrs = match find(meta, KEY_TYPES) {
            None => vec![attr::NORMAL; n],
            Some(e) => {
                let (_, raw) = fixed4(e, n, &[ValueType::I32])?;
                (0..n)
                    .map(|i| attr_of_type(i32::from_le_bytes(word(raw, i))))
                    .collect()
            }
        };

        let mut texts = Vec::with_capacity(n);
        let mut to_id = HashMap::with_capacity(n);
        for (i, &a) in attrs.iter().enumerate() {
            let key = || format!("{KEY_TOKENS}[{i}]");
            let bytes = arr.str_at(i).ok_or_else(|| bad(key(), "missing string"))?;
            let mut text = std::str::from_utf8(bytes)
                .map_err(|e| bad(key(), format!("not valid UTF-8: {e}")))?
                .to_string();
            if text.is_empty() {
                // As llama.cpp: an empty token can never match, but keeps its id.
                text = format!("[EMPTY_{i}]");
            }
            if let Some(prev) = to_id.insert(text.clone(), i as u32) {
                return Err(bad(
                    key(),
                    format!("duplicate token text {text:?} (also id {prev})"),
                ));
            }
            if a & attr::BYTE != 0 && byte_value(&text).is_none() {
                return Err(bad(
                    key(),
                    format!("byte token {text:?} is not of the form <0xNN>"),
                ));
            }
            texts.push(text);
        }

        // llama.cpp's defaults for the `llama` (SPM) tokenizer model, then the metadata.
        let default = |id: u32| (id < n as u32).then_some(id);
        let bos = get_id(meta, "tokenizer.ggml.bos_token_id", n)?.or(default(1));
        let eos = get_id(meta, "tokenizer.ggml.eos_token_id", n)?.or(default(2));
        let unk = get_id(meta, "tokenizer.ggml.unknown_token_id", n)?.or(default(0));
        let pad = get_id(meta, "tokenizer.ggml.padding_token_id", n)?;
        let eot = get_id(meta, "tokenizer.ggml.eot_token_id", n)?;
        let eom = get_id(meta, "tokenizer.ggml.eom_token_id", n)?;
        let add_bos = get_bool(meta, "tokenizer.ggml.add_bos_token")?.unwrap_or(true);
        let add_eos = get_bool(meta, "tokenizer.ggml.add_eos_token")?.unwrap_or(false);
        let add_space_prefix = get_bool(meta, "tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
        if add_bos && bos.is_none() {
            return Err(bad(
                "tokenizer.ggml.add_bos_token",
                "set, but the vocabulary has no BOS token",
            ));
        }
        if add_eos && eos.is_none() {
            return Err(bad(
                "tokenizer.ggml.add_eos_token",
                "set, but the vocabulary has no EOS token",
            ));
        }

        let mut eog: Vec<u32> = [eos, eot, eom].into_iter().flatten().collect();
        for t in EOG_TEXTS {
            if let Some(&id) = to_id.get(*t) {
                eog.push(id);
                // llama.cpp overrides the type of control-looking tokens.
                attrs[id as usize] |= attr::CONTROL;
            }
        }
        eog.sort_unstable();
        eog.dedup();

        let special_mask = attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN;
        let mut specials: Vec<u32> = (0..n as u32)
            .filter(|&i| attrs[i as usize] & special_mask != 0)
            .collect();
        // Longest first (llama.cpp sorts by length only; ties keep id order here).
        specials.sort_by_key(|&i| std::cmp::Reverse(texts[i as usize].len()));

        let mut byte_ids = [0u32; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            let hex = format!("<0x{b:02X}>");
            let plain = (b < 0x80).then(|| (b as u8 as char).to_string());
            let id = to_id
                .get(&hex)
                .or_else(|| plain.as_ref().and_then(|p| to_id.get(p)))
                .copied()
                .or(unk);
            // llama.cpp would throw in the middle of tokenizing; refuse the vocabulary now.
            *slot = id.ok_or_else(|| {
                bad(
                    KEY_TOKENS,
                    format!("no byte-fallback token {hex} and no unknown token"),
                )
            })?;
        }

        Ok(Self {
            texts,
            scores,
            attrs,
            to_id,
            specials,
            byte_ids,
            bos,
            eos,
            unk,
            pad,
            eog,
            add_bos,
            add_eos,
            add_space_prefix,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.texts.len()
    }
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }
    pub fn unk(&self) -> Option<u32> {
        self.unk
    }
    pub fn pad(&self) -> Option<u32> {
        self.pad
    }
    pub fn add_space_prefix(&self) -> bool {
        self.add_space_prefix
    }
    /// The stored text of a token (U+2581 for spaces); `None` outside the vocabulary.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(String::as_str)
    }
    /// The id whose text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.to_id.get(text).copied()
    }
    /// Whether `id` ends generation: EOS, `<end_of_turn>` and the other end-of-turn tokens
    /// llama.cpp recognizes.
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }
    /// All end-of-generation ids, sorted.
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }
    /// Whether `id` is a control or unknown token (hidden by `decode` unless `special`).
    pub fn is_control(&self, id: u32) -> bool {
        self.attrs
            .get(id as usize)
            .is_some_and(|a| a & (attr::CONTROL | attr::UNKNOWN) != 0)
    }
}

/// The byte of a `<0xNN>` token (two hex digits, either case).
fn byte_value(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}
