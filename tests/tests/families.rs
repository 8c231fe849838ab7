//! Every decoder family beside gemma3 against llama.cpp, one test each, on the tiny random-weight
//! GGUFs of scripts/make_tiny_families.py (the family's real metadata keys and tensor names,
//! small dimensions, ~32k vocabularies; generated into the model cache by `make models`).
//! References: tests/data/families/<family>.json. Per prompt (short, special tokens written in
//! the text, long: past gemma2's sliding window) the golden rule of the Gemma tests: argmax,
//! at least 8 of llama.cpp's top-10 and NMSE <= 5e-3 at the last prompt position, then greedy
//! tokens equal until llama.cpp's own top-2 gap is below 0.3, top-5 logits within 1.0.
//!
//! The prompt ids are llama.cpp's, so these tests check the decoders, not the tokenizers.

use sha2::{Digest, Sha256};
use webjit_engine::loader::{FileSource, MemSource, MetaValue};
use webjit_engine::model::decoder::Decoder;
use webjit_engine::model::generate::Session;
use webjit_tests::gemma_refs::{family_prompt_refs, golden_check, read_gguf_header, read_json};
use webjit_tests::loader_fixtures::{GgufBuilder, Kv};
use webjit_tests::{engine, require_model, Rand};

/// The KV cache of the runs: the n_ctx llama.cpp recorded with (phi3: its original context,
/// so the short rope factors apply).
const CTX: usize = 512;

fn meta_u64(h: &webjit_engine::loader::ModelHeader, key: &str) -> Option<u64> {
    match h.get(key) {
        Some(MetaValue::Uint(v)) => Some(*v),
        Some(MetaValue::Int(v)) => u64::try_from(*v).ok(),
        _ => None,
    }
}

/// Loads tiny-<family>.gguf and runs every recorded prompt; fails listing each prompt's first
/// failed check with its numbers.
fn golden(family: &str) {
    let doc = read_json(&format!("families/{family}.json"));
    let path = require_model(&format!("tiny-{family}.gguf"));
    let bytes = std::fs::read(&path).expect("model");
    let sha: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        sha,
        doc["gguf_sha256"].as_str().expect("gguf_sha256"),
        "{}: not the bytes llama.cpp was recorded on (rerun `make models`, or re-record with \
         scripts/make_tiny_families.py)",
        path.display()
    );
    assert_eq!(doc["n_ctx"].as_u64(), Some(CTX as u64));
    let n_vocab = doc["n_vocab"].as_u64().expect("n_vocab") as usize;
    let e = engine();
    let mut src = FileSource::open(&path).expect("open");
    let dec = match Decoder::load(e, &mut src, Some(CTX)) {
        Ok((_, dec)) => dec,
        Err(err) => panic!("{family}: load failed: {} {err}", err.code()),
    };
    assert_eq!(dec.cfg.vocab, n_vocab, "{family}: vocabulary size");
    let mut s = Session::new(e, dec).expect("session");
    let refs = family_prompt_refs(family);
    assert!(refs.len() >= 3, "{family}: {} prompts", refs.len());
    let mut failures = Vec::new();
    for r in &refs {
        assert!(
            r.prompt_ids.iter().all(|&id| (id as usize) < n_vocab),
            "{family} {}: prompt id out of range",
            r.name
        );
        match golden_check(e, &mut s, r) {
            Ok(k) => eprintln!(
                "{family} {}: {} prompt tokens, last logits and {k} greedy steps agree",
                r.name,
                r.prompt_ids.len()
            ),
            Err(m) => failures.push(format!("{family} {m}")),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn llama3() {
    golden("llama3");
}

#[test]
fn smollm2() {
    golden("smollm2");
}

#[test]
fn mistral() {
    golden("mistral");
}

#[test]
fn qwen2() {
    golden("qwen2");
}

#[test]
fn qwen3() {
    golden("qwen3");
}

/// Also that the run is in the short-factor regime it was recorded in.
#[test]
fn phi3() {
    let h = read_gguf_header(&require_model("tiny-phi3.gguf"));
    let orig = meta_u64(&h, "phi3.rope.scaling.original_context_length").expect("orig ctx");
    let train = meta_u64(&h, "phi3.context_length").expect("context");
    assert!(CTX as u64 <= orig && orig < train, "{CTX} {orig} {train}");
    golden("phi3");
}

/// Also that the long prompt really is longer than the sliding window.
#[test]
fn gemma2() {
    let h = read_gguf_header(&require_model("tiny-gemma2.gguf"));
    let window = meta_u64(&h, "gemma2.attention.sliding_window").expect("window") as usize;
    let longest = family_prompt_refs("gemma2")
        .iter()
        .map(|r| r.prompt_ids.len())
        .max()
        .unwrap_or(0);
    assert!(longest > 2 * window, "{longest} tokens, window {window}");
    golden("gemma2");
}

/// A GGUF of an architecture without a decoder plan fails at load with a coded error naming it
/// and the supported ones.
#[test]
fn unsupported_architecture_is_refused_by_name() {
    let mut rng = Rand::new(23);
    for arch in ["mamba", "gpt2"] {
        let mut b = GgufBuilder::new(3);
        b.kvs.push(Kv::str("general.architecture", arch));
        for (k, v) in [
            ("context_length", 64),
            ("embedding_length", 64),
            ("block_count", 1),
            ("feed_forward_length", 128),
            ("attention.head_count", 2),
        ] {
            b.kvs.push(Kv::u32(&format!("{arch}.{k}"), v));
        }
        b.tensor(&mut rng, "token_embd.weight", &[64, 256], 1);
        b.tensor(&mut rng, "output_norm.weight", &[64], 0);
        let (bytes, _) = b.build();
        let err = match Decoder::load(engine(), &mut MemSource(&bytes), Some(16)) {
            Err(e) => e,
            Ok(_) => panic!("a `{arch}` GGUF loaded"),
        };
        assert_eq!(err.code(), "UNSUPPORTED_ARCHITECTURE", "{arch}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(arch), "{msg}");
        for known in ["llama", "qwen2", "qwen3", "phi3", "gemma2", "gemma3"] {
            assert!(msg.contains(known), "`{known}` not listed: {msg}");
        }
    }
}
