//! What the SentencePiece and byte-level BPE tokenizers read alike from GGUF metadata: typed
//! key lookups, the token list and types, llama.cpp's token attributes, end-of-generation
//! detection, and cutting special tokens out of text (`tokenizer_st_partition`).

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::loader::{MetaArray, MetaEntry, MetaValue, ValueType};

/// llama.cpp's `llama_token_attr` bits (only those the tokenizers act on).
pub(crate) mod attr {
    pub const UNKNOWN: u8 = 1 << 0;
    pub const UNUSED: u8 = 1 << 1;
    pub const NORMAL: u8 = 1 << 2;
    pub const CONTROL: u8 = 1 << 3;
    pub const USER_DEFINED: u8 = 1 << 4;
    pub const BYTE: u8 = 1 << 5;
}

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
pub(crate) fn attr_of_type(t: i32) -> u8 {
    match t {
        1 => attr::NORMAL,
        2 => attr::UNKNOWN,
        3 => attr::CONTROL,
        4 => attr::USER_DEFINED,
        5 => attr::UNUSED,
        6 => attr::BYTE,
        // 0 (undefined) and anything else: decoded as nothing, never matched as special.
        _ => 0,
    }
}

/// Token texts that llama.cpp treats as end-of-generation (and forces to CONTROL) whatever
/// their stored type: its text-based auto-detection in `llama_vocab::impl::load`.
pub(crate) const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>",
    "[e~[",
];

/// Fill-in-the-middle tokens llama.cpp finds by text when their `tokenizer.ggml.fim_*_token_id`
/// key is absent (the first text of each group present in the vocabulary) and forces to
/// CONTROL; the pad, repository and file-separator ones also end generation.
const FIM_TEXTS: &[(&str, bool, &[&str])] = &[
    (
        "tokenizer.ggml.fim_pre_token_id",
        false,
        &[
            "<|fim_prefix|>",
            "<fim-prefix>",
            "<fim_prefix>",
            "<\u{ff5c}fim\u{2581}begin\u{ff5c}>",
            "<PRE>",
            "\u{2581}<PRE>",
            "<|code_prefix|>",
            "<|prefix|>",
        ],
    ),
    (
        "tokenizer.ggml.fim_suf_token_id",
        false,
        &[
            "<|fim_suffix|>",
            "<fim-suffix>",
            "<fim_suffix>",
            "<\u{ff5c}fim\u{2581}hole\u{ff5c}>",
            "<SUF>",
            "\u{2581}<SUF>",
            "<|code_suffix|>",
            "<|suffix|>",
        ],
    ),
    (
        "tokenizer.ggml.fim_mid_token_id",
        false,
        &[
            "<|fim_middle|>",
            "<fim-middle>",
            "<fim_middle>",
            "<\u{ff5c}fim\u{2581}end\u{ff5c}>",
            "<MID>",
            "\u{2581}<MID>",
            "<|code_middle|>",
            "<|middle|>",
        ],
    ),
    (
        "tokenizer.ggml.fim_pad_token_id",
        true,
        &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    ),
    (
        "tokenizer.ggml.fim_rep_token_id",
        true,
        &[
            "<|fim_repo|>",
            "<|repo_name|>",
            "<fim-repo>",
            "<REPO>",
            "<reponame>",
        ],
    ),
    ("tokenizer.ggml.fim_sep_token_id", true, &["<|file_sep|>"]),
];

/// Vocabularies above this are refused: ids are i32 in llama.cpp and the GPU side.
pub(crate) const MAX_VOCAB: usize = 1 << 24;

pub(crate) const KEY_MODEL: &str = "tokenizer.ggml.model";
pub(crate) const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
pub(crate) const KEY_TYPES: &str = "tokenizer.ggml.token_type";

pub(crate) fn bad(key: impl Into<String>, detail: impl Into<String>) -> Error {
    Error::Tokenizer {
        key: key.into(),
        detail: detail.into(),
    }
}

pub(crate) fn find<'a>(meta: &'a [MetaEntry], key: &str) -> Option<&'a MetaEntry> {
    meta.iter().find(|e| e.key == key)
}

pub(crate) fn get_bool(meta: &[MetaEntry], key: &str) -> Result<Option<bool>> {
    match find(meta, key).map(|e| &e.value) {
        None => Ok(None),
        Some(MetaValue::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(bad(key, format!("expected a bool, found {v:?}"))),
    }
}

pub(crate) fn get_str<'a>(meta: &'a [MetaEntry], key: &str) -> Result<Option<&'a str>> {
    match find(meta, key).map(|e| &e.value) {
        None => Ok(None),
        Some(MetaValue::Str(s)) => Ok(Some(s.as_str())),
        Some(v) => Err(bad(key, format!("expected a string, found {v:?}"))),
    }
}

