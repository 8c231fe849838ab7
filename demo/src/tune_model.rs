//! `webjit tune --model PATH`: tunes the kernels a GGUF decoder actually runs, at its shapes
//! (the plan is `webjit_engine::model::tune_plan`, shared with the browser). Only the header
//! is read; weights are synthesized (timings do not depend on values).

use webjit_engine::loader::{FileSource, ModelHeader};
use webjit_engine::model::llm_config::DecoderConfig;
use webjit_engine::model::tune_plan;
use webjit_engine::tune::{native_clock, TuneReport};
use webjit_engine::{Engine, Result};

/// Reads a GGUF file's header only (the file may be just the header).
pub fn read_header(path: &std::path::Path) -> Result<ModelHeader> {
    Ok(webjit_engine::loader::read_header(&mut FileSource::open(
        path,
    )?)?)
}

pub fn run(
    e: &Engine,
    path: &std::path::Path,
    budget_s: f64,
    prompt_tokens: usize,
    exact: bool,
) -> Result<Vec<TuneReport>> {
    let h = read_header(path)?;
    let cfg = DecoderConfig::from_header(&h)?;
    let mats = tune_plan::synth_matrices(e, &h)?;
    let t0 = native_clock();
    let reports = pollster::block_on(tune_plan::tune_decoder(
        e,
        &cfg,
        &mats,
        budget_s,
        prompt_tokens,
        exact,
        &native_clock,
        &mut |_, _| {},
    ))?;
    eprintln!(
        "tuned {} problems of {} in {:.1} s",
        reports.len(),
        path.display(),
        native_clock() - t0
    );
    Ok(reports)
}
