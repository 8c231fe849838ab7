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

pub use decode::Utf8Stream;

pub(crate) use super::meta::{attr, byte_value};
use super::meta::{
    bad, eog_ids, find, fixed4, get_bool, get_id, special_ids, token_attrs, token_texts, word,
    KEY_MODEL,
};
use crate::error::Result;
use crate::loader::{MetaEntry, MetaValue, ValueType};

const KEY_SCORES: &str = "tokenizer.ggml.scores";

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
        let (texts, to_id) = token_texts(meta)?;
        let n = texts.len();

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
        let mut attrs = token_attrs(meta, n)?;
        for (i, text) in texts.iter().enumerate() {
            if attrs[i] & attr::BYTE != 0 && byte_value(text).is_none() {
                return Err(bad(
                    format!("{}[{i}]", super::meta::KEY_TOKENS),
                    format!("byte token {text:?} is not of the form <0xNN>"),
                ));
            }
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

        let eog = eog_ids(meta, &to_id, &mut attrs, &[eos, eot, eom])?;
        let specials = special_ids(&texts, &attrs);

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
                    super::meta::KEY_TOKENS,
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