/// A token id from metadata; must lie in the vocabulary.
pub(crate) fn get_id(meta: &[MetaEntry], key: &str, n_vocab: usize) -> Result<Option<u32>> {
    let v = match find(meta, key).map(|e| &e.value) {
        None => return Ok(None),
        Some(MetaValue::Uint(u)) => *u,
        Some(MetaValue::Int(i)) if *i >= 0 => *i as u64,
        Some(v) => return Err(bad(key, format!("expected a token id, found {v:?}"))),
    };
    if v >= n_vocab as u64 {
        return Err(bad(
            key,
            format!("token id {v} is outside the vocabulary of {n_vocab} tokens"),
        ));
    }
    Ok(Some(v as u32))
}

/// The little-endian 4-byte elements of a fixed-size array, checked to hold `n` of them.
pub(crate) fn fixed4<'a>(
    e: &'a MetaEntry,
    n: usize,
    want: &[ValueType],
) -> Result<(ValueType, &'a [u8])> {
    let MetaValue::Array(MetaArray::Fixed { ty, raw }) = &e.value else {
        return Err(bad(&e.key, "expected an array of numbers"));
    };
    if !want.contains(ty) {
        return Err(bad(
            &e.key,
            format!("element type {ty:?}, expected one of {want:?}"),
        ));
    }
    let len = raw.len() / 4;
    if len != n {
        return Err(bad(
            &e.key,
            format!("{len} elements for a vocabulary of {n} tokens"),
        ));
    }
    Ok((*ty, raw))
}

pub(crate) fn word(raw: &[u8], i: usize) -> [u8; 4] {
    [raw[4 * i], raw[4 * i + 1], raw[4 * i + 2], raw[4 * i + 3]]
}

/// The string array under `key` (never empty, at most `MAX_VOCAB` elements).
pub(crate) fn str_array<'a>(meta: &'a [MetaEntry], key: &str) -> Result<&'a MetaArray> {
    let e = find(meta, key).ok_or_else(|| bad(key, "missing"))?;
    let MetaValue::Array(arr @ MetaArray::Str { .. }) = &e.value else {
        return Err(bad(key, "expected an array of strings"));
    };
    Ok(arr)
}

/// Token texts (`tokenizer.ggml.tokens`, UTF-8, no duplicates; an empty text is renamed
/// `[EMPTY_i]` as llama.cpp does) and the text -> id map.
pub(crate) fn token_texts(meta: &[MetaEntry]) -> Result<(Vec<String>, HashMap<String, u32>)> {
    let arr = str_array(meta, KEY_TOKENS)?;
    let n = arr.len();
    if n == 0 || n > MAX_VOCAB {
        return Err(bad(
            KEY_TOKENS,
            format!("{n} tokens (expected 1 ..= {MAX_VOCAB})"),
        ));
    }
    let mut texts = Vec::with_capacity(n);
    let mut to_id = HashMap::with_capacity(n);
    for i in 0..n {
        let key = || format!("{KEY_TOKENS}[{i}]");
        let bytes = arr.str_at(i).ok_or_else(|| bad(key(), "missing string"))?;
        let mut text = std::str::from_utf8(bytes)
            .map_err(|e| bad(key(), format!("not valid UTF-8: {e}")))?
            .to_string();
        if text.is_empty() {
            // As llama.cpp: an empty token can never match, but keeps its id.
            text = format!("[EMPTY_{i}]");
        }
        if let Some(prev) = to_id.insert(text.clone(), i as u32) {
            return Err(bad(
                key(),
                format!("duplicate token text {text:?} (also id {prev})"),
            ));
        }
        texts.push(text);
    }
    Ok((texts, to_id))
}

/// `attr` bits of every token from `tokenizer.ggml.token_type` (all normal when absent).
pub(crate) fn token_attrs(meta: &[MetaEntry], n: usize) -> Result<Vec<u8>> {
    Ok(match find(meta, KEY_TYPES) {
        None => vec![attr::NORMAL; n],
        Some(e) => {
            let (_, raw) = fixed4(e, n, &[ValueType::I32])?;
            (0..n)
                .map(|i| attr_of_type(i32::from_le_bytes(word(raw, i))))
                .collect()
        }
    })
}

