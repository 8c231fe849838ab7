//! Golden tests of Gemma 3 270M (Q4_K_M) against llama.cpp (tests/data/gemma/refs.json, made by
//! scripts/record_gemma_refs.py): the logits at the last prompt position and the greedy
//! continuation, on the real model file. Prompts are given as llama.cpp's token ids so these
//! tests check the decoder alone (tests/gemma_tokenizer.rs checks the ids).

use std::sync::{Mutex, MutexGuard, OnceLock};

use serde::Deserialize;
use webjit_engine::loader::FileSource;
use webjit_engine::model::decoder::Decoder;
use webjit_engine::model::generate::{SampleSettings, Session};
use webjit_tests::{engine, require_model};

#[derive(Deserialize)]
struct Refs {
    n_vocab: usize,
    prompts: Vec<Prompt>,
}

#[derive(Deserialize)]
struct Prompt {
    name: String,
    prompt_ids: Vec<u32>,
    last_top10: Vec<(u32, f32)>,
    greedy: Vec<GreedyStep>,
    logits_f16: Option<String>,
}

#[derive(Deserialize)]
struct GreedyStep {
    id: u32,
    top5: Vec<(u32, f32)>,
    gap: f32,
}

fn data_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/gemma")
}

fn refs() -> &'static Refs {
    static R: OnceLock<Refs> = OnceLock::new();
    R.get_or_init(|| {
        let text = std::fs::read_to_string(data_dir().join("refs.json"))
            .expect("tests/data/gemma/refs.json (scripts/record_gemma_refs.py)");
        serde_json::from_str(&text).expect("refs.json parses")
    })
}

/// One loaded model for the whole file; tests take turns.
fn session() -> MutexGuard<'static, Session> {
    static S: OnceLock<Mutex<Session>> = OnceLock::new();
    let m = S.get_or_init(|| {
        let path = require_model("gemma-3-270m-q4_k_m.gguf");
        let mut src = FileSource::open(&path).expect("open model");
        let (_, dec) = Decoder::load(engine(), &mut src, Some(2048)).expect("load Gemma");
        Mutex::new(Session::new(engine(), dec).expect("session"))
    });
    // A failed test poisons the lock; the session is reset before each use anyway.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

const GREEDY: SampleSettings = SampleSettings {
    temperature: 0.0,
    top_k: 0,
    top_p: 1.0,
    u: 0.0,
    penalty: 1.0,
};

fn top_n(logits: &[f32], n: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    // Stable: ties keep the lower id first, like the reference.
    idx.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    idx.into_iter()
        .take(n)
        .map(|i| (i, logits[i as usize]))
        .collect()
}

fn read_f16_logits(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(data_dir().join(name)).expect("reference logits file");
    bytes
        .chunks_exact(2)
        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect()
}

fn golden(name: &str) {
    let refs = refs();
    let p = refs
        .prompts
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no reference prompt `{name}`"));
    let e = engine();
    let mut s = session();
    s.reset();
    assert_eq!(s.decoder.cfg.vocab, refs.n_vocab, "vocabulary size");

    // Logits at the last prompt position.
    let step = s.step(e, &p.prompt_ids, &GREEDY).expect("prefill");
    let logits = e.read_f32(&step.logits).expect("read logits");
    assert_eq!(logits.len(), refs.n_vocab);
    assert!(
        logits.iter().all(|v| v.is_finite()),
        "{name}: non-finite logits"
    );
    let ours = top_n(&logits, 10);
    assert_eq!(
        ours[0].0, p.last_top10[0].0,
        "{name}: argmax {:?} vs llama.cpp {:?}",
        ours[0], p.last_top10[0]
    );
    let shared = ours
        .iter()
        .filter(|(id, _)| p.last_top10.iter().any(|(r, _)| r == id))
        .count();
    assert!(
        shared >= 8,
        "{name}: only {shared} of llama.cpp's top-10 in ours\n ours {ours:?}\n ref  {:?}",
        p.last_top10
    );
    if let Some(f) = &p.logits_f16 {
        let want = read_f16_logits(f);
        assert_eq!(want.len(), logits.len());
        let (mut err, mut norm) = (0.0f64, 0.0f64);
        for (a, b) in logits.iter().zip(&want) {
            err += (*a as f64 - *b as f64).powi(2);
            norm += (*b as f64).powi(2);
        }
        let nmse = err / norm;
        eprintln!("{name}: NMSE of the full logits vs llama.cpp = {nmse:.3e}");
        assert!(nmse <= 5e-3, "{name}: logits NMSE {nmse:.3e} > 5e-3");
    }
    // The sampler's report must be the true top of these logits.
    for (r, (id, v)) in step.result.top.iter().enumerate() {
        assert_eq!((*id, *v), ours[r], "{name}: sampler top-{r} vs host sort");
    }

    // Greedy continuation, compared until llama.cpp's own top-1/top-2 gap drops below 0.3.
    let mut res = step.result;
    let mut compared = 0;
    for (i, r) in p.greedy.iter().enumerate() {
        assert!(res.top.len() >= 5, "{name}: step {i}: top-5 missing");
        for (k, ((_, ov), (_, rv))) in res.top.iter().zip(&r.top5).enumerate() {
            assert!(
                (ov - rv).abs() <= 1.0,
                "{name}: step {i}: top-{k} logit {ov} vs llama.cpp {rv}\n ours {:?}\n ref  {:?}",
                res.top,
                r.top5
            );
        }
        if r.gap < 0.3 {
            eprintln!(
                "{name}: llama.cpp's gap {:.3} < 0.3 at step {i}; stop comparing",
                r.gap
            );
            break;
        }
        assert_eq!(
            res.token, r.id,
            "{name}: step {i}: token {} vs llama.cpp {} (gap {:.3})",
            res.token, r.id, r.gap
        );
        compared += 1;
        if i + 1 < p.greedy.len() {
            res = s.step(e, &[res.token], &GREEDY).expect("decode").result;
        }
    }
    eprintln!("{name}: {compared} greedy tokens identical to llama.cpp");
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

/// Longer than the 512-token sliding window: local layers must only see the window, in the
/// prefill kernel and in the ring-buffer cache during decode.
#[test]
fn long_prompt_past_the_window_matches_llama_cpp() {
    golden("long");
}
