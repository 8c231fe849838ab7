//! Timing candidates on the GPU: timestamp queries around compute passes where the device has
//! them (also the decode-step profiler's), else the wall clock around batches of runs.

use crate::error::Result;
use crate::recorder::{Arena, Recorder};
use crate::tensor::Tensor;
use crate::Engine;

use super::Clock;

/// Passes of one batch the timestamp queries can time (a batch is usually one pass; ops
/// with copies start new ones).
const TIMED_PASSES: u32 = 64;

/// GPU timing of compute passes with timestamp queries, where the device has them: room for
/// `passes` passes (a begin and an end query each) and the buffer they resolve into.
pub(crate) struct PassTimer {
    pub(crate) set: wgpu::QuerySet,
    pub(crate) resolve: wgpu::Buffer,
    /// Nanoseconds per timestamp tick.
    pub(crate) period_ns: f64,
}

impl PassTimer {
    /// A timer for profiling `passes` passes, or the error to give where the device has no
    /// timestamp queries.
    pub(crate) fn for_profile(engine: &Engine, passes: u32) -> crate::Result<Self> {
        Self::new(engine, passes).ok_or_else(|| crate::Error::InvalidArgument {
            op: "profile",
            detail: "this device has no timestamp queries".into(),
        })
    }

    /// Ends a recording whose passes were timed into this timer's query set: resolves the
    /// queries, submits, and returns each pass's GPU time in microseconds, labelled with the
    /// recorder's pass labels (`profile_dispatches`) or, with `per_dispatch` false, `pass`.
    pub(crate) async fn finish(
        &self,
        engine: &Engine,
        mut rec: crate::Recorder<'_>,
        per_dispatch: bool,
        max: u32,
    ) -> crate::Result<Vec<(String, f64)>> {
        let mut labels = rec.pass_labels().to_vec();
        let n =
            rec.resolve_pass_times(&self.resolve)
                .ok_or_else(|| crate::Error::InvalidArgument {
                    op: "profile",
                    detail: format!("more than {max} passes in one recording"),
                })?;
        if !per_dispatch {
            labels = vec!["pass".to_string(); n as usize];
        }
        let ticks = rec.empty(&[4 * n as usize], crate::DType::U32)?;
        let dst = ticks.segments()[0].buffer.raw().clone();
        rec.copy_raw(&self.resolve, 0, &dst, 0, 16 * n as u64);
        let t: Vec<u64> = bytemuck::pod_collect_to_vec(&engine.submit_and_read(rec, &ticks).await?);
        Ok(labels
            .into_iter()
            .zip(t.chunks_exact(2))
            .map(|(k, p)| (k, p[1].saturating_sub(p[0]) as f64 * self.period_ns * 1e-3))
            .collect())
    }

    pub(crate) fn new(engine: &Engine, passes: u32) -> Option<Self> {
        if !engine.profile().timestamps {
            return None;
        }
        let d = &engine.gpu.device;
        let set = d.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("webjit timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: 2 * passes,
        });
        let resolve = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("webjit timestamps"),
            size: 16 * passes as u64,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let period_ns = engine.gpu.queue.get_timestamp_period() as f64;
        (period_ns > 0.0).then_some(Self {
            set,
            resolve,
            period_ns,
        })
    }

    /// Seconds of GPU time the timed passes of `words` (begin/end tick pairs) took, if every
    /// pair is ordered.
    fn seconds(&self, words: &[u8]) -> Option<f64> {
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(words);
        let mut total = 0u64;
        for pair in ticks.chunks_exact(2) {
            total += pair[1].checked_sub(pair[0])?;
        }
        (total > 0).then_some(total as f64 * self.period_ns * 1e-9)
    }
}