/// The byte of a `<0xNN>` token (two hex digits, either case).
pub(crate) fn byte_value(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// Sorted end-of-generation ids as llama.cpp computes them: eos, eot, eom (`declared`), the
/// FIM pad / repository / file-separator tokens and every `EOG_TEXTS` token; text-detected
/// tokens are forced to CONTROL in `attrs`. Also llama.cpp's two exceptions: `<|end|>` is no
/// EOG (and becomes user-defined) beside `<|return|>` + `<|call|>` or `<|calls|>` +
/// `<|flush|>`, and `</s>` is a normal token beside `<|tool_response>`.
pub(crate) fn eog_ids(
    meta: &[MetaEntry],
    to_id: &HashMap<String, u32>,
    attrs: &mut [u8],
    declared: &[Option<u32>],
) -> Result<Vec<u32>> {
    let mut eog: Vec<u32> = Vec::new();
    for &(key, ends, texts) in FIM_TEXTS {
        let id = match get_id(meta, key, attrs.len())? {
            Some(id) => id,
            None => match texts.iter().find_map(|t| to_id.get(*t)) {
                Some(&id) => {
                    attrs[id as usize] |= attr::CONTROL;
                    id
                }
                None => continue,
            },
        };
        if ends {
            eog.push(id);
        }
    }
    for t in EOG_TEXTS {
        if let Some(&id) = to_id.get(*t) {
            eog.push(id);
            attrs[id as usize] |= attr::CONTROL;
        }
    }
    let has = |eog: &[u32], t: &str| to_id.get(t).is_some_and(|id| eog.contains(id));
    if has(&eog, "<|end|>")
        && ((has(&eog, "<|return|>") && has(&eog, "<|call|>"))
            || (has(&eog, "<|calls|>") && has(&eog, "<|flush|>")))
    {
        let end = to_id["<|end|>"];
        eog.retain(|&i| i != end);
        attrs[end as usize] = attr::USER_DEFINED;
    }
    if has(&eog, "</s>") && has(&eog, "<|tool_response>") {
        let s = to_id["</s>"];
        eog.retain(|&i| i != s);
        attrs[s as usize] = attr::NORMAL;
    }
    eog.extend(declared.iter().flatten());
    eog.sort_unstable();
    eog.dedup();
    Ok(eog)
}

/// Ids of the tokens matched in text (control, user-defined, unknown), longest text first
/// (llama.cpp sorts by length only; ties keep id order here).
pub(crate) fn special_ids(texts: &[String], attrs: &[u8]) -> Vec<u32> {
    let mask = attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN;
    let mut specials: Vec<u32> = (0..texts.len() as u32)
        .filter(|&i| attrs[i as usize] & mask != 0)
        .collect();
    specials.sort_by_key(|&i| std::cmp::Reverse(texts[i as usize].len()));
    specials
}

/// A piece of the input after special-token partitioning: raw text (byte range of the input)
/// or a special token found in it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Frag {
    Text { start: usize, end: usize },
    Token(u32),
}

/// Cuts every occurrence of each special token out of the text fragments, longest token text
/// first (llama.cpp's `tokenizer_st_partition`; its lstrip/rstrip attributes are set only for
/// a few other model families and are not modelled). Control and unknown tokens are matched
/// only when `parse_special`; user-defined tokens always are.
pub(crate) fn partition(
    text: &str,
    specials: &[u32],
    texts: &[String],
    attrs: &[u8],
    parse_special: bool,
) -> Vec<Frag> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut frags = vec![Frag::Text {
        start: 0,
        end: text.len(),
    }];
    let mut next = Vec::new();
    for &id in specials {
        if !parse_special && attrs[id as usize] & (attr::CONTROL | attr::UNKNOWN) != 0 {
            continue;
        }
        // Never empty: empty token texts were renamed `[EMPTY_i]`.
        let pat = texts[id as usize].as_str();
        if !text.contains(pat) {
            continue;
        }
        next.clear();
        for &f in &frags {
            let Frag::Text { start, end } = f else {
                next.push(f);
                continue;
            };
            let mut pos = start;
            while let Some(m) = text[pos..end].find(pat) {
                let m = pos + m;
                if m > pos {
                    next.push(Frag::Text { start: pos, end: m });
                }
                next.push(Frag::Token(id));
                pos = m + pat.len();
            }
            if pos < end {
                next.push(Frag::Text { start: pos, end });
            }
        }
        std::mem::swap(&mut frags, &mut next);
    }
    frags
}

/// The bytes of token `id`, as llama.cpp's `token_to_piece(id, lstrip = 0, special)`, shared
/// by both tokenizers: control and unknown tokens are empty unless `special`; user-defined
/// tokens are their text verbatim; normal tokens go through `normal` (each vocabulary's own
/// spelling of bytes); `<0xNN>` byte tokens are one byte (so a piece need not be valid UTF-8 on
/// its own); unused and undefined tokens are empty.
pub(crate) fn piece<'a>(
    texts: &'a [String],
    attrs: &[u8],
    id: u32,
    special: bool,
    normal: impl FnOnce(&'a str) -> std::borrow::Cow<'a, [u8]>,
) -> crate::error::Result<std::borrow::Cow<'a, [u8]>> {
    use std::borrow::Cow;
    let (Some(&a), Some(text)) = (attrs.get(id as usize), texts.get(id as usize)) else {
        return Err(crate::error::Error::InvalidArgument {
            op: "detokenize",
            detail: format!(
                "token id {id} is outside the vocabulary of {} tokens",
                texts.len()
            ),
        });
    };
    let verbatim = attr::CONTROL | attr::UNKNOWN;
    Ok(if a & verbatim != 0 && !special {
        Cow::Borrowed(&[][..])
    } else if a & (verbatim | attr::USER_DEFINED) != 0 {
        Cow::Borrowed(text.as_bytes())
    } else if a & attr::NORMAL != 0 {
        normal(text)
    } else if a & attr::BYTE != 0 {
        // Checked when the vocabulary was built.
        Cow::Owned(byte_value(text).into_iter().collect())
    } else {
        Cow::Borrowed(&[][..])
    })
}
