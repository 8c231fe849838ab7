//! `webjit bench qmatmul` and `webjit bench read`: quantized matvec speed against the device's
//! streaming-read bandwidth (a decode matvec is memory-bound, so the read rate measured in the
//! same run is its ceiling).

use std::time::Duration;

use serde_json::json;
use webjit_engine::jit::kernels::bandwidth::{ReadProbeConfig, ReadProbeSpec};
use webjit_engine::jit::kernels::qmatvec::{Path, QMatvecConfig, QMATVEC_MAX_M};
use webjit_engine::jit::quant::{self, GgmlType};
use webjit_engine::jit::KernelSpec;
use webjit_engine::{bench, ops, Bind, DType, DeviceOptions, Engine, Error, Recorder, Result};

/// Records one timed op.
type RecordFn<'a> = Box<dyn Fn(&mut Recorder) -> Result<()> + 'a>;

fn engine(unchecked: bool) -> Result<Engine> {
    Engine::new_blocking(DeviceOptions {
        unchecked_shaders: unchecked,
        ..Default::default()
    })
}

/// Best streaming-read bandwidth in GB/s over `mib` MiB (clamped to one binding), over the
/// probe's workgroup sizes.
pub fn read_gbps(engine: &Engine, mib: u64, min_batch: Duration) -> Result<(f64, u64, String)> {
    read_probe(engine, mib << 20, 1, min_batch)
}

/// The streaming-read probe over `bytes` (rounded down to 16, capped at the max binding),
/// cycling through `copies` buffers of that size as `--cold-mib` cycles weight copies.
pub fn read_probe(
    engine: &Engine,
    bytes: u64,
    copies: usize,
    min_batch: Duration,
) -> Result<(f64, u64, String)> {
    let max = engine
        .gpu
        .max_binding()
        .min(engine.profile().limits.max_buffer_size);
    let bytes = bytes.min(max) / 16 * 16;
    if bytes == 0 {
        return Err(Error::InvalidArgument {
            op: "bench read",
            detail: "--mib must be at least 1".into(),
        });
    }
    let words: Vec<u32> = (0..bytes / 4)
        .map(|i| (i as u32).wrapping_mul(2654435761))
        .collect();
    let srcs = (0..copies.max(1))
        .map(|_| engine.upload_u32(&[words.len()], &words))
        .collect::<Result<Vec<_>>>()?;
    drop(words);
    let next = std::cell::Cell::new(0usize);
    let mut best = (0.0, String::new());
    for wg in [64u32, 128, 256] {
        let spec = ReadProbeSpec {
            bytes,
            groups: ((bytes / 16) / (wg as u64 * 8)).clamp(1, 65535 * 4) as u32,
        };
        let cfg = ReadProbeConfig { wg };
        if spec.check(engine.profile(), &cfg).is_err() {
            continue;
        }
        let out = engine.empty(&[spec.invocations(&cfg) as usize], DType::U32)?;
        let kernel = engine.pipelines.get(&engine.gpu, &spec, &cfg)?;
        let p = spec.params();
        // The uniform's bytes (four u32; the CLI does not depend on bytemuck).
        let pb: Vec<u8> = [p.len, p.pad0, p.pad1, p.pad2]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let t = bench::time_op(engine, min_batch, |rec| {
            let i = next.get();
            next.set(i + 1);
            rec.dispatch(
                &kernel,
                &pb,
                &[
                    Bind::whole("src", &srcs[i % srcs.len()]),
                    Bind::whole("out", &out),
                ],
                spec.dispatch(&cfg),
            )
        })?;
        let gbps = bytes as f64 / t.as_secs_f64() / 1e9;
        if gbps > best.0 {
            best = (gbps, spec.key(&cfg));
        }
    }
    Ok((best.0, bytes, best.1))
}

pub fn read(mib: u64, min_batch: Duration, unchecked: bool, as_json: bool) -> Result<()> {
    let engine = engine(unchecked)?;
    let (gbps, bytes, key) = read_gbps(&engine, mib, min_batch)?;
    if as_json {
        println!(
            "{}",
            crate::run_info::stamped(
                json!({"bench": "read", "device": engine.profile().name, "bytes": bytes,
                       "config": key, "read_gbps": gbps}),
                Some(&engine)
            )
        );
    } else {
        println!(
            "{}: streaming read of {} MiB: {gbps:.1} GB/s ({key})",
            engine.profile().name,
            bytes >> 20
        );
    }
    Ok(())
}

