//! Byte-level BPE tokenizers (`tokenizer.ggml.model = gpt2`) against llama.cpp: for each
//! pre-tokenizer's vocabulary-only GGUF (a ~32k vocabulary trained by scripts/bpe_vocab.py, and
//! Llama 3's and Qwen3's real tokenizers), the ids of a hard corpus with and without BOS and
//! special-token parsing, the token pieces and `llama_detokenize`, the end-of-generation and
//! control ids (recorded by scripts/record_bpe_refs.py into tests/data/bpe/refs.json); the
//! streaming decoder at every split; the typed errors of unsupported metadata.

use std::sync::OnceLock;

use webjit_engine::loader::{MetaEntry, MetaValue, ModelHeader, ValueType};
use webjit_engine::tokenizer::text::{StreamDecoder, TextTokenizer};
use webjit_engine::Error;
use webjit_tests::gemma_refs::{read_gguf_header, read_json};
use webjit_tests::require_model;

fn refs() -> &'static serde_json::Value {
    static R: OnceLock<serde_json::Value> = OnceLock::new();
    R.get_or_init(|| read_json("bpe/refs.json"))
}

fn header(gguf: &str) -> ModelHeader {
    read_gguf_header(&require_model(&format!("bpe/{gguf}")))
}

fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an id array: {v}"))
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// Every model of the refs: its tokenizer and recorded cases, in parallel (the two real
/// vocabularies take a moment each to build).
fn with_each_model(check: impl Fn(&str, &TextTokenizer, &serde_json::Value) + Sync) {
    let models = refs()["models"].as_array().expect("models");
    assert!(models.len() >= 7, "refs.json lists {} models", models.len());
    std::thread::scope(|s| {
        for m in models {
            let check = &check;
            s.spawn(move || {
                let name = m["gguf"].as_str().expect("gguf");
                let tok = TextTokenizer::from_gguf(&header(name).metadata)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(matches!(tok, TextTokenizer::Bpe(_)), "{name}: not BPE");
                check(name, &tok, m);
            });
        }
    });
}

