//! The SentencePiece tokenizer on synthetic vocabularies (no model file needed): the
//! heap-based merge against a quadratic oracle, and hostile metadata.

use std::collections::HashMap;

use webjit_engine::loader::{MetaArray, MetaEntry, MetaValue, ValueType};
use webjit_engine::tokenizer::spm::SpmTokenizer;
use webjit_engine::Error;
use webjit_tests::oracle_spm::{entry, spm_merge, spm_metadata, spm_vocab};
use webjit_tests::Rand;

/// Random vocabularies over a small alphabet (so merges chain and compete, equal scores
/// included) against the quadratic merge oracle.
#[test]
fn spm_merges_match_the_quadratic_oracle() {
    let alphabet = ['a', 'b', 'c', '\u{2581}', 'é'];
    let mut rng = Rand::new(0x59a);
    for round in 0..200 {
        let mut pieces: Vec<(String, f32)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let n_pieces = rng.range(1, 40);
        while pieces.len() < n_pieces {
            let len = rng.range(1, 5);
            let p: String = (0..len)
                .map(|_| alphabet[rng.range(0, alphabet.len())])
                .collect();
            if seen.insert(p.clone()) {
                // Few distinct scores, so ties are common.
                pieces.push((p, -(rng.range(0, 6) as f32)));
            }
        }
        let vocab = spm_vocab(&pieces);
        let meta = spm_metadata(
            &vocab,
            vec![entry(
                "tokenizer.ggml.add_space_prefix",
                ValueType::Bool,
                MetaValue::Bool(false),
            )],
        );
        let tok = SpmTokenizer::from_gguf(&meta).expect("tiny vocab");
        let map: HashMap<String, (u32, f32)> = vocab
            .iter()
            .enumerate()
            .map(|(i, (t, s, _))| (t.clone(), (i as u32, *s)))
            .collect();
        for _ in 0..10 {
            let len = rng.range(0, 24);
            let text: String = (0..len)
                .map(|_| ['a', 'b', 'c', ' ', 'é', 'x'][rng.range(0, 6)])
                .collect();
            let escaped = text.replace(' ', "\u{2581}");
            let want = spm_merge(&escaped, &map, |b| 3 + b as u32);
            let got = tok.encode(&text, false);
            assert_eq!(
                got, want,
                "round {round} (seed {}): text {text:?}, pieces {pieces:?}",
                rng.seed
            );
            // Normal tokens turn U+2581 back into spaces; byte tokens stay raw bytes (a lone
            // U+2581 that formed no token decodes to U+2581, as in llama.cpp).
            let want_text: Vec<u8> = want
                .iter()
                .flat_map(|&id| match id {
                    3..=258 => vec![(id - 3) as u8],
                    _ => vocab[id as usize].0.replace('\u{2581}', " ").into_bytes(),
                })
                .collect();
            assert_eq!(
                tok.decode_bytes(&got, false).expect("decode"),
                want_text,
                "decode of {text:?}"
            );
        }
    }
}

fn tiny() -> Vec<(String, f32, i32)> {
    spm_vocab(&[("ab".into(), -1.0), ("\u{2581}a".into(), -2.0)])
}

fn tiny_err(meta: &[MetaEntry]) -> (String, String) {
    match SpmTokenizer::from_gguf(meta) {
        Err(Error::Tokenizer { key, detail }) => (key, detail),
        Err(e) => panic!("expected a tokenizer error, got {e}"),
        Ok(_) => panic!("hostile metadata was accepted"),
    }
}

fn replace(meta: &mut [MetaEntry], key: &str, value: MetaValue) {
    let e = meta.iter_mut().find(|e| e.key == key).expect("key");
    e.value = value;
}

