//! Plain reference for SentencePiece merging: the quadratic loop that the heap-based tokenizer
//! must agree with, and a small vocabulary builder for property tests.

use std::collections::HashMap;

use webjit_engine::loader::{MetaArray, MetaEntry, MetaValue, ValueType};

/// Merges an already escaped fragment (spaces as U+2581): start from single characters and,
/// while any adjacent pair concatenates to a token, merge the pair with the highest score
/// (leftmost among equal scores). Symbols that are not tokens become `byte_id(b)` per byte.
/// `vocab`: text -> (id, score).
pub fn spm_merge(
    text: &str,
    vocab: &HashMap<String, (u32, f32)>,
    byte_id: impl Fn(u8) -> u32,
) -> Vec<u32> {
    let mut syms: Vec<String> = text.chars().map(String::from).collect();
    loop {
        let mut best: Option<(usize, f32)> = None;
        for i in 0..syms.len().saturating_sub(1) {
            let cat = format!("{}{}", syms[i], syms[i + 1]);
            if let Some(&(_, score)) = vocab.get(&cat) {
                if best.is_none_or(|(_, s)| score > s) {
                    best = Some((i, score));
                }
            }
        }
        let Some((i, _)) = best else { break };
        let right = syms.remove(i + 1);
        syms[i].push_str(&right);
    }
    let mut out = Vec::new();
    for s in &syms {
        match vocab.get(s) {
            Some(&(id, _)) => out.push(id),
            None => out.extend(s.bytes().map(&byte_id)),
        }
    }
    out
}

/// GGUF token types (llama.cpp's `llama_token_type`).
pub const TYPE_NORMAL: i32 = 1;
pub const TYPE_UNKNOWN: i32 = 2;
pub const TYPE_CONTROL: i32 = 3;
pub const TYPE_BYTE: i32 = 6;

/// Tokenizer metadata for a vocabulary given as (text, score, type), the way a GGUF file
/// stores it, plus `extra` entries (special ids, flags).
pub fn spm_metadata(tokens: &[(String, f32, i32)], extra: Vec<MetaEntry>) -> Vec<MetaEntry> {
    let mut bytes = Vec::new();
    let mut ends = Vec::new();
    for (t, _, _) in tokens {
        bytes.extend_from_slice(t.as_bytes());
        ends.push(bytes.len());
    }
    let scores: Vec<u8> = tokens
        .iter()
        .flat_map(|(_, s, _)| s.to_le_bytes())
        .collect();
    let types: Vec<u8> = tokens
        .iter()
        .flat_map(|(_, _, t)| t.to_le_bytes())
        .collect();
    let mut meta = vec![
        entry(
            "tokenizer.ggml.model",
            ValueType::Str,
            MetaValue::Str("llama".into()),
        ),
        entry(
            "tokenizer.ggml.tokens",
            ValueType::Array,
            MetaValue::Array(MetaArray::Str { bytes, ends }),
        ),
        entry(
            "tokenizer.ggml.scores",
            ValueType::Array,
            MetaValue::Array(MetaArray::Fixed {
                ty: ValueType::F32,
                raw: scores,
            }),
        ),
        entry(
            "tokenizer.ggml.token_type",
            ValueType::Array,
            MetaValue::Array(MetaArray::Fixed {
                ty: ValueType::I32,
                raw: types,
            }),
        ),
    ];
    meta.extend(extra);
    meta
}

pub fn entry(key: &str, ty: ValueType, value: MetaValue) -> MetaEntry {
    MetaEntry {
        key: key.into(),
        ty,
        value,
    }
}

/// A valid SPM vocabulary: `<unk>`, `<s>`, `</s>`, the 256 byte tokens, then `pieces` with
/// their scores. Ids: unk 0, bos 1, eos 2 (llama.cpp's defaults), bytes 3..259.
pub fn spm_vocab(pieces: &[(String, f32)]) -> Vec<(String, f32, i32)> {
    let mut v = vec![
        ("<unk>".to_string(), 0.0, TYPE_UNKNOWN),
        ("<s>".to_string(), 0.0, TYPE_CONTROL),
        ("</s>".to_string(), 0.0, TYPE_CONTROL),
    ];
    for b in 0..=255u8 {
        v.push((format!("<0x{b:02X}>"), 0.0, TYPE_BYTE));
    }
    for (p, s) in pieces {
        v.push((p.clone(), *s, TYPE_NORMAL));
    }
    v
}
