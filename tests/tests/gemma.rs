//! Golden tests of Gemma 3 270M (Q4_K_M) against llama.cpp (tests/data/gemma/refs.json, made by
//! scripts/record_gemma_refs.py), on the real model file: the logits at the last prompt position
//! and the greedy continuation through the GPU sampler. Prompts are given as llama.cpp's token
//! ids so these tests check the decoder alone (tests/gemma_tokenizer.rs checks the ids).

use std::sync::{Mutex, MutexGuard, OnceLock};

use webjit_engine::loader::FileSource;
use webjit_engine::model::decoder::Decoder;
use webjit_engine::model::generate::{SampleSettings, Session};
use webjit_tests::gemma_refs::{
    check_greedy, check_last_logits, gemma_prompt_refs, top_k, PromptRef, GEMMA_MODEL,
};
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

pub const GREEDY: SampleSettings = SampleSettings {
    temperature: 0.0,
    top_k: 0,
    top_p: 1.0,
    u: 0.0,
    penalty: 1.0,
};

/// Prefill, check the last position's logits, then decode greedily through the GPU sampler
/// for as many steps as the reference can compare.
pub fn run_golden(s: &mut Session, r: &PromptRef) {
    let e = engine();
    s.reset();
    let step = s.step(e, &r.prompt_ids, &GREEDY).expect("prefill");
    let logits = e.read_f32(&step.logits).expect("read logits");
    if let Err(m) = check_last_logits(&logits, r) {
        panic!("{m}");
    }
    // The sampler's report must be the true top of these logits.
    assert_eq!(step.result.top, top_k(&logits, 5), "{}: sampler top-5", r.name);
    // Steps worth running: up to the first one where llama.cpp's own choice is a near tie.
    let n = r
        .greedy
        .iter()
        .position(|g| g.gap < 0.3)
        .map_or(r.greedy.len(), |i| i + 1);
    let mut ours = vec![(step.result.token, step.result.top.clone())];
    while ours.len() < n {
        let last = ours[ours.len() - 1].0;
        let res = s.step(e, &[last], &GREEDY).expect("decode").result;
        ours.push((res.token, res.top));
    }
    for (i, (o, g)) in ours.iter().zip(&r.greedy).enumerate() {
        eprintln!(
            "{} step {i}: ours {:?} llama.cpp {:?} (gap {:.2})",
            r.name, o.1[0], g.top5[0], g.gap
        );
    }
    match check_greedy(&ours, r) {
        Ok(k) => eprintln!("{}: {k} greedy steps agree with llama.cpp", r.name),
        Err(m) => panic!("{m}"),
    }
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