/// The configs a bench run times: the whole space (`--sweep`), the one named by `--config`,
/// or the default.
fn chosen_configs<S: KernelSpec>(
    spec: &S,
    profile: &webjit_engine::jit::DeviceProfile,
    sweep: bool,
    config: Option<&str>,
) -> Result<Vec<S::Config>> {
    Ok(if sweep {
        spec.space(profile)
    } else if let Some(key) = config {
        vec![spec.config_by_key(profile, key)?]
    } else {
        vec![spec.default_config(profile)]
    })
}

#[allow(clippy::too_many_arguments)]
pub fn qmatmul(
    format: &str,
    m: usize,
    n: usize,
    k: usize,
    config: Option<String>,
    sweep: bool,
    int8: bool,
    cold_mib: u64,
    min_batch: Duration,
    unchecked: bool,
    as_json: bool,
) -> Result<()> {
    let op = "bench qmatmul";
    let format = GgmlType::from_name(format).ok_or_else(|| Error::InvalidArgument {
        op,
        detail: format!(
            "unknown format `{format}`; one of: {}",
            GgmlType::ALL.map(|t| t.name()).join(", ")
        ),
    })?;
    let engine = engine(unchecked)?;
    let row_bytes = format.row_bytes(k)?;
    let raw_len = row_bytes
        .checked_mul(n)
        .ok_or_else(|| Error::InvalidArgument {
            op,
            detail: "n * k overflows".into(),
        })?;
    // Refused before the host makes the weight (a huge --n/--k must not abort there).
    let budget = engine.gpu.options.memory_budget;
    if raw_len as u64 > budget {
        return Err(Error::OutOfMemory {
            what: format!(
                "{} weight [{n}, {k}] (engine memory budget {budget} bytes)",
                format.name()
            ),
            bytes: raw_len as u64,
        });
    }
    let raw = quant::synth_blocks(format, raw_len / format.block_bytes(), 1);
    // With --cold-mib, runs cycle through enough copies of the weight that they cannot stay
    // in the GPU's last-level cache between runs (as in a model, where each weight is read
    // once per token).
    let copies = (cold_mib << 20)
        .div_ceil(raw_len.max(1) as u64)
        .clamp(1, 256) as usize;
    let ws = (0..copies)
        .map(|_| engine.upload_quantized(format, [n, k], &raw))
        .collect::<Result<Vec<_>>>()?;
    drop(raw);
    let w = &ws[0];
    let next = std::cell::Cell::new(0usize);
    let pick = || {
        let i = next.get();
        next.set(i + 1);
        &ws[i % ws.len()]
    };
    let pick = &pick;
    let x = crate::bench::upload_random(&engine, &[m, k], |n| {
        (0..n)
            .map(|i| ((i % 97) as f32 - 48.0) / 64.0 + 0.01)
            .collect()
    })?;
    let y = engine.empty(&[m, n], DType::F32)?;
    let profile = engine.profile().clone();
    // m <= 8: the decode matvec; more rows: the tiled prefill matmul.
    let kernel_name = if m <= QMATVEC_MAX_M as usize {
        "qmatvec"
    } else {
        "qmatmul"
    };
    if int8 && m > QMATVEC_MAX_M as usize {
        return Err(Error::InvalidArgument {
            op,
            detail: format!("--int8 is a matvec path: m must be 1..={QMATVEC_MAX_M}"),
        });
    }
    let mut runs: Vec<(String, RecordFn<'_>)> = Vec::new();
    if int8 {
        // The int8 configs of the plain matvec, each timed with its activation quantization
        // (as a model step runs them).
        let spec = ops::qmatvec(&x, w).spec()?;
        let int8 = spec
            .space(&profile)
            .into_iter()
            .filter(|c| c.path == Path::Int8);
        let configs: Vec<QMatvecConfig> = match (sweep, config.as_deref()) {
            (true, _) => int8.collect(),
            (false, Some(key)) => vec![spec.config_by_key(&profile, key)?],
            // The int8 path is never the default: its first config stands for it.
            (false, None) => int8.take(1).collect(),
        };
        if configs.is_empty() {
            return Err(Error::InvalidArgument {
                op,
                detail: format!("no int8 path for {}", w.format().name()),
            });
        }
        for c in configs {
            let (x, y) = (&x, &y);
            runs.push((
                spec.key(&c),
                Box::new(move |rec| {
                    ops::qmatvec(x, pick())
                        .out(y)
                        .config(c.clone())
                        .record(rec)
                        .map(|_| ())
                }),
            ));
        }
    } else if m <= QMATVEC_MAX_M as usize {
        let spec = ops::qmatvec(&x, w).spec()?;
        let configs = chosen_configs(&spec, &profile, sweep, config.as_deref())?;
        for c in configs {
            let (x, y) = (&x, &y);
            runs.push((
                spec.key(&c),
                Box::new(move |rec| {
                    ops::qmatvec(x, pick())
                        .out(y)
                        .config(c.clone())
                        .record(rec)
                        .map(|_| ())
                }),
            ));
        }
    } else {
        let spec = ops::qmatmul(&x, w).spec()?;
        let configs = chosen_configs(&spec, &profile, sweep, config.as_deref())?;
        for c in configs {
            let (x, y) = (&x, &y);
            runs.push((
                spec.key(&c),
                Box::new(move |rec| {
                    ops::qmatmul(x, pick())
                        .out(y)
                        .config(c.clone())
                        .record(rec)
                        .map(|_| ())
                }),
            ));
        }
    }
    let wbytes = w.gguf_bytes() as f64;
    let flops = 2.0 * (m * n * k) as f64;
    let mut results = Vec::new();
    for (key, record) in &runs {
        let t = bench::time_op(&engine, min_batch, |rec| record(rec));
        match t {
            Ok(t) => {
                let t = t.as_secs_f64();
                let (gbps, gflops) = (wbytes / t / 1e9, flops / t / 1e9);
                if !as_json {
                    println!(
                        "{key:<48} {:>9.3} ms {gbps:>8.1} GB/s {gflops:>8.1} GFLOP/s",
                        t * 1e3
                    );
                }
                results.push(
                    json!({"config": key, "time_ms": t * 1e3, "gbps": gbps, "gflops": gflops}),
                );
            }
            Err(e) if sweep => {
                if !as_json {
                    println!("{key:<48} failed: {e}");
                }
                results.push(json!({"config": key, "error": e.to_string()}));
            }
            Err(e) => return Err(e),
        }
    }
    let best = results
        .iter()
        .filter(|r| r.get("gbps").is_some())
        .max_by(|a, b| {
            a["gbps"]
                .as_f64()
                .partial_cmp(&b["gbps"].as_f64())
                .unwrap_or(std::cmp::Ordering::Equal)
        })
        .cloned()
        .ok_or_else(|| Error::InvalidArgument {
            op,
            detail: "every config failed".into(),
        })?;
    // The yardsticks, measured in the same run (clocks vary between runs): streaming read for the matvec,
    // the FMA probe for the prefill matmul.
    let read = if sweep {
        Some(read_gbps(&engine, 256, min_batch)?.0)
    } else {
        None
    };
    // The same probe over as many bytes as the weight, cycling as many copies: it pays the
    // same per-dispatch cost, which dominates small matvecs (a few microseconds each).
    let read_same = if sweep && kernel_name == "qmatvec" {
        Some(read_probe(&engine, w.gguf_bytes(), copies, min_batch)?.0)
    } else {
        None
    };
    let fma = if sweep && kernel_name == "qmatmul" {
        Some(bench::fma_gflops(&engine, min_batch)?)
    } else {
        None
    };
    let best_gbps = best["gbps"].as_f64().unwrap_or(0.0);
    let report = json!({
        "bench": "qmatmul",
        "kernel": if int8 { "qmatvec_i8" } else { kernel_name },
        "device": profile.name,
        "backend": profile.backend,
        "format": format.name(),
        "m": m, "n": n, "k": k,
        "weight_bytes": w.gguf_bytes(),
        "segments": w.segments().len(),
        "weight_copies": copies,
        "unchecked_shaders": unchecked,
        "config": best["config"],
        "time_ms": best["time_ms"],
        "gbps": best_gbps,
        "gflops": best["gflops"],
        "read_gbps": read,
        "fraction_of_read": read.map(|r| best_gbps / r),
        "read_same_bytes_gbps": read_same,
        "fraction_of_read_same_bytes": read_same.map(|r| best_gbps / r),
        "fma_gflops": fma,
        "fraction_of_fma": fma.map(|f| best["gflops"].as_f64().unwrap_or(0.0) / f),
        "configs_timed": results.len(),
        "results": if sweep { json!(results) } else { json!(null) },
    });
    if as_json {
        println!("{}", crate::run_info::stamped(report, Some(&engine)));
    } else {
        println!(
            "best: {} {best_gbps:.1} GB/s of weights",
            best["config"].as_str().unwrap_or("?")
        );
        if let Some(r) = read {
            println!(
                "streaming read: {r:.1} GB/s -> {kernel_name} reaches {:.1}% of it",
                100.0 * best_gbps / r
            );
        }
        if let Some(r) = read_same {
            println!(
                "streaming read of the same bytes: {r:.1} GB/s -> {kernel_name} reaches {:.1}% of it",
                100.0 * best_gbps / r
            );
        }
        if let Some(f) = fma {
            println!(
                "fma probe: {f:.1} GFLOP/s -> qmatmul reaches {:.1}% of it",
                100.0 * best["gflops"].as_f64().unwrap_or(0.0) / f
            );
        }
    }
    Ok(())
}
