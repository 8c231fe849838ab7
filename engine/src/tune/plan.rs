//! The tuning plan of a model: every distinct kernel its real steps dispatch. The plan records
//! a prompt step and the decode step after it with the recorder capturing
//! (`Recorder::capture_kernels`), runs them once so every captured operand holds real values,
//! and keeps one problem per tune key, each with a replay of the op that dispatched it. So the
//! tuner tunes exactly what the model runs, stacked, gated and fused kernels included.
//! Shared by `webjit tune --model` (weights synthesized from the header: timings do not depend
//! on values) and the browser's `engine.tune()` (the loaded model's own weights).

use std::collections::HashSet;
use std::time::Duration;

use super::{Clock, TuneOptions, TuneReport};
use crate::error::{Error, Result};
use crate::model::generate::Session;
use crate::recorder::TunableKernel;
use crate::Engine;

/// Prompt length of the captured prompt step: records serve prompts of 65..=128 tokens.
pub const DEFAULT_PROMPT_TOKENS: usize = 128;

#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// Tokens of the captured prompt step (9..=8192: above 8 rows the products take their
    /// prompt forms).
    pub prompt_tokens: usize,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            prompt_tokens: DEFAULT_PROMPT_TOKENS,
        }
    }
}

/// The problems of a plan, one per tune key, in the order they are tuned.
pub struct TunePlan {
    problems: Vec<Box<dyn TunableKernel>>,
    /// Every kernel key the captured kernels' spaces hold, those that share a problem's tune
    /// key (and so its record) included.
    covered: HashSet<String>,
}

impl TunePlan {
    /// Captures `session`'s prompt and decode steps (see the module doc). The conversation is
    /// untouched; a generation in progress must be stopped first.
    pub fn capture(engine: &Engine, session: &mut Session, opts: &PlanOptions) -> Result<Self> {
        let cfg = &session.decoder.cfg;
        let n = opts.prompt_tokens;
        if !(9..=8192).contains(&n) {
            return Err(Error::InvalidArgument {
                op: "tune",
                detail: format!("prompt tokens {n} must be within 9..=8192"),
            });
        }
        // No longer than the model's context (a prompt cannot be), with room for one more.
        let n = n.min(cfg.context.max(10) - 1);
        // Ids spread over the vocabulary (values do not change which kernels run).
        let vocab = cfg.vocab as u64;
        let prompt: Vec<u32> = (0..n as u64)
            .map(|i| ((i * 7919 + 13) % vocab) as u32)
            .collect();
        let mut rec = engine.recorder();
        rec.capture_kernels();
        session.record_steps(&mut rec, &prompt)?;
        let kernels = rec.take_captured();
        rec.submit()?;
        Ok(Self::from_kernels(engine, kernels))
    }

    /// One problem per tune key (the first captured), the light families first: each problem
    /// gets an equal share of what is left, and the light ones (small spaces, fast runs) use
    /// less than theirs, which the heavy ones after them then have.
    pub fn from_kernels(engine: &Engine, kernels: Vec<Box<dyn TunableKernel>>) -> Self {
        let covered = kernels.iter().flat_map(|k| k.space_keys(engine)).collect();
        let mut seen = HashSet::new();
        let mut problems: Vec<Box<dyn TunableKernel>> = kernels
            .into_iter()
            .filter(|k| seen.insert(k.tune_key()))
            .collect();
        problems.sort_by_key(|p| family_rank(p.family()));
        Self { problems, covered }
    }

    pub fn len(&self) -> usize {
        self.problems.len()
    }

    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn tune_keys(&self) -> Vec<String> {
        self.problems.iter().map(|p| p.tune_key()).collect()
    }

    /// Every kernel key whose choice the plan tunes: the spaces (and defaults) of the captured
    /// kernels, each of which shares its tune key, and so its record, with a problem of the
    /// plan.
    pub fn kernel_keys(&self) -> &HashSet<String> {
        &self.covered
    }

    /// Tunes every problem within about `budget_s` seconds in all, reporting each result to
    /// `on_report(report, total)` as it lands (progress for long runs). With `exact`, only
    /// configs that compute the same sums as the default may win.
    pub async fn tune(
        mut self,
        engine: &Engine,
        budget_s: f64,
        exact: bool,
        clock: Clock<'_>,
        on_report: &mut dyn FnMut(&TuneReport, usize),
    ) -> Result<Vec<TuneReport>> {
        let total = self.problems.len();
        let p = engine.profile();
        let software = p.cpu || p.backend.contains("webgpu");
        // The captured steps may still be running (seconds on a software adapter): the budget
        // is the search's, so it starts once they are done.
        let flush = engine.upload_u32(&[1], &[0])?;
        engine.read_bytes(&flush).await?;
        // A problem stops starting candidates at its deadline, but the one under way finishes
        // (up to ~1 s for the output projection on an H100, whose whole runs took 30.6-31.1 s
        // for a 30 s budget), and setup (weight copies) comes on top: aim at 90% of the budget
        // so the run ends within it.
        let deadline = clock() + 0.90 * budget_s;
        let mut reports = Vec::with_capacity(total);
        for (i, problem) in self.problems.iter_mut().enumerate() {
            // An equal share of what is left: a problem that finishes early leaves its unused
            // share to those after it. None takes more than 40% of the budget, so a slow
            // problem with a large space cannot starve the rest (their winners, timed too
            // briefly, made tuned decode slower than untuned on an H100).
            let share = (deadline - clock()) / (total - i) as f64;
            let opts = TuneOptions {
                budget: Duration::from_secs_f64(share.min(0.4 * budget_s).max(0.05)),
                // Software adapters and browsers (whose readback alone takes milliseconds)
                // need longer batches for stable timings.
                min_batch: Duration::from_millis(if software { 20 } else { 5 }),
                max_nmse: 1e-8,
                exact,
            };
            let r = engine.tune_kernel(problem.as_mut(), &opts, clock).await?;
            on_report(&r, total);
            reports.push(r);
        }
        Ok(reports)
    }
}

/// Tuning order: the light row, elementwise and gather ops, attention, then the products that
/// read the weights.
fn family_rank(family: &str) -> u8 {
    match family {
        "attention" | "attention_decode" => 1,
        "qmatvec" => 2,
        "qmatmul" | "matmul" => 3,
        _ => 0,
    }
}

/// The geometric mean of the reports' speedups (1 for none).
pub fn geomean_speedup(reports: &[TuneReport]) -> f64 {
    if reports.is_empty() {
        return 1.0;
    }
    (reports.iter().map(|r| r.speedup.ln()).sum::<f64>() / reports.len() as f64).exp()
}
