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

pub use decode::Utf8Stream;

use super::meta::{bad, find, fixed4, get_bool, word, KEY_MODEL};
use super::vocab::{Defaults, Vocab};
use crate::error::Result;
use crate::loader::{MetaEntry, MetaValue, ValueType};

const KEY_SCORES: &str = "tokenizer.ggml.scores";

pub struct SpmTokenizer {
    /// Texts (U+2581 for spaces, `<0xNN>` for byte tokens), ids, special tokens and flags.
    vocab: Vocab,
    /// [n_vocab] merge priority: higher merges first.
    scores: Vec<f32>,
    /// Token for each byte value, for characters that form no token.
    byte_ids: [u32; 256],
    add_space_prefix: bool,
}

/// Vocabulary queries (`vocab_size`, `bos`, `token_text`, `is_eog` ...) are `Vocab`'s.
impl std::ops::Deref for SpmTokenizer {
    type Target = Vocab;
    fn deref(&self) -> &Vocab {
        &self.vocab
    }
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
        // llama.cpp's defaults for the `llama` (SPM) tokenizer model, then the metadata.
        let defaults = Defaults {
            bos: 1,
            eos: 2,
            unk: Some(0),
            add_bos: true,
        };
        let vocab = Vocab::from_gguf(meta, &defaults)?;
        let n = vocab.vocab_size();

        // Scores are optional (llama.cpp: score 0), but when present they must describe every
        // token.
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
        let add_space_prefix = get_bool(meta, "tokenizer.ggml.add_space_prefix")?.unwrap_or(true);

        let mut byte_ids = [0u32; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            let hex = format!("<0x{b:02X}>");
            let plain = (b < 0x80).then(|| (b as u8 as char).to_string());
            let id = vocab
                .to_id
                .get(&hex)
                .or_else(|| plain.as_ref().and_then(|p| vocab.to_id.get(p)))
                .copied()
                .or(vocab.unk);
            // llama.cpp would throw in the middle of tokenizing; refuse the vocabulary now.
            *slot = id.ok_or_else(|| {
                bad(
                    super::meta::KEY_TOKENS,
                    format!("no byte-fallback token {hex} and no unknown token"),
                )
            })?;
        }

        Ok(Self {
            vocab,
            scores,
            byte_ids,
            add_space_prefix,
        })
    }

    pub fn add_space_prefix(&self) -> bool {
        self.add_space_prefix
    }
}
