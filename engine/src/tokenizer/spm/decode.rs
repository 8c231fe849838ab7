//! Ids -> text (llama.cpp's `token_to_piece` / `llama_detokenize`), a streaming decoder that
//! only emits complete UTF-8, and Gemma's chat template.

use std::borrow::Cow;

use super::SpmTokenizer;
use crate::error::Result;
use crate::tokenizer::meta;

impl SpmTokenizer {
    /// The bytes of one token (`meta::piece`); normal tokens turn U+2581 back into spaces.
    pub fn piece(&self, id: u32, special: bool) -> Result<Cow<'_, [u8]>> {
        meta::piece(&self.texts, &self.attrs, id, special, |text| {
            if text.contains('\u{2581}') {
                Cow::Owned(text.replace('\u{2581}', " ").into_bytes())
            } else {
                Cow::Borrowed(text.as_bytes())
            }
        })
    }

    /// llama.cpp's `llama_detokenize(ids, remove_special = false, unparse_special = special)`:
    /// the pieces concatenated, less one leading space of the first piece when the model adds
    /// a dummy prefix (not Gemma 3). Raw bytes: a sequence may end inside a character.
    pub fn decode_bytes(&self, ids: &[u32], special: bool) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut strip = self.add_space_prefix;
        for &id in ids {
            let p = self.piece(id, special)?;
            let p = if strip { strip_space(&p) } else { &p[..] };
            strip = false;
            out.extend_from_slice(p);
        }
        Ok(out)
    }

    /// Text of `ids` with control tokens hidden; invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.decode_with(ids, false)
    }

    /// As `decode`, with control tokens written out when `special`.
    pub fn decode_with(&self, ids: &[u32], special: bool) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.decode_bytes(ids, special)?).into_owned())
    }
}

fn strip_space(p: &[u8]) -> &[u8] {
    p.strip_prefix(b" ").unwrap_or(p)
}

/// Bytes in, complete UTF-8 out: the part of `text::StreamDecoder` that needs no tokenizer (owners
/// of a tokenizer that cannot lend it, such as the web facade, feed it `piece` bytes).
#[derive(Clone, Debug, Default)]
pub struct Utf8Stream {
    /// Bytes of an incomplete trailing UTF-8 sequence (at most 3).
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// The text completed by `bytes` (a trailing incomplete character is held back).
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        self.drain()
    }

    /// What is still held back, invalid sequences as U+FFFD (call at the end of a stream).
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }

    /// Emits every complete character; keeps only a trailing sequence that may still be
    /// completed. Invalid sequences become one U+FFFD each, as `String::from_utf8_lossy`.
    fn drain(&mut self) -> String {
        let mut out = String::new();
        let mut i = 0;
        while i < self.pending.len() {
            match std::str::from_utf8(&self.pending[i..]) {
                Ok(s) => {
                    out.push_str(s);
                    i = self.pending.len();
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(
                        std::str::from_utf8(&self.pending[i..i + valid]).unwrap_or_default(),
                    );
                    i += valid;
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{FFFD}');
                            i += n;
                        }
                        None => break,
                    }
                }
            }
        }
        self.pending.drain(..i);
        out
    }
}