#[test]
fn ids_equal_llama_cpp_for_every_pre_tokenizer() {
    with_each_model(|name, tok, m| {
        assert_eq!(
            tok.vocab_size() as u64,
            m["n_vocab"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(tok.bos().map(i64::from), m["bos"].as_i64(), "{name}: bos");
        assert_eq!(tok.eos().map(i64::from), m["eos"].as_i64(), "{name}: eos");
        let mut n = 0;
        for case in m["cases"].as_array().expect("cases") {
            let text = case["text"].as_str().expect("text");
            for (key, bos, special) in [
                ("nobos_plain", false, false),
                ("nobos_special", false, true),
                ("bos_plain", true, false),
                ("bos_special", true, true),
            ] {
                let want = ids_of(&case["ids"][key]);
                let got = tok
                    .encode_with(text, bos, special)
                    .unwrap_or_else(|e| panic!("{name} {text:?}: {e}"));
                assert_eq!(got, want, "{name} {key}: {text:?}");
                n += 1;
            }
        }
        assert!(n >= 160, "{name}: only {n} cases");
    });
}

#[test]
fn decode_equals_llama_cpp_pieces_and_detokenize() {
    with_each_model(|name, tok, m| {
        let TextTokenizer::Bpe(bpe) = tok else {
            unreachable!()
        };
        for case in m["cases"].as_array().expect("cases") {
            let text = case["text"].as_str().expect("text");
            let ids = ids_of(&case["ids"]["nobos_special"]);
            for (special, pieces, detok) in [
                (false, "pieces_hex", "detok_hex"),
                (true, "pieces_special_hex", "detok_special_hex"),
            ] {
                let want = hex(case[pieces].as_str().expect("hex"));
                assert_eq!(
                    tok.decode_bytes(&ids, special).expect("decode"),
                    want,
                    "{name} pieces (special {special}): {text:?}"
                );
                let want = hex(case[detok].as_str().expect("hex"));
                assert_eq!(
                    bpe.detokenize(&ids, special).expect("detokenize"),
                    want,
                    "{name} detokenize (special {special}): {text:?}"
                );
            }
            // With special tokens written out, the pieces give the text back.
            assert_eq!(
                tok.decode_with(&ids, true).expect("decode"),
                text,
                "{name}: round trip"
            );
        }
    });
}

#[test]
fn eog_and_control_ids_equal_llama_cpp() {
    with_each_model(|name, tok, m| {
        assert_eq!(tok.eog_ids(), ids_of(&m["eog"]), "{name}: eog ids");
        let control: Vec<u32> = (0..tok.vocab_size() as u32)
            .filter(|&i| tok.is_control(i))
            .collect();
        assert_eq!(control, ids_of(&m["control"]), "{name}: control ids");
    });
}

/// Pushing ids one at a time gives the whole decode, whatever the splits of characters over
/// tokens (byte-level tokens often end inside a character).
#[test]
fn streaming_decode_equals_whole_decode_at_every_split() {
    with_each_model(|name, tok, m| {
        for case in m["cases"].as_array().expect("cases") {
            let ids = ids_of(&case["ids"]["nobos_special"]);
            for special in [false, true] {
                let whole = tok.decode_with(&ids, special).expect("decode");
                let mut d = StreamDecoder::new(tok).with_special(special);
                let mut got = String::new();
                for (k, &id) in ids.iter().enumerate() {
                    let part = d.push(id).expect("push");
                    got.push_str(&part);
                    assert!(
                        whole.starts_with(&got),
                        "{name}: after {k} ids {got:?} is no prefix of {whole:?}"
                    );
                }
                got.push_str(&d.finish());
                assert_eq!(got, whole, "{name} (special {special})");
            }
        }
        // Ids chosen to split characters: the bytes of a 4-byte emoji one token each.
        let emoji = tok.encode_with("😀", false, false).expect("encode");
        let mut d = StreamDecoder::new(tok);
        let parts: Vec<String> = emoji.iter().map(|&i| d.push(i).expect("push")).collect();
        assert_eq!(parts.concat() + &d.finish(), "😀", "{name}");
    });
}

fn str_entry(key: &str, v: &str) -> MetaEntry {
    MetaEntry {
        key: key.into(),
        ty: ValueType::Str,
        value: MetaValue::Str(v.into()),
    }
}

fn with_replaced(meta: &[MetaEntry], key: &str, value: Option<&str>) -> Vec<MetaEntry> {
    let mut m: Vec<MetaEntry> = meta.iter().filter(|e| e.key != key).cloned().collect();
    if let Some(v) = value {
        m.push(str_entry(key, v));
    }
    m
}

#[test]
fn unsupported_metadata_gives_typed_errors() {
    let meta = header("bpe-qwen2.gguf").metadata;
    let err = |m: &[MetaEntry]| match TextTokenizer::from_gguf(m) {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    };

    let e = err(&with_replaced(&meta, "tokenizer.ggml.pre", Some("klingon")));
    match &e {
        Error::Tokenizer { key, detail } => {
            assert_eq!(key, "tokenizer.ggml.pre");
            for want in [
                "klingon",
                "llama-bpe",
                "qwen2",
                "smollm",
                "gpt-2",
                "default",
            ] {
                assert!(detail.contains(want), "{detail:?} lacks {want}");
            }
        }
        other => panic!("unknown pre: {other:?}"),
    }
    assert_eq!(e.code(), "BAD_TOKENIZER");

    let e = err(&with_replaced(&meta, "tokenizer.ggml.model", None));
    match &e {
        Error::Tokenizer { key, detail } => {
            assert_eq!(key, "tokenizer.ggml.model");
            assert!(
                detail.contains("missing") && detail.contains("gpt2"),
                "{detail}"
            );
            assert!(detail.contains("llama"), "{detail}");
        }
        other => panic!("missing model: {other:?}"),
    }

    let e = err(&with_replaced(&meta, "tokenizer.ggml.model", Some("t5")));
    match &e {
        Error::Tokenizer { detail, .. } => {
            assert!(
                detail.contains("`t5`") && detail.contains("gpt2"),
                "{detail}"
            )
        }
        other => panic!("t5: {other:?}"),
    }

    // A missing pre-tokenizer is llama.cpp's "default" (it warns), not an error.
    let tok = TextTokenizer::from_gguf(&with_replaced(&meta, "tokenizer.ggml.pre", None))
        .expect("no pre");
    let TextTokenizer::Bpe(bpe) = tok else {
        panic!("not BPE")
    };
    assert_eq!(bpe.pre(), "default");
}

/// SentencePiece models go through the same type: Gemma 3's vocabulary picks SPM and gives
/// llama.cpp's recorded ids (scripts/record_gemma_refs.py) and their decode.
#[test]
fn sentencepiece_models_go_through_text_tokenizer() {
    use webjit_tests::gemma_refs::gemma_header;
    let tok = TextTokenizer::from_gguf(&gemma_header().metadata).expect("gemma tokenizer");
    assert!(matches!(tok, TextTokenizer::Spm(_)), "gemma: not SPM");
    assert_eq!(tok.model(), "llama");
    let toks = read_json("gemma/tokenizer.json");
    let texts = toks["texts"].as_array().expect("texts");
    assert!(texts.len() >= 20, "{} gemma cases", texts.len());
    for t in texts {
        let text = t["text"].as_str().expect("text");
        let want = ids_of(&t["ids"]);
        assert_eq!(tok.encode(text, true).expect("encode"), want, "{text:?}");
        let whole = tok.decode(&want).expect("decode");
        let mut d = StreamDecoder::new(&tok);
        let mut got = String::new();
        for &id in &want {
            got.push_str(&d.push(id).expect("push"));
        }
        got.push_str(&d.finish());
        assert_eq!(got, whole, "{text:?}");
    }
}
