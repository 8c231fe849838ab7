//! Pre-tokenizers by `tokenizer.ggml.pre`: the regexes llama.cpp splits text with before the
//! merges (`llm_tokenizer_bpe` in `src/llama-vocab.cpp`) and the per-name settings it attaches
//! to them, run here by the `tokenizers` crate's Split pre-tokenizer (fancy-regex) followed by
//! its byte-level mapping.
//!
//! llama.cpp runs the Llama 3, Qwen2 and GPT-2 regexes through hand-written matchers in
//! `unicode.cpp` rather than a regex engine. They agree with the regexes, including the
//! backtracking of `\s+(?!\S)` (a run of spaces before a word leaves its last space to the
//! word); its GPT-2 matcher also ends with llama.cpp's `\s+` fallback, written into `GPT2`.
//! Unicode classes come from the regex crate's tables, llama.cpp's from its own: code points
//! assigned in one Unicode version and not the other may split differently.

use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::SplitDelimiterBehavior;

use crate::error::{Error, Result};

/// llama.cpp's Llama 3 regex with the case-insensitive contractions spelled out.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2: as Llama 3 with single digits.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// GPT-2's regex (case-sensitive contractions).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// Every digit on its own (SmolLM2 / StarCoder), before GPT-2's regex.
const DIGIT: &str = r"\p{N}";

/// How one family of `pre` names tokenizes (llama.cpp's settings for them).
pub(super) struct PreSpec {
    /// Applied in order: each regex splits the pieces of the previous one.
    pub regexes: &'static [&'static str],
    /// A piece that is a whole token is taken as is, before any merge (Llama 3).
    pub ignore_merges: bool,
    /// `add_bos_token` when the GGUF does not say.
    pub add_bos: bool,
    /// llama.cpp's `clean_spaces` for `llama_detokenize` (" ." -> "." and the like).
    pub clean_spaces: bool,
}

const LLAMA3_NAMES: &[&str] = &[
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "falcon-h1",
    "pixtral",
    "midm-2.0",
    "lfm2",
];
const LLAMA3_REGEX_NAMES: &[&str] = &["dbrx", "smaug-bpe"];
const QWEN2_NAMES: &[&str] = &["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"];
const QWEN2_CLEAN_NAMES: &[&str] = &["stablelm2"];
const SMOLLM_NAMES: &[&str] = &["smollm", "command-r"];
const SMOLLM_CLEAN_NAMES: &[&str] = &["starcoder", "refact", "codeshell", "exaone", "minerva-7b"];
const GPT2_NAMES: &[&str] = &[
    "gpt-2",
    "phi-2",
    "jina-es",
    "jina-de",
    "gigachat",
    "jina-v2-es",
    "jina-v2-de",
    "a.x-4.0",
    "mellum",
    "mpt",
    "olmo",
    "jais",
    "exaone4",
];
const GPT2_RAW_NAMES: &[&str] = &["trillion", "granite-docling"];

/// Every `tokenizer.ggml.pre` value this tokenizer accepts.
pub fn supported() -> Vec<&'static str> {
    let mut v: Vec<&str> = [
        LLAMA3_NAMES,
        LLAMA3_REGEX_NAMES,
        QWEN2_NAMES,
        QWEN2_CLEAN_NAMES,
        SMOLLM_NAMES,
        SMOLLM_CLEAN_NAMES,
        GPT2_NAMES,
        GPT2_RAW_NAMES,
        &["default"],
    ]
    .concat();
    v.sort_unstable();
    v
}

pub(super) fn spec(pre: &str) -> Option<PreSpec> {
    let is = |names: &[&str]| names.contains(&pre);
    let s = |regexes, ignore_merges, add_bos, clean_spaces| PreSpec {
        regexes,
        ignore_merges,
        add_bos,
        clean_spaces,
    };
    Some(if is(LLAMA3_NAMES) {
        s(&[LLAMA3], true, true, true)
    } else if is(LLAMA3_REGEX_NAMES) {
        s(&[LLAMA3], false, false, true)
    } else if is(QWEN2_NAMES) {
        s(&[QWEN2], false, false, false)
    } else if is(QWEN2_CLEAN_NAMES) {
        s(&[QWEN2], false, false, true)
    } else if is(SMOLLM_NAMES) {
        s(&[DIGIT, GPT2], false, false, false)
    } else if is(SMOLLM_CLEAN_NAMES) {
        s(&[DIGIT, GPT2], false, false, true)
    } else if is(GPT2_NAMES) {
        s(&[GPT2], false, false, true)
    } else if is(GPT2_RAW_NAMES) {
        s(&[GPT2], false, false, false)
    } else if pre == "default" {
        // llama.cpp's fallback for BPE vocabularies.
        s(
            &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
            false,
            false,
            true,
        )
    } else {
        return None;
    })
}

/// The Split pre-tokenizers of `spec` followed by the byte-level mapping (no prefix space, no
/// regex of its own).
pub(super) fn build(spec: &PreSpec) -> Result<PreTokenizerWrapper> {
    let mut steps: Vec<PreTokenizerWrapper> = Vec::new();
    for &re in spec.regexes {
        let split = Split::new(
            SplitPattern::Regex(re.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| Error::Unsupported {
            what: format!("pre-tokenizer regex {re:?}: {e}"),
        })?;
        steps.push(split.into());
    }
    steps.push(ByteLevel::new(false, false, false).into());
    Ok(Sequence::new(steps).into())
}

/// GPT-2's byte <-> character table: printable Latin-1 bytes map to themselves, the other 68
/// to U+0100 onwards in byte order.
pub(super) fn byte_chars() -> [char; 256] {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        table[b as usize] = if printable(b) {
            b as char
        } else {
            next += 1;
            char::from_u32(next - 1).unwrap_or('\0')
        };
    }
    table
}