#[test]
fn hostile_tokenizer_metadata_gives_typed_errors() {
    let good = spm_metadata(&tiny(), vec![]);
    let tok = SpmTokenizer::from_gguf(&good).expect("the base vocabulary is valid");
    assert_eq!(tok.encode("ab a", true)[0], 1);

    // Scores and types that do not cover the vocabulary.
    for key in ["tokenizer.ggml.scores", "tokenizer.ggml.token_type"] {
        let mut m = good.clone();
        let ty = if key.ends_with("scores") {
            ValueType::F32
        } else {
            ValueType::I32
        };
        replace(
            &mut m,
            key,
            MetaValue::Array(MetaArray::Fixed {
                ty,
                raw: vec![0; 4 * (tiny().len() - 1)],
            }),
        );
        let (k, d) = tiny_err(&m);
        assert!(k == key && d.contains("elements"), "{k}: {d}");
    }
    // Scores of the wrong element type, or not an array at all.
    let mut m = good.clone();
    replace(
        &mut m,
        "tokenizer.ggml.scores",
        MetaValue::Array(MetaArray::Fixed {
            ty: ValueType::U8,
            raw: vec![0; tiny().len()],
        }),
    );
    assert_eq!(tiny_err(&m).0, "tokenizer.ggml.scores");
    let mut m = good.clone();
    replace(&mut m, "tokenizer.ggml.tokens", MetaValue::Uint(3));
    assert_eq!(tiny_err(&m).0, "tokenizer.ggml.tokens");

    // A non-UTF-8 token, a duplicate token, a malformed byte token, a NaN score.
    let mut v = tiny();
    let bad_utf8 = {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for (i, (t, _, _)) in v.iter().enumerate() {
            bytes.extend_from_slice(if i == 260 { b"\xff\xfe" } else { t.as_bytes() });
            ends.push(bytes.len());
        }
        MetaValue::Array(MetaArray::Str { bytes, ends })
    };
    let mut m = good.clone();
    replace(&mut m, "tokenizer.ggml.tokens", bad_utf8);
    assert_eq!(tiny_err(&m).0, "tokenizer.ggml.tokens[260]");
    v[260].0 = "ab".into();
    assert!(tiny_err(&spm_metadata(&v, vec![])).1.contains("duplicate"));
    let mut v = tiny();
    v[3].0 = "<0xZZ>".into();
    assert_eq!(
        tiny_err(&spm_metadata(&v, vec![])).0,
        "tokenizer.ggml.tokens[3]"
    );
    let mut v = tiny();
    v[259].1 = f32::NAN;
    assert_eq!(
        tiny_err(&spm_metadata(&v, vec![])).0,
        "tokenizer.ggml.scores[259]"
    );

    // Special ids outside the vocabulary (huge, negative, wrong type).
    for value in [
        MetaValue::Uint(u64::MAX),
        MetaValue::Uint(tiny().len() as u64),
        MetaValue::Int(-1),
        MetaValue::Str("1".into()),
    ] {
        let m = spm_metadata(
            &tiny(),
            vec![entry("tokenizer.ggml.bos_token_id", ValueType::U32, value)],
        );
        assert_eq!(tiny_err(&m).0, "tokenizer.ggml.bos_token_id");
    }
    // Not SentencePiece, no vocabulary, an empty vocabulary.
    let mut m = good.clone();
    replace(
        &mut m,
        "tokenizer.ggml.model",
        MetaValue::Str("gpt2".into()),
    );
    assert_eq!(tiny_err(&m).0, "tokenizer.ggml.model");
    let m: Vec<MetaEntry> = good
        .iter()
        .filter(|e| e.key != "tokenizer.ggml.tokens")
        .cloned()
        .collect();
    assert_eq!(tiny_err(&m).0, "tokenizer.ggml.tokens");
    assert!(tiny_err(&spm_metadata(&[], vec![])).1.contains("0 tokens"));
    // A missing byte token falls back to the unknown token (llama.cpp defaults it to id 0);
    // an unknown-token id outside the vocabulary is refused.
    let v: Vec<_> = tiny().into_iter().filter(|t| t.0 != "<0x41>").collect();
    let no_prefix = entry(
        "tokenizer.ggml.add_space_prefix",
        ValueType::Bool,
        MetaValue::Bool(false),
    );
    let tok = SpmTokenizer::from_gguf(&spm_metadata(&v, vec![no_prefix])).expect("no <0x41>");
    assert_eq!(tok.encode("A", false), vec![tok.unk().expect("unk")]);
    let m = spm_metadata(
        &v,
        vec![entry(
            "tokenizer.ggml.unknown_token_id",
            ValueType::U32,
            MetaValue::Uint(tiny().len() as u64 + 5),
        )],
    );
    assert_eq!(tiny_err(&m).0, "tokenizer.ggml.unknown_token_id");
}

/// A file claiming a vocabulary far larger than itself is refused by the loader before any
/// allocation sized by the claim, so the tokenizer never sees it.
#[test]
fn huge_vocabulary_counts_are_refused_before_allocation() {
    use webjit_engine::loader::source::load_from;
    use webjit_engine::loader::{LoadOptions, LoaderError, MemSource, NullSink};
    use webjit_tests::loader_fixtures::{GgufBuilder, Kv};
    for count in [u64::MAX, 1 << 40, 1 << 29] {
        let mut b = GgufBuilder::new(3);
        b.kvs.push(Kv::str("tokenizer.ggml.model", "llama"));
        b.kvs.push(Kv::array(
            "tokenizer.ggml.tokens",
            8,
            count,
            &[1, 0, 0, 0, 0, 0, 0, 0, b'a'],
        ));
        let (bytes, _) = b.build();
        let r = load_from(
            &mut MemSource(&bytes),
            None,
            LoadOptions::default(),
            1 << 16,
            &mut NullSink,
        );
        // Past the loader's cap the count is absurd; below it, more than the rest of this
        // 128-byte file holds: a cut file. Both are refused before anything is allocated.
        assert!(
            matches!(
                r,
                Err(LoaderError::TooLarge { .. } | LoaderError::Truncated { .. })
            ),
            "count {count}: {r:?}"
        );
    }
}
