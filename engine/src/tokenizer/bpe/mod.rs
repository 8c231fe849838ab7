//! Byte-level BPE tokenizer (`tokenizer.ggml.model = gpt2`: Llama 3, Qwen 2.5 / 3, SmolLM2, ...)
//! built from GGUF metadata, producing the same ids as llama.cpp (`llm_tokenizer_bpe` and
//! `tokenizer_st_partition` in `src/llama-vocab.cpp`).
//!
//! The vocabulary comes from `tokenizer.ggml.tokens` / `.token_type` / `.merges` (a merge's
//! rank is its position) and the pre-tokenizer from `tokenizer.ggml.pre` (`pre.rs`; an unknown
//! name is refused). Encoding (`encode.rs`): special tokens written in the text are cut out
//! first, longest first; every other fragment is split by the family's regexes, mapped to
//! GPT-2's byte characters and merged by the `tokenizers` crate's BPE model. Decoding
//! (`decode.rs`) maps the byte characters back to raw bytes. No file system: compiles for wasm32.

mod decode;
mod encode;
pub mod pre;

use std::collections::HashMap;

use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;

use super::meta::{bad, get_str, str_array};
use super::vocab::{Defaults, Vocab};
use crate::error::Result;
use crate::loader::MetaEntry;

const KEY_MERGES: &str = "tokenizer.ggml.merges";
const KEY_PRE: &str = "tokenizer.ggml.pre";

pub struct BpeTokenizer {
    /// `tokenizer.ggml.pre` ("default" when absent, as llama.cpp).
    pre: String,
    /// Texts (GPT-2 byte characters for normal tokens), ids, special tokens and flags.
    vocab: Vocab,
    clean_spaces: bool,
    model: BPE,
    pre_tokenizer: PreTokenizerWrapper,
    /// Byte of each GPT-2 byte character.
    char_bytes: HashMap<char, u8>,
}

/// Vocabulary queries (`vocab_size`, `bos`, `token_text`, `is_eog` ...) are `Vocab`'s.
impl std::ops::Deref for BpeTokenizer {
    type Target = Vocab;
    fn deref(&self) -> &Vocab {
        &self.vocab
    }
}

impl BpeTokenizer {
    /// Builds the tokenizer from a GGUF header's metadata (`ModelHeader::metadata`). An unknown
    /// `tokenizer.ggml.pre` is `Error::Tokenizer` naming it and the supported ones; malformed
    /// metadata (wrong types, duplicate texts, merges of unknown tokens, ids outside the
    /// vocabulary) is a typed error too.
    pub fn from_gguf(meta: &[MetaEntry]) -> Result<Self> {
        match get_str(meta, super::meta::KEY_MODEL)? {
            Some("gpt2") => {}
            Some(other) => {
                return Err(bad(
                    super::meta::KEY_MODEL,
                    format!("tokenizer model `{other}` is not byte-level BPE (`gpt2`)"),
                ))
            }
            None => return Err(bad(super::meta::KEY_MODEL, "missing")),
        }
        // llama.cpp takes a missing name as "default" (with a loud warning); an unknown one
        // fails its load, and so it does here.
        let pre = get_str(meta, KEY_PRE)?.unwrap_or("default").to_string();
        let spec = pre::spec(&pre).ok_or_else(|| {
            bad(
                KEY_PRE,
                format!(
                    "pre-tokenizer `{pre}` is not supported (supported: {})",
                    pre::supported().join(", ")
                ),
            )
        })?;

        // llama.cpp's defaults for BPE vocabularies (id 11, dropped when outside the
        // vocabulary), then the metadata.
        let defaults = Defaults {
            bos: 11,
            eos: 11,
            unk: None,
            add_bos: spec.add_bos,
        };
        let vocab = Vocab::from_gguf(meta, &defaults)?;

        let merges = read_merges(meta, &vocab.to_id)?;
        let ids: tokenizers::models::bpe::Vocab =
            vocab.to_id.iter().map(|(t, &i)| (t.clone(), i)).collect();
        let model = BPE::builder()
            .vocab_and_merges(ids, merges)
            .ignore_merges(spec.ignore_merges)
            .build()
            .map_err(|e| bad(KEY_MERGES, e.to_string()))?;
        let pre_tokenizer = pre::build(&spec)?;

        let char_bytes = pre::byte_chars()
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();

        Ok(Self {
            pre,
            vocab,
            clean_spaces: spec.clean_spaces,
            model,
            pre_tokenizer,
            char_bytes,
        })
    }

    /// The `tokenizer.ggml.pre` this tokenizer splits text by.
    pub fn pre(&self) -> &str {
        &self.pre
    }
}

/// `tokenizer.ggml.merges` as token pairs, rank order. Each entry is split at its first space
/// after the first byte, as llama.cpp does; a repeated pair keeps its first (best) rank, as in
/// llama.cpp's rank map (the `tokenizers` crate would keep the last).
fn read_merges(meta: &[MetaEntry], to_id: &HashMap<String, u32>) -> Result<Vec<(String, String)>> {
    let arr = str_array(meta, KEY_MERGES)?;
    let mut seen = std::collections::HashSet::with_capacity(arr.len());
    let mut merges = Vec::with_capacity(arr.len());
    for i in 0..arr.len() {
        let key = || format!("{KEY_MERGES}[{i}]");
        let bytes = arr.str_at(i).ok_or_else(|| bad(key(), "missing string"))?;
        let m = std::str::from_utf8(bytes).map_err(|e| bad(key(), format!("not UTF-8: {e}")))?;
        // Byte offset 1 even when the first character is wider: a space is never inside one.
        let pos = m
            .as_bytes()
            .iter()
            .skip(1)
            .position(|&b| b == b' ')
            .map(|p| p + 1)
            .ok_or_else(|| bad(key(), format!("merge {m:?} has no space between its parts")))?;
        let (a, b) = (&m[..pos], &m[pos + 1..]);
        for part in [a, b, &format!("{a}{b}")] {
            if !to_id.contains_key(part) {
                return Err(bad(
                    key(),
                    format!("merge {m:?}: {part:?} is not in the vocabulary"),
                ));
            }
        }
        if seen.insert((a, b)) {
            merges.push((a.to_string(), b.to_string()));
        }
    }
    Ok(merges)
}
