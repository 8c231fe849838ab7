//! The tuner's plan covers what a model runs: every kernel that a Gemma 3 and a llama prompt
//! step and the decode steps after it dispatch (as generation records them) lies in the space
//! of a problem of the plan, which is captured from the same steps; and the plan tunes end to
//! end without changing what the model generates.

use std::path::Path;
use std::time::Duration;

use webjit_engine::loader::FileSource;
use webjit_engine::model::decoder::Decoder;
use webjit_engine::model::generate::{GenerateOptions, Session};
use webjit_engine::tune::{native_clock, PlanOptions, TunePlan};
use webjit_engine::{DeviceOptions, Engine};
use webjit_tests::gemma_refs::{tiny_llama_path, GEMMA_MODEL};
use webjit_tests::require_model;

/// A private engine: its kernel log and records are this test's alone.
fn private_engine() -> Engine {
    Engine::new_blocking(DeviceOptions {
        load_tuning: false,
        ..Default::default()
    })
    .expect("a GPU adapter (lavapipe: apt-get install mesa-vulkan-drivers)")
}

fn session(e: &Engine, model: &Path) -> Session {
    let mut src = FileSource::open(model).expect("model file");
    let (_, dec) = Decoder::load(e, &mut src, Some(256)).expect("load");
    Session::new(e, dec).expect("session")
}

/// Greedy generation of `tokens` after `prompt`.
fn generate(e: &Engine, s: &mut Session, prompt: &[u32], tokens: usize) -> Vec<u32> {
    s.reset();
    let opts = GenerateOptions {
        max_tokens: tokens,
        ..Default::default()
    };
    s.generate(e, prompt, &opts, &|_| false, &mut |_| true)
        .expect("generate")
        .tokens
}

fn plan_covers_what_runs(model: &Path, prompt_len: usize) {
    let e = private_engine();
    let mut s = session(&e, model);
    let prompt: Vec<u32> = (0..prompt_len as u32).map(|i| 2 + i * 37 % 200).collect();
    e.log_kernels(true);
    generate(&e, &mut s, &prompt, 4);
    let ran = e.take_kernel_log();
    e.log_kernels(false);
    let plan = TunePlan::capture(
        &e,
        &mut s,
        &PlanOptions {
            prompt_tokens: prompt_len,
        },
    )
    .expect("capture");
    let covered = plan.kernel_keys();
    let mut missing: Vec<&String> = ran.iter().filter(|k| !covered.contains(*k)).collect();
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "{}: kernels that ran but no problem of the plan covers: {missing:?}\nplan: {:?}",
        model.display(),
        plan.tune_keys()
    );
    // The log saw the prompt step and the decode steps (several families each); prompts of
    // up to 64 tokens run as matvec slices on CPU adapters.
    let mut families = vec![
        "qmatvec",
        "attention_decode",
        "attention.",
        "qk_rope",
        "sample",
    ];
    if prompt_len > 64 || !e.profile().cpu {
        families.push("qmatmul");
    }
    for family in families {
        assert!(
            ran.iter().any(|k| k.starts_with(family)),
            "{}: no {family} kernel ran: {ran:?}",
            model.display()
        );
    }
    eprintln!(
        "{}: {} dispatches of {} distinct kernels, all covered by {} problems",
        model.display(),
        ran.len(),
        {
            let mut d = ran.clone();
            d.sort();
            d.dedup();
            d.len()
        },
        plan.len()
    );
}

#[test]
fn plan_covers_every_kernel_of_gemma_steps() {
    plan_covers_what_runs(&require_model(GEMMA_MODEL), 12);
}

#[test]
fn plan_covers_every_kernel_of_llama_steps() {
    plan_covers_what_runs(&tiny_llama_path(), 12);
    // Past the CPU adapters' 64-row matvec slices: the prompt takes the tiled matmul.
    plan_covers_what_runs(&tiny_llama_path(), 80);
}

/// The whole plan tunes (every problem reports, the defaults are among its keys) and greedy
/// generation afterwards is what it was (exact tuning changes no results beyond summation
/// order, and the continuation of a random-weight model has no near ties at these steps).
#[test]
fn plan_tunes_end_to_end_without_changing_generation() {
    let e = private_engine();
    let mut s = session(&e, &tiny_llama_path());
    let prompt: Vec<u32> = (0..20u32).map(|i| 3 + i * 11 % 250).collect();
    let before = generate(&e, &mut s, &prompt, 8);
    let plan = TunePlan::capture(&e, &mut s, &PlanOptions { prompt_tokens: 20 }).unwrap();
    let keys = plan.tune_keys();
    assert!(plan.len() >= 10, "only {} problems: {keys:?}", plan.len());
    let t0 = native_clock();
    let reports =
        pollster::block_on(plan.tune(&e, 20.0, true, &native_clock, &mut |_, _| {})).expect("tune");
    let spent = Duration::from_secs_f64(native_clock() - t0);
    assert_eq!(reports.len(), keys.len());
    for (r, k) in reports.iter().zip(&keys) {
        assert_eq!(&r.tune_key, k);
        assert!(r.tuned_us > 0.0 && r.speedup >= 1.0, "{r:?}");
    }
    assert!(
        spent < Duration::from_secs(60),
        "a 20 s budget took {spent:?}"
    );
    let after = generate(&e, &mut s, &prompt, 8);
    assert_eq!(before, after, "tuned generation differs");
}
