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

use super::meta::{
    attr, bad, byte_value, eog_ids, get_bool, get_id, get_str, special_ids, str_array, token_attrs,
    token_texts, KEY_TOKENS,
};
use crate::error::Result;
use crate::loader::MetaEntry;

const KEY_MERGES: &str = "tokenizer.ggml.merges";
const KEY_PRE: &str = "tokenizer.ggml.pre";

pub struct BpeTokenizer {
    /// `tokenizer.ggml.pre` ("default" when absent, as llama.cpp).
    pre: String,
    /// [n_vocab] token texts (GPT-2 byte characters for normal tokens).
    texts: Vec<String>,
    /// [n_vocab] `attr` bits.
    attrs: Vec<u8>,
    to_id: HashMap<String, u32>,
    /// Special tokens matched in text (control, user-defined, unknown), longest text first.
    specials: Vec<u32>,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    /// Sorted ids that end generation.
    eog: Vec<u32>,
    add_bos: bool,
    add_eos: bool,
    clean_spaces: bool,
    model: BPE,
    pre_tokenizer: PreTokenizerWrapper,
    /// Byte of each GPT-2 byte character.
    char_bytes: HashMap<char, u8>,
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

        let (texts, to_id) = token_texts(meta)?;
        let n = texts.len();
        let mut attrs = token_attrs(meta, n)?;
        for (i, text) in texts.iter().enumerate() {
            if attrs[i] & attr::BYTE != 0 && byte_value(text).is_none() {
                return Err(bad(
                    format!("{KEY_TOKENS}[{i}]"),
                    format!("byte token {text:?} is not of the form <0xNN>"),
                ));
            }
        }

        let merges = read_merges(meta, &to_id)?;
        let vocab: tokenizers::models::bpe::Vocab =
            to_id.iter().map(|(t, &i)| (t.clone(), i)).collect();
        let model = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(spec.ignore_merges)
            .build()
            .map_err(|e| bad(KEY_MERGES, e.to_string()))?;
        let pre_tokenizer = pre::build(&spec)?;

        // llama.cpp's defaults for BPE vocabularies (id 11, dropped when outside the
        // vocabulary), then the metadata.
        let default = |id: u32| (id < n as u32).then_some(id);
        let bos = get_id(meta, "tokenizer.ggml.bos_token_id", n)?.or(default(11));
        let eos = get_id(meta, "tokenizer.ggml.eos_token_id", n)?.or(default(11));
        let unk = get_id(meta, "tokenizer.ggml.unknown_token_id", n)?;
        let pad = get_id(meta, "tokenizer.ggml.padding_token_id", n)?;
        let eot = get_id(meta, "tokenizer.ggml.eot_token_id", n)?;
        let eom = get_id(meta, "tokenizer.ggml.eom_token_id", n)?;
        let add_bos = get_bool(meta, "tokenizer.ggml.add_bos_token")?.unwrap_or(spec.add_bos);
        let add_eos = get_bool(meta, "tokenizer.ggml.add_eos_token")?.unwrap_or(false);
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
        let char_bytes = pre::byte_chars()
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();

        Ok(Self {
            pre,
            texts,
            attrs,
            to_id,
            specials,
            bos,
            eos,
            unk,
            pad,
            eog,
            add_bos,
            add_eos,
            clean_spaces: spec.clean_spaces,
            model,
            pre_tokenizer,
            char_bytes,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.texts.len()
    }
    /// The `tokenizer.ggml.pre` this tokenizer splits text by.
    pub fn pre(&self) -> &str {
        &self.pre
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
    /// Whether `encode_with(.., add_special = true, ..)` puts BOS first.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }
    /// The stored text of a token (GPT-2 byte characters, e.g. `Ġ` for a space); `None`
    /// outside the vocabulary.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(String::as_str)
    }
    /// The id whose stored text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.to_id.get(text).copied()
    }
    /// Whether `id` ends generation (EOS, EOT, EOM and the tokens llama.cpp recognizes).
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
