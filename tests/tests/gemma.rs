//! Golden tests of Gemma 3 270M (Q4_K_M) against llama.cpp (tests/data/gemma/refs.json, made by
//! scripts/record_gemma_refs.py), on the real model file: the logits at the last prompt position
//! and the greedy continuation through the GPU sampler. Prompts are given as llama.cpp's token
//! ids so these tests check the decoder alone (tests/gemma_tokenizer.rs checks the ids).

use std::sync::{Mutex, MutexGuard, OnceLock};

use webjit_engine::loader::FileSource;
use webjit_engine::model::decoder::Decoder;
use webjit_engine::model::generate::Session;
use webjit_tests::gemma_refs::{gemma_prompt_refs, run_golden, GEMMA_MODEL};
use webjit_tests::{engine, require_model};

/// One loaded model for the whole file; tests take turns.
fn session() -> MutexGuard<'static, Session> {
    static S: OnceLock<Mutex<Session>> = OnceLock::new();
    let m = S.get_or_init(|| {
        let mut src = FileSource::open(&require_model(GEMMA_MODEL)).expect("open model");
        let (_, dec) = Decoder::load(engine(), &mut src, Some(1024)).expect("load Gemma");
        Mutex::new(Session::new(engine(), dec).expect("session"))
    });
    // A failed test poisons the lock; the session is reset before each use anyway.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn golden(name: &str) {
    let refs = gemma_prompt_refs();
    let r = refs
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no reference prompt `{name}`"));
    run_golden(&mut session(), r);
}

#[test]
fn chat_prompt_matches_llama_cpp() {
    golden("chat");
}

#[test]
fn plain_prompt_matches_llama_cpp() {
    golden("plain");
}

#[test]
fn code_prompt_matches_llama_cpp() {
    golden("code");
}

#[test]
fn unicode_chat_prompt_matches_llama_cpp() {
    golden("chat_unicode");
}

/// 692 tokens, past the 512-token sliding window: local layers must see only the window, in
/// the prefill kernel and in the ring-buffer caches during decode.
#[test]
fn long_prompt_past_the_window_matches_llama_cpp() {
    golden("long");
}

/// Every reference prompt is covered by a test above.
#[test]
fn all_reference_prompts_are_tested() {
    let names: Vec<String> = gemma_prompt_refs().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["chat", "plain", "code", "chat_unicode", "long"]);
}

/// `generate` (pipelined decode: each step embeds its token from the GPU through the quantized
/// embedding gather, one step runs ahead) continues like llama.cpp up to its first near tie.
#[test]
fn generate_continues_like_llama_cpp() {
    use webjit_engine::model::generate::GenerateOptions;
    let refs = gemma_prompt_refs();
    let r = refs.iter().find(|p| p.name == "code").expect("code prompt");
    let n = r
        .greedy
        .iter()
        .position(|g| g.gap < 0.3)
        .unwrap_or(r.greedy.len());
    assert!(n >= 2, "the reference must have a few clear steps");
    let mut s = session();
    s.reset();
    let opts = GenerateOptions {
        max_tokens: n,
        ..Default::default()
    };
    let g = s
        .generate(engine(), &r.prompt_ids, &opts, &|_| false, &mut |_| true)
        .expect("generate");
    let want: Vec<u32> = r.greedy[..n].iter().map(|g| g.id).collect();
    assert_eq!(g.tokens, want);
    assert_eq!(s.position(), r.prompt_ids.len() + n - 1);
}

/// Prefill during the streaming load: every block runs over the prompt as soon as it has
/// arrived (Gemma's file puts the embedding first, so blocks run before the load ends), and
/// the logits equal those of loading first and prefilling after, bit for bit.
#[test]
fn streaming_prefill_matches_and_runs_during_the_load() {
    let refs = gemma_prompt_refs();
    let r = refs
        .iter()
        .find(|p| p.name == "plain")
        .expect("plain prompt");
    let e = engine();
    let want = {
        let mut s = session();
        s.reset();
        let step = s
            .step(e, &r.prompt_ids, &webjit_tests::gemma_refs::GREEDY)
            .expect("prefill");
        e.read_f32(&step.logits).expect("read")
    };
    let mut src = FileSource::open(&require_model(GEMMA_MODEL)).expect("open model");
    let (_, dec, logits, stats) =
        Decoder::load_with_prefill(e, &mut src, &r.prompt_ids, Some(1024), 1 << 20)
            .expect("streaming prefill");
    assert_eq!(stats.n_layers, 18);
    assert!(
        stats.layers_before_load_end > 0,
        "no block ran before the load ended: {stats:?}"
    );
    assert_eq!(dec.position(), r.prompt_ids.len());
    assert_eq!(e.read_f32(&logits).expect("read"), want);
}
