//! What every GGUF vocabulary has, whatever its tokenizer model: token texts and attributes,
//! the special ids and flags, the end-of-generation set and the tokens matched in text. The
//! SentencePiece and byte-level BPE tokenizers each hold one (and reach its fields and methods
//! through `Deref`) and add only what their model needs.

use std::collections::HashMap;

use super::meta::{
    attr, bad, byte_value, eog_ids, get_bool, get_id, special_ids, token_attrs, token_texts,
    KEY_TOKENS,
};
use crate::error::Result;
use crate::loader::MetaEntry;

/// A tokenizer model's defaults (llama.cpp's), used where the metadata says nothing. An id
/// outside the vocabulary counts as none.
pub(crate) struct Defaults {
    pub bos: u32,
    pub eos: u32,
    pub unk: Option<u32>,
    pub add_bos: bool,
}

pub struct Vocab {
    /// [n_vocab] token texts as the file stores them.
    pub(crate) texts: Vec<String>,
    /// [n_vocab] `attr` bits.
    pub(crate) attrs: Vec<u8>,
    pub(crate) to_id: HashMap<String, u32>,
    /// Special tokens matched in text (control, user-defined, unknown), longest text first.
    pub(crate) specials: Vec<u32>,
    pub(crate) bos: Option<u32>,
    pub(crate) eos: Option<u32>,
    pub(crate) unk: Option<u32>,
    pub(crate) pad: Option<u32>,
    /// Sorted ids that end generation (eos, eot, eom and the tokens llama.cpp recognizes).
    pub(crate) eog: Vec<u32>,
    pub(crate) add_bos: bool,
    pub(crate) add_eos: bool,
}

impl Vocab {
    /// The vocabulary of a GGUF header's metadata. Every inconsistency (wrong types, arrays
    /// of different lengths, non-UTF-8 or duplicate texts, malformed byte tokens, ids outside
    /// the vocabulary, BOS/EOS asked for but missing) is a typed error naming the key.
    pub(crate) fn from_gguf(meta: &[MetaEntry], d: &Defaults) -> Result<Self> {
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
        let in_vocab = |id: u32| (id < n as u32).then_some(id);
        let bos = get_id(meta, "tokenizer.ggml.bos_token_id", n)?.or(in_vocab(d.bos));
        let eos = get_id(meta, "tokenizer.ggml.eos_token_id", n)?.or(in_vocab(d.eos));
        let unk = get_id(meta, "tokenizer.ggml.unknown_token_id", n)?.or(d.unk.and_then(in_vocab));
        let pad = get_id(meta, "tokenizer.ggml.padding_token_id", n)?;
        let eot = get_id(meta, "tokenizer.ggml.eot_token_id", n)?;
        let eom = get_id(meta, "tokenizer.ggml.eom_token_id", n)?;
        let add_bos = get_bool(meta, "tokenizer.ggml.add_bos_token")?.unwrap_or(d.add_bos);
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
        Ok(Self {
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
    /// Whether encoding with special tokens puts BOS first.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }
    /// The stored text of a token (U+2581 for SentencePiece spaces, GPT-2 byte characters
    /// such as `Ġ` for BPE); `None` outside the vocabulary.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(String::as_str)
    }
    /// The id whose stored text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.to_id.get(text).copied()
    }
    /// Whether `id` ends generation: EOS, EOT, EOM and the end-of-turn tokens llama.cpp
    /// recognizes (`<end_of_turn>`, `<|im_end|>` ...).
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
