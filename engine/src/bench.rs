//! Timing helpers for `webjit bench`: wall clock around batches of dispatches recorded into one
//! submission, repeated until the batch is long enough to swamp submission overhead.

use std::time::{Duration, Instant};

use webjit_jit::kernels::probe::ProbeSpec;
use webjit_jit::KernelSpec;

use crate::error::Result;
use crate::recorder::{Bind, Recorder};
use crate::tensor::DType;
use crate::Engine;

/// Average time of one call of `record` (which records one op), measured over batches of
/// `reps` calls in one submission after one warm-up batch. Grows `reps` until a batch takes
/// at least `min_batch`.
pub fn time_op(
    engine: &Engine,
    min_batch: Duration,
    mut record: impl FnMut(&mut Recorder) -> Result<()>,
) -> Result<Duration> {
    let mut reps = 1u32;
    let run =
        |reps: u32, record: &mut dyn FnMut(&mut Recorder) -> Result<()>| -> Result<Duration> {
            let mut rec = engine.recorder();
            for _ in 0..reps {
                record(&mut rec)?;
            }
            let t0 = Instant::now();
            rec.submit()?;
            engine.gpu.wait_idle()?;
            Ok(t0.elapsed())
        };
    run(1, &mut record)?; // warm-up: compiles pipelines, faults in memory
    loop {
        let t = run(reps, &mut record)?;
        if t >= min_batch || reps >= 1 << 16 {
            // One more batch at this size, keep the faster (less disturbed) of the two.
            let t2 = run(reps, &mut record)?;
            return Ok(t.min(t2) / reps);
        }
        let grow = (min_batch.as_secs_f64() / t.as_secs_f64().max(1e-6))
            .ceil()
            .clamp(2.0, 64.0) as u32;
        reps = reps.saturating_mul(grow).min(1 << 16);
    }
}

/// The device's f32 FMA rate in GFLOP/s, measured by the probe kernel.
pub fn fma_gflops(engine: &Engine, min_batch: Duration) -> Result<f64> {
    let max_groups = engine
        .profile()
        .limits
        .max_compute_workgroups_per_dimension
        .min(65535);
    let spec = ProbeSpec {
        groups: max_groups.min(8192),
    };
    let kernel = engine.pipelines.get(&engine.gpu, &spec, &())?;
    let invocations = spec.groups as u64 * ProbeSpec::WG as u64;
    let out = engine.empty(&[invocations as usize], DType::F32)?;
    let mut iters = 64u32;
    loop {
        #[repr(C)]
        #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
        struct P {
            iters: u32,
            a: f32,
            b: f32,
            pad: u32,
        }
        let p = P {
            iters,
            a: 0.999,
            b: 0.001,
            pad: 0,
        };
        let t = time_op(engine, Duration::from_millis(5), |rec| {
            rec.dispatch(
                &kernel,
                bytemuck::bytes_of(&p),
                &[Bind::whole("out", &out)],
                spec.dispatch(&()),
            )
        })?;
        if t >= min_batch || iters >= 1 << 20 {
            let flops =
                invocations as f64 * iters as f64 * ProbeSpec::FLOPS_PER_ITER_PER_INVOCATION;
            return Ok(flops / t.as_secs_f64() / 1e9);
        }
        iters = iters.saturating_mul(4);
    }
}
