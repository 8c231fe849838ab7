//! The search: every candidate of a problem run, checked against the default's output, timed,
//! and the winner kept only if a rematch confirms it. One loop serves the problems a model
//! step captured (`TunePlan`) and a caller's own (`Engine::tune_async`).

use webjit_jit::tune::TuneRecord;
use webjit_jit::KernelSpec;

#[cfg(not(target_arch = "wasm32"))]
use super::native_clock;
use super::timing::{nmse, spread, time_candidate};
use super::{Clock, TuneOptions, TuneReport};
use crate::error::Result;
use crate::recorder::{Captured, Recorder, ReplayFactory, TunableKernel};
use crate::tensor::Tensor;
use crate::Engine;

/// Most bytes of outputs one timed batch may hold (each recorded op keeps its output alive
/// until submit).
const BATCH_BYTES: u64 = 256 << 20;

/// Alternating re-timings of the default and the winner after the search.
const REMATCH_ROUNDS: usize = 2;
/// How much faster than the default the winner must be in the rematch to be kept.
const REMATCH_MARGIN: f64 = 0.03;

impl Engine {
    /// Tunes one problem (native: blocks on `tune_async`). `run` records the op for a given
    /// config and returns its output; it is called for the default, then for each candidate
    /// of `spec.space()` until the budget ends.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn tune<S: KernelSpec + Clone>(
        &self,
        spec: &S,
        opts: &TuneOptions,
        run: impl FnMut(&mut Recorder, &S::Config) -> Result<Tensor>,
    ) -> Result<TuneReport> {
        pollster::block_on(self.tune_async(spec, opts, &native_clock, run))
    }

    /// `tune` that awaits the GPU instead of blocking (the browser's path), timed by `clock`.
    pub async fn tune_async<S: KernelSpec + Clone>(
        &self,
        spec: &S,
        opts: &TuneOptions,
        clock: Clock<'_>,
        run: impl FnMut(&mut Recorder, &S::Config) -> Result<Tensor>,
    ) -> Result<TuneReport> {
        let mut problem = Captured::new(spec.clone(), ReplayFactory::ready(run));
        self.tune_kernel(&mut problem, opts, clock).await
    }

    /// Tunes one problem: the default's output is the reference, every other candidate of the
    /// default's arithmetic (approximate ones only without `opts.exact`) is checked against it
    /// and timed until the budget ends, and the winner is recorded for this device.
    pub async fn tune_kernel(
        &self,
        problem: &mut dyn TunableKernel,
        opts: &TuneOptions,
        clock: Clock<'_>,
    ) -> Result<TuneReport> {
        let t0 = clock();
        let budget = opts.budget.as_secs_f64();
        let min_batch = opts.min_batch.as_secs_f64();
        let candidates = problem.prepare(self)?;
        // Wait for work already queued (weights just uploaded, earlier problems) so none of it
        // is charged to the default's checked run, which decides whether the problem is slow.
        let flush = self.upload_u32(&[1], &[0])?;
        self.read_bytes(&flush).await?;
        let (first, ref_bytes, ref_t) = {
            let mut rec = self.recorder();
            let out = problem.run(&mut rec, 0)?;
            let t = clock();
            rec.submit()?;
            let bytes = self.read_bytes(&out).await?;
            (out, bytes, clock() - t)
        };
        let reference: Vec<f32> = bytemuck::pod_collect_to_vec(&ref_bytes);
        let max_reps = (BATCH_BYTES / first.bytes().max(1)).clamp(1, 1 << 16) as u32;
        // A problem whose single run already lasts several batches (big matrices on software
        // adapters) is timed by the checked run itself: repeating it would eat the budget
        // before any candidate is tried.
        let slow = ref_t >= 4.0 * min_batch;
        // Whether every timing came from GPU timestamps.
        let mut gpu_timed = !slow;
        let timing_start = clock();
        let default_t = if slow {
            ref_t
        } else {
            let (t, g) = time_candidate(self, min_batch, max_reps, clock, &mut |rec| {
                problem.run(rec, 0)
            })
            .await?;
            gpu_timed &= g;
            t
        };
        // The rematch's timings (2 per round) come out of this problem's budget: candidates
        // stop starting early enough to leave room for them.
        let reserve = match slow {
            true => 0.0,
            false => 2.0 * REMATCH_ROUNDS as f64 * (clock() - timing_start),
        };
        let (mut best, mut best_t) = (0usize, default_t);
        let (mut tried, mut rejected, mut skipped) = (1u32, 0u32, 0u32);
        let mut order: Vec<usize> = (1..candidates.len()).collect();
        if slow {
            // Few candidates of a slow problem fit the budget: visit the space spread out
            // (every 8th, then every 4th, ...) so kernels of every kind get a turn early.
            order = spread(order);
        }
        let arithmetic = candidates[0].arithmetic;
        for i in order {
            let cand = &candidates[i];
            if cand.arithmetic != arithmetic {
                continue;
            }
            let tolerance = match cand.approximate {
                Some(_) if opts.exact => continue,
                Some(t) => t.max(opts.max_nmse),
                None => opts.max_nmse,
            };
            if clock() - t0 + reserve >= budget {
                skipped += 1;
                continue;
            }
            // A candidate that fails to compile or run on this device simply loses.
            let mut rec = self.recorder();
            let got = match problem.run(&mut rec, i) {
                Ok(o) => {
                    let t = clock();
                    match rec.submit() {
                        Ok(_) => self.read_bytes(&o).await.map(|b| (b, clock() - t)),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            let Ok((got, once_t)) = got else {
                rejected += 1;
                continue;
            };
            let got: Vec<f32> = bytemuck::pod_collect_to_vec(&got);
            if nmse(&got, &reference) > tolerance {
                rejected += 1;
                continue;
            }
            let t = if slow {
                once_t
            } else {
                let (t, g) = time_candidate(self, min_batch, max_reps, clock, &mut |rec| {
                    problem.run(rec, i)
                })
                .await?;
                gpu_timed &= g;
                t
            };
            tried += 1;
            if t < best_t {
                best = i;
                best_t = t;
            }
        }
        // Rematch. The default was timed first (GPU clocks may not have settled yet) and the
        // winner is the minimum of many noisy timings, so both are timed again, alternately,
        // and the winner stays only if it still beats the default by REMATCH_MARGIN. (An H100
        // tune without this made decode 17% slower: defaults timed at 2-3x their in-model
        // time lost to candidates that were slower in the model.)
        let mut default_t = default_t;
        if !slow && best != 0 {
            let (mut d, mut w) = (f64::INFINITY, f64::INFINITY);
            for _ in 0..REMATCH_ROUNDS {
                let (t, g) = time_candidate(self, min_batch, max_reps, clock, &mut |rec| {
                    problem.run(rec, 0)
                })
                .await?;
                gpu_timed &= g;
                d = d.min(t);
                let (t, g) = time_candidate(self, min_batch, max_reps, clock, &mut |rec| {
                    problem.run(rec, best)
                })
                .await?;
                gpu_timed &= g;
                w = w.min(t);
            }
            default_t = d;
            if w < d * (1.0 - REMATCH_MARGIN) {
                best_t = w;
            } else {
                best = 0;
                best_t = d;
            }
        }
        let rec = TuneRecord {
            winner: candidates[best].key.clone(),
            default: candidates[0].key.clone(),
            default_us: default_t * 1e6,
            tuned_us: best_t * 1e6,
            candidates: tried,
            checksum: problem.checksum(best)?,
        };
        problem.release();
        let tune_key = problem.tune_key();
        self.record_winner(&tune_key, rec.clone());
        Ok(TuneReport {
            tune_key,
            default_key: rec.default,
            winner_key: rec.winner,
            default_us: rec.default_us,
            tuned_us: rec.tuned_us,
            speedup: rec.default_us / rec.tuned_us.max(1e-9),
            tried,
            rejected,
            skipped,
            spent_ms: (clock() - t0) * 1e3,
            timer: if slow {
                "single-run"
            } else if gpu_timed {
                "gpu-timestamps"
            } else {
                "wall-clock"
            },
        })
    }

    /// Files `rec` under `tune_key` for this device; ops use it from their next kernel choice.
    fn record_winner(&self, tune_key: &str, rec: TuneRecord) {
        let fingerprint = self.profile().fingerprint();
        if let Ok(mut r) = self.tuning.lock() {
            r.insert(&fingerprint, tune_key, rec);
        }
        if let Ok(mut m) = self.tuned_memo.lock() {
            m.remove(tune_key);
        }
        if let Ok(mut m) = self.tuned_configs.lock() {
            m.remove(tune_key);
        }
        self.forget_chosen_kernels();
    }
}
