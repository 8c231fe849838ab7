//! `webjit tune --model PATH`: tunes the kernels a GGUF decoder actually runs, at its shapes:
//! the plan (`webjit_engine::tune::TunePlan`, shared with the browser) records the model's
//! prompt and decode steps and tunes every distinct kernel they dispatch. Only the header is
//! read; weights are synthesized from it (timings do not depend on values).

use webjit_engine::kv_cache::KvDType;
use webjit_engine::model::decoder::Decoder;
use webjit_engine::model::generate::Session;
use webjit_engine::tune::{native_clock, PlanOptions, TunePlan, TuneReport};
use webjit_engine::{Engine, Result};

use crate::bench_model::SynthSource;

/// What `webjit tune --model` tunes for.
pub struct ModelTune {
    pub budget_s: f64,
    /// The prompt length of the prefill problems.
    pub prompt_tokens: usize,
    /// No approximate candidates (the int8 matvec).
    pub exact: bool,
    /// The KV cache format the model will run with (None: the default), which picks the
    /// attention kernels the plan captures.
    pub kv_cache: Option<KvDType>,
}

pub fn run(e: &Engine, path: &std::path::Path, o: &ModelTune) -> Result<Vec<TuneReport>> {
    let (budget_s, prompt_tokens, exact) = (o.budget_s, o.prompt_tokens, o.exact);
    let t0 = native_clock();
    // Room for the captured prompt and the decode step after it.
    let (_, dec) = Decoder::load_with_kv(
        e,
        &mut SynthSource::new(path)?,
        Some(prompt_tokens + 1),
        o.kv_cache,
    )?;
    let mut session = Session::new(e, dec)?;
    let plan = TunePlan::capture(e, &mut session, &PlanOptions { prompt_tokens })?;
    eprintln!(
        "{} kernels to tune in {} ({:.1} s to load and capture)",
        plan.len(),
        path.display(),
        native_clock() - t0
    );
    let reports = pollster::block_on(plan.tune(e, budget_s, exact, &native_clock, &mut |r, n| {
        eprintln!("  {:<52} {:>6.2}x  ({n} in all)", r.tune_key, r.speedup);
    }))?;
    eprintln!(
        "tuned {} problems of {} in {:.1} s",
        reports.len(),
        path.display(),
        native_clock() - t0
    );
    Ok(reports)
}
