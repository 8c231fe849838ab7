//! WordPiece tokenization from a `tokenizer.json`, with sentence-transformers' truncation.
//!
//! all-MiniLM-L6-v2's `tokenizer.json` turns on padding and truncation at 128, while
//! sentence-transformers truncates at `max_seq_length` (256, from sentence_bert_config.json)
//! and pads per batch. We follow sentence-transformers: truncation at the model's max length,
//! no padding here (the model pads each batch to its longest sentence).

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{Error, Result};

pub struct WordPiece {
    inner: Tokenizer,
    pub max_len: usize,
}

impl WordPiece {
    /// `json`: the bytes of tokenizer.json; `max_len`: tokens kept, specials included.
    pub fn from_json(json: &[u8], max_len: usize) -> Result<Self> {
        let mut inner = Tokenizer::from_bytes(json).map_err(|e| Error::BadModel {
            detail: format!("tokenizer.json: {e}"),
        })?;
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| Error::BadModel {
                detail: format!("tokenizer truncation: {e}"),
            })?;
        Ok(Self { inner, max_len })
    }

    fn encoding(&self, text: &str) -> Result<tokenizers::Encoding> {
        self.inner
            .encode(text, true)
            .map_err(|e| Error::InvalidArgument {
                op: "tokenize",
                detail: e.to_string(),
            })
    }

    /// Whether `text` has more tokens than `max_len` (so `encode` cuts it).
    pub fn is_truncated(&self, text: &str) -> Result<bool> {
        Ok(!self.encoding(text)?.get_overflowing().is_empty())
    }

    /// Token ids with [CLS] ... [SEP], truncated to `max_len`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.encoding(text)?.get_ids().to_vec())
    }
}
