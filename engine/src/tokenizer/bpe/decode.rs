//! Ids -> bytes, as llama.cpp's `token_to_piece` and `llama_detokenize` for BPE vocabularies.

use std::borrow::Cow;

use super::BpeTokenizer;
use crate::error::Result;
use crate::tokenizer::meta;

impl BpeTokenizer {
    /// The bytes of one token (`meta::piece`); normal tokens map their GPT-2 byte characters
    /// back to bytes.
    pub fn piece(&self, id: u32, special: bool) -> Result<Cow<'_, [u8]>> {
        meta::piece(&self.texts, &self.attrs, id, special, |text| {
            Cow::Owned(self.unmap(text))
        })
    }

    /// GPT-2 byte characters back to bytes. A character outside the table becomes
    /// `[UNK_BYTE_0x<its UTF-8 in hex><the token text>]`, as llama.cpp's `llama_decode_text`.
    fn unmap(&self, text: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len());
        for c in text.chars() {
            match self.char_bytes.get(&c) {
                Some(&b) => out.push(b),
                None => {
                    out.extend_from_slice(b"[UNK_BYTE_0x");
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.extend_from_slice(format!("{b:02x}").as_bytes());
                    }
                    out.extend_from_slice(text.as_bytes());
                    out.push(b']');
                }
            }
        }
        out
    }

    /// The pieces of `ids` concatenated (what llama.cpp prints while generating). Raw bytes:
    /// a sequence may end inside a character.
    pub fn decode_bytes(&self, ids: &[u32], special: bool) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for &id in ids {
            out.extend_from_slice(&self.piece(id, special)?);
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

    /// llama.cpp's `llama_detokenize(ids, remove_special = false, unparse_special = special)`:
    /// the pieces, then, for the families whose tokenizer cleans up spaces (Llama 3, GPT-2;
    /// not Qwen2 or SmolLM), its three passes: no space before `?!.,`, `" ' "` -> `"'"`, no
    /// space before `'s 'm 're 've`. Not streamable (a space waits for what follows), so
    /// generation prints pieces as llama.cpp does.
    pub fn detokenize(&self, ids: &[u32], special: bool) -> Result<Vec<u8>> {
        let raw = self.decode_bytes(ids, special)?;
        Ok(if self.clean_spaces {
            clean_spaces(raw)
        } else {
            raw
        })
    }
}

/// llama.cpp's three clean-up passes over the detokenized bytes, in place as it runs them
/// (a pass reads bytes its own earlier steps may have changed).
fn clean_spaces(mut t: Vec<u8>) -> Vec<u8> {
    // " ?", " !", " .", " ,": drop the space.
    let n = t.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = t[i];
        if t[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            total -= 1;
        }
        t[total] = x;
        total += 1;
    }
    t.truncate(total);
    // " ' ": drop both spaces (the second is zeroed, then skipped).
    let n = t.len();
    let mut total = usize::from(n > 0);
    let mut i = 1;
    while i < n {
        let x = t[i];
        if x == b'\'' && i + 1 < n && t[i - 1] == b' ' && t[i + 1] == b' ' {
            total -= 1;
            i += 1;
            t[i] = 0;
        }
        t[total] = x;
        total += 1;
        i += 1;
    }
    t.truncate(total);
    // " 's", " 'm", " 're", " 've": drop the space (" 't", " 'd", " 'll" keep it).
    let n = t.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = t[i];
        if t[i - 1] == b' ' && x == b'\'' && i + 1 < n {
            let x1 = t[i + 1];
            // 0 past the end: no contraction then.
            let x2 = if i + 2 < n { t[i + 2] } else { 0 };
            if matches!(x1, b's' | b'm') || (matches!(x1, b'r' | b'v') && x2 == b'e') {
                total -= 1;
            }
        }
        t[total] = x;
        total += 1;
    }
    t.truncate(total);
    t
}
