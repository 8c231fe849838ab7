//! The tuner: its options and reports, the engine's config choice (a tuning record's winner,
//! else the spec's default) and the records themselves. The search over candidates is in
//! `search`, candidate timing in `timing`, record persistence in `store`, and the plan of what a
//! model runs, found by recording its real steps, in `plan`.
//!
//! Tuning is explicit and never delays a first result: until a record exists, ops run the
//! heuristic default; a winner is used (hot-swapped) from the next op on.

mod plan;
mod search;
mod store;
mod timing;

use std::time::Duration;

use serde::Serialize;
use webjit_jit::tune::TuneRecords;
use webjit_jit::KernelSpec;

use crate::error::Result;
use crate::Engine;

pub use plan::{geomean_speedup, PlanOptions, TunePlan, DEFAULT_PROMPT_TOKENS};
#[cfg(not(target_arch = "wasm32"))]
pub use store::FileStore;
pub use store::RecordStore;
pub(crate) use timing::PassTimer;

#[derive(Clone, Debug)]
pub struct TuneOptions {
    /// Wall-clock budget for this problem (candidates left when it runs out are skipped).
    pub budget: Duration,
    /// Shortest timed batch per candidate.
    pub min_batch: Duration,
    /// A candidate whose output differs from the default's by more (NMSE) is rejected.
    /// Approximate candidates (`KernelSpec::approximate`) get their own, looser bound.
    pub max_nmse: f64,
    /// Leave approximate candidates (the int8 matvec) out: only configs that compute the same
    /// sums as the default may win. The default: tuning should not change results unless asked.
    pub exact: bool,
}

impl Default for TuneOptions {
    fn default() -> Self {
        Self {
            budget: Duration::from_secs(5),
            min_batch: Duration::from_millis(20),
            max_nmse: 1e-8,
            exact: true,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct TuneReport {
    pub tune_key: String,
    pub default_key: String,
    pub winner_key: String,
    pub default_us: f64,
    pub tuned_us: f64,
    pub speedup: f64,
    /// Candidates timed (the default included).
    pub tried: u32,
    /// Candidates whose output disagreed with the default's.
    pub rejected: u32,
    /// Candidates not run because the budget ran out.
    pub skipped: u32,
    pub spent_ms: f64,
    /// How candidates were timed: "gpu-timestamps" (compute-pass timestamp queries),
    /// "wall-clock" (around batches), or "single-run" (slow problems: the checked run itself).
    pub timer: &'static str,
}

/// Seconds on a monotonic clock. The engine cannot read one on the web (no `Instant` in
/// wasm32-unknown-unknown), so the caller lends it: `native_clock` natively,
/// `performance.now()` in the browser.
pub type Clock<'a> = &'a dyn Fn() -> f64;

/// A monotonic clock in seconds (native).
#[cfg(not(target_arch = "wasm32"))]
pub fn native_clock() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

impl Engine {
    /// The config an op should run: the caller's, else a current tuning record's winner (if
    /// still legal for this problem), else the spec's default.
    pub fn choose<S: KernelSpec>(&self, spec: &S, cfg: Option<S::Config>) -> S::Config {
        if let Some(c) = cfg {
            return c;
        }
        self.tuned_config(spec)
            .unwrap_or_else(|| spec.default_config(self.profile()))
    }

    /// `choose`, then the pipeline of the chosen config. Without a caller's config, problems
    /// that offer a `memo_key` are answered from a memo after the first time (tuning records
    /// changing clears it).
    pub fn kernel_for<S: KernelSpec>(
        &self,
        spec: &S,
        cfg: Option<S::Config>,
    ) -> Result<(S::Config, std::sync::Arc<crate::pipeline::Kernel>)> {
        let memo = if cfg.is_none() {
            spec.memo_key().map(|k| (spec.family(), k))
        } else {
            None
        };
        if let Some(k) = &memo {
            let hit = self.kernel_memo.lock().ok().and_then(|m| m.get(k).cloned());
            if let Some((c, kernel)) = hit {
                if let Some(c) = c.downcast_ref::<S::Config>() {
                    self.gpu.check_alive()?;
                    return Ok((c.clone(), kernel));
                }
            }
        }
        let c = self.choose(spec, cfg);
        let kernel = self.pipelines.get(&self.gpu, spec, &c)?;
        if let Some(k) = memo {
            if let Ok(mut m) = self.kernel_memo.lock() {
                m.insert(k, (std::sync::Arc::new(c.clone()), kernel.clone()));
            }
        }
        Ok((c, kernel))
    }

    fn forget_chosen_kernels(&self) {
        if let Ok(mut m) = self.kernel_memo.lock() {
            m.clear();
        }
    }

    /// The recorded winner for this problem, if any.
    pub fn tuned_config<S: KernelSpec>(&self, spec: &S) -> Option<S::Config> {
        let tk = spec.tune_key();
        let cached = self.tuned_configs.lock().ok()?.get(&tk).cloned();
        if let Some(c) = cached.as_ref().and_then(|a| a.downcast_ref::<S::Config>()) {
            // The same bucket holds problems of other sizes: the winner must be legal here.
            return spec.check(self.profile(), c).ok().map(|_| c.clone());
        }
        // A problem whose bucket has no (current) record is answered from the memo after the
        // first lookup, which renders the recorded winner to check its checksum.
        if self.tuned_memo.lock().ok()?.get(&tk) == Some(&None) {
            return None;
        }
        let found = self
            .tuning
            .lock()
            .ok()?
            .lookup(spec, self.profile())
            .map(|(r, c)| (r.winner.clone(), c));
        if let Ok(mut m) = self.tuned_memo.lock() {
            m.insert(tk.clone(), found.as_ref().map(|f| f.0.clone()));
        }
        let (_, c) = found?;
        if let Ok(mut m) = self.tuned_configs.lock() {
            m.insert(tk, std::sync::Arc::new(c.clone()));
        }
        Some(c)
    }

    /// A copy of every tuning record this engine holds (for export).
    pub fn export_tuning(&self) -> TuneRecords {
        self.tuning.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Adds records (e.g. a shipped pre-tuned profile); later lookups see them.
    pub fn import_tuning(&self, recs: TuneRecords) {
        if let Ok(mut r) = self.tuning.lock() {
            r.merge(recs);
        }
        if let Ok(mut m) = self.tuned_memo.lock() {
            m.clear();
        }
        if let Ok(mut m) = self.tuned_configs.lock() {
            m.clear();
        }
        self.forget_chosen_kernels();
    }
}