/// Seconds per run of `run`: batches of growing repetition count until one batch lasts
/// `min_batch`, then the better of two such batches. A batch ends when its last output can be
/// read back (natively that waits for the queue; in the browser it awaits the map). Where the
/// device has timestamp queries, a batch's time is the GPU time of its compute passes (no
/// submission or readback latency in it); otherwise the wall clock around the batch.
pub(super) async fn time_candidate(
    engine: &Engine,
    min_batch: f64,
    max_reps: u32,
    clock: Clock<'_>,
    run: &mut dyn FnMut(&mut Recorder) -> Result<Tensor>,
) -> Result<(f64, bool)> {
    let mut reps = 1u32;
    let mut timed = Vec::new();
    // Every run allocates from the same arena reset before it, so each writes the buffers the
    // run before wrote and waits for it (write-after-write): runs form a dependent chain, as
    // ops do in a model step. With fresh buffers, independent runs overlapped on the GPU and
    // small-workgroup configs that win on throughput but lose on latency looked fastest (tuned
    // decode was slower than untuned on an H100).
    let mut arena = Arena::default();
    let timer = PassTimer::new(engine, TIMED_PASSES);
    let mut all_gpu = true;
    loop {
        let mut rec = engine.recorder();
        if let Some(tm) = &timer {
            rec.time_passes(tm.set.clone(), TIMED_PASSES);
        }
        let mut last = None;
        for _ in 0..reps {
            rec.set_arena(arena);
            let out = run(&mut rec);
            arena = rec.take_arena().unwrap_or_default();
            last = Some(out?);
        }
        // The resolved ticks go to a readable tensor after the batch's passes.
        let mut ticks = None;
        if let Some(tm) = &timer {
            if let Some(n) = rec.resolve_pass_times(&tm.resolve) {
                let t = rec.empty(&[4 * n as usize], crate::tensor::DType::U32)?;
                let dst = t.segments()[0].buffer.raw().clone();
                rec.copy_raw(&tm.resolve, 0, &dst, 0, 16 * n as u64);
                ticks = Some(t);
            }
        }
        let t0 = clock();
        rec.submit()?;
        if let Some(out) = last {
            engine.read_bytes(&out.head(1).unwrap_or(out)).await?;
        }
        let wall = clock() - t0;
        let gpu = match (&timer, &ticks) {
            (Some(tm), Some(t)) => tm.seconds(&engine.read_bytes(t).await?),
            _ => None,
        };
        // The batch grows on the wall clock; a GPU time longer than the wall is not trusted.
        let gpu = gpu.filter(|&g| g <= wall * 1.5);
        let t = gpu.unwrap_or(wall);
        if wall >= min_batch || reps >= max_reps {
            timed.push(t);
            all_gpu &= gpu.is_some();
            if timed.len() == 2 {
                return Ok((timed[0].min(timed[1]) / reps as f64, all_gpu));
            }
            continue;
        }
        let grow = (min_batch / wall.max(1e-6)).ceil().clamp(2.0, 64.0) as u32;
        reps = reps.saturating_mul(grow).min(max_reps);
    }
}

/// `v` reordered coarse to fine: indices that are multiples of 8 first, then of 4, 2, 1.
pub(super) fn spread<T>(v: Vec<T>) -> Vec<T> {
    let n = v.len();
    let mut order: Vec<usize> = Vec::with_capacity(n);
    for step in [8, 4, 2, 1] {
        order.extend((0..n).filter(|i| i % step == 0 && (step == 8 || i % (step * 2) != 0)));
    }
    let mut slots: Vec<Option<T>> = v.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

pub(super) fn nmse(got: &[f32], want: &[f32]) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&g, &w) in got.iter().zip(want) {
        if !g.is_finite() {
            return f64::INFINITY;
        }
        num += (g as f64 - w as f64).powi(2);
        den += (w as f64).powi(2);
    }
    if den > 0.0 {
        num / den
    } else {
        num
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn spread_visits_every_index_once_coarse_first() {
        for n in [0, 1, 2, 7, 8, 9, 32, 33] {
            let got = super::spread((0..n).collect::<Vec<usize>>());
            let mut sorted = got.clone();
            sorted.sort();
            assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "n={n}");
            if n == 32 {
                assert_eq!(&got[..4], &[0, 8, 16, 24]);
                assert_eq!(&got[4..8], &[4, 12, 20, 28]);
            }
        }
    }
}
