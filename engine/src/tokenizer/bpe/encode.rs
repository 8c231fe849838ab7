//! Text -> ids, as llama.cpp's `tokenize_impl` for BPE vocabularies.

use tokenizers::{Model, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

use super::BpeTokenizer;
use crate::error::{Error, Result};
use crate::tokenizer::meta::{partition, Frag};

fn failed(e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument {
        op: "tokenize",
        detail: e.to_string(),
    }
}

impl BpeTokenizer {
    /// Ids as llama.cpp's `llama_tokenize(text, add_special = add_bos, parse_special = true)`.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        self.encode_with(text, add_bos, true)
    }

    /// `add_special`: BOS (and EOS) as the model's `add_bos_token`/`add_eos_token` say.
    /// `parse_special`: control tokens written in the text become their ids (user-defined
    /// tokens always do, as in llama.cpp). Errors only if the regex engine gives up (its
    /// backtracking limit), which the pre-tokenizers' patterns do not reach on real text.
    pub fn encode_with(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        for frag in partition(
            text,
            &self.specials,
            &self.texts,
            &self.attrs,
            parse_special,
        ) {
            match frag {
                Frag::Text { start, end } => self.merge(&text[start..end], &mut out)?,
                Frag::Token(id) => out.push(id),
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        Ok(out)
    }

    /// One fragment between special tokens: split by the pre-tokenizer's regexes, mapped to
    /// byte characters, each piece merged by rank (or taken whole when it is a token and the
    /// family ignores merges).
    fn merge(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        let mut pts = PreTokenizedString::from(text);
        self.pre_tokenizer.pre_tokenize(&mut pts).map_err(failed)?;
        for (piece, _, _) in pts.get_splits(OffsetReferential::Normalized, OffsetType::None) {
            // Characters without a token are dropped, as llama.cpp drops a symbol none of
            // whose bytes is a token (never the case in a byte-level vocabulary).
            let tokens = self.model.tokenize(piece).map_err(failed)?;
            out.extend(tokens.iter().map(|t| t.id));
        }
        Ok(())
    }
}
