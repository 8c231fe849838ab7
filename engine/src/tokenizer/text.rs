//! One tokenizer type for every text model: the GGUF's `tokenizer.ggml.model` picks
//! SentencePiece (`llama`) or byte-level BPE (`gpt2`); callers see one API and one streaming
//! decoder.

use std::borrow::Cow;

use super::bpe::BpeTokenizer;
use super::meta::{get_str, KEY_MODEL};
use super::spm::{SpmTokenizer, Utf8Stream};
use crate::error::{Error, Result};
use crate::loader::MetaEntry;

/// The `tokenizer.ggml.model` values webjit tokenizes.
pub const SUPPORTED_MODELS: &[&str] = &["llama", "gpt2"];

// One per model, never in a hot array: the size difference between the variants is harmless.
#[allow(clippy::large_enum_variant)]
pub enum TextTokenizer {
    Spm(SpmTokenizer),
    Bpe(BpeTokenizer),
}

/// Forwards a method to whichever tokenizer this is.
macro_rules! both {
    ($self:ident, $t:ident => $e:expr) => {
        match $self {
            TextTokenizer::Spm($t) => $e,
            TextTokenizer::Bpe($t) => $e,
        }
    };
}

impl TextTokenizer {
    /// Builds the model's tokenizer from a GGUF header's metadata. A missing or unsupported
    /// `tokenizer.ggml.model` is `Error::Tokenizer` naming the value and the supported ones.
    pub fn from_gguf(meta: &[MetaEntry]) -> Result<Self> {
        let supported = SUPPORTED_MODELS.join(", ");
        match get_str(meta, KEY_MODEL)? {
            Some("llama") => Ok(Self::Spm(SpmTokenizer::from_gguf(meta)?)),
            Some("gpt2") => Ok(Self::Bpe(BpeTokenizer::from_gguf(meta)?)),
            Some(other) => Err(Error::Tokenizer {
                key: KEY_MODEL.into(),
                detail: format!(
                    "tokenizer model `{other}` is not supported (supported: {supported})"
                ),
            }),
            None => Err(Error::Tokenizer {
                key: KEY_MODEL.into(),
                detail: format!("missing (supported tokenizer models: {supported})"),
            }),
        }
    }

    /// `tokenizer.ggml.model` of this tokenizer.
    pub fn model(&self) -> &'static str {
        match self {
            Self::Spm(_) => "llama",
            Self::Bpe(_) => "gpt2",
        }
    }

    /// Ids as llama.cpp's `llama_tokenize(text, add_special = add_bos, parse_special = true)`.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        self.encode_with(text, add_bos, true)
    }

    /// `add_special`: BOS/EOS as the model says; `parse_special`: control tokens written in
    /// the text become their ids.
    pub fn encode_with(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>> {
        match self {
            Self::Spm(t) => Ok(t.encode_with(text, add_special, parse_special)),
            Self::Bpe(t) => t.encode_with(text, add_special, parse_special),
        }
    }

    /// The bytes of one token (`token_to_piece`); control tokens empty unless `special`.
    pub fn piece(&self, id: u32, special: bool) -> Result<Cow<'_, [u8]>> {
        both!(self, t => t.piece(id, special))
    }
    /// All pieces as raw bytes (SentencePiece drops the dummy prefix's leading space).
    pub fn decode_bytes(&self, ids: &[u32], special: bool) -> Result<Vec<u8>> {
        both!(self, t => t.decode_bytes(ids, special))
    }
    /// Text of `ids` with control tokens hidden; invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        both!(self, t => t.decode(ids))
    }
    /// As `decode`, with control tokens written out when `special`.
    pub fn decode_with(&self, ids: &[u32], special: bool) -> Result<String> {
        both!(self, t => t.decode_with(ids, special))
    }
    pub fn vocab_size(&self) -> usize {
        both!(self, t => t.vocab_size())
    }
    pub fn bos(&self) -> Option<u32> {
        both!(self, t => t.bos())
    }
    pub fn eos(&self) -> Option<u32> {
        both!(self, t => t.eos())
    }
    /// The stored text of a token; `None` outside the vocabulary.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        both!(self, t => t.token_text(id))
    }
    /// The id whose stored text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        both!(self, t => t.token_id(text))
    }
    /// Whether `id` ends generation.
    pub fn is_eog(&self, id: u32) -> bool {
        both!(self, t => t.is_eog(id))
    }
    /// All end-of-generation ids, sorted.
    pub fn eog_ids(&self) -> &[u32] {
        both!(self, t => t.eog_ids())
    }
    /// Whether `id` is a control or unknown token (hidden by `decode` unless `special`).
    pub fn is_control(&self, id: u32) -> bool {
        both!(self, t => t.is_control(id))
    }
    /// Whether the first piece of a decoded sequence loses one leading space (SentencePiece
    /// models with a dummy prefix).
    fn strips_first_space(&self) -> bool {
        match self {
            Self::Spm(t) => t.add_space_prefix(),
            Self::Bpe(_) => false,
        }
    }
}

/// Decodes token by token, emitting only complete UTF-8: a character split over tokens is
/// held back until its last byte arrives. Everything `push` returns plus `finish` equals
/// `decode` of all the ids pushed (invalid bytes become U+FFFD at the same places).
#[derive(Clone)]
pub struct StreamDecoder<'a> {
    tok: &'a TextTokenizer,
    utf8: Utf8Stream,
    strip_space: bool,
    special: bool,
}

impl<'a> StreamDecoder<'a> {
    /// Decodes a whole sequence exactly as `TextTokenizer::decode` (control tokens hidden).
    pub fn new(tok: &'a TextTokenizer) -> Self {
        Self {
            tok,
            utf8: Utf8Stream::default(),
            strip_space: tok.strips_first_space(),
            special: false,
        }
    }

    /// For tokens that continue a prompt (generation): the first piece keeps its leading
    /// space even for models with a dummy prefix.
    pub fn continuing(tok: &'a TextTokenizer) -> Self {
        Self {
            strip_space: false,
            ..Self::new(tok)
        }
    }

    /// Writes control tokens out instead of hiding them.
    pub fn with_special(mut self, special: bool) -> Self {
        self.special = special;
        self
    }

    /// The text completed by token `id` (often empty while a character is incomplete).
    pub fn push(&mut self, id: u32) -> Result<String> {
        let p = self.tok.piece(id, self.special)?;
        let p = match (self.strip_space, p.strip_prefix(b" ")) {
            (true, Some(rest)) => rest,
            _ => &p[..],
        };
        self.strip_space = false;
        Ok(self.utf8.push(p))
    }

    /// What is still held back, invalid sequences as U+FFFD (call at the end of a stream).
    pub fn finish(&mut self) -> String {
        self.utf8.finish()
    }
}
