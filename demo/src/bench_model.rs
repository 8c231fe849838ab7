//! `webjit bench model`: prefill and decode tokens/s of a GGUF decoder, on the real file or on
//! weights synthesized from its header (`--synthetic-from HEADER`: the file's first bytes up to
//! the tensor data, e.g. `head -c $DATA_START model.gguf`), so a machine that cannot receive
//! the weights still runs the same tensor types and shapes. Speed does not depend on values.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde_json::json;
use webjit_engine::loader::{
    Format, LoadOptions, Loader, LoaderError, NullSink, TensorType, WeightSource, HOST_TENSORS,
};
use webjit_engine::model::decoder::Decoder;
use webjit_engine::model::generate::{GenerateOptions, SampleSettings, Session};
use webjit_engine::{DeviceOptions, Engine, Error, Result};

use crate::args::{at_least, token_count, KvCacheArgs};

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// A GGUF model file: a path, a short name of a fetched model (gemma3-270m, tiny-llama)
    /// or an http:// URL.
    #[arg(long, required_unless_present = "synthetic_from")]
    model: Option<String>,
    /// A GGUF header (the bytes before the tensor data); weights are synthesized.
    #[arg(long, conflicts_with = "model")]
    synthetic_from: Option<PathBuf>,
    #[arg(long, default_value_t = 128, value_parser = token_count())]
    prompt_tokens: usize,
    #[arg(long, default_value_t = 128, value_parser = token_count())]
    gen_tokens: usize,
    /// Repetitions of the whole prefill + decode run (the best is reported).
    #[arg(long, default_value_t = 3, value_parser = at_least::<usize>(1))]
    reps: usize,
    /// Compile shaders without wgpu's bounds checks (webjit kernels check their own).
    #[arg(long)]
    unchecked: bool,
    /// Also time each kernel of a decode step on the GPU (timestamp queries around one pass
    /// per dispatch; best of 3 steps) and report the time per kernel key.
    #[arg(long)]
    profile: bool,
    /// GPU memory the engine may hold, in GiB (default 8: raise it for models above ~5 GB,
    /// e.g. 8B shapes, on a GPU that has the memory).
    #[arg(long, value_name = "GIB", value_parser = at_least::<u32>(1))]
    memory_budget_gib: Option<u32>,
    #[command(flatten)]
    kv: KvCacheArgs,
    #[arg(long)]
    json: bool,
}

/// The header's bytes, then synthetic tensor data with sane block scales (f16 0.01).
pub(crate) struct SynthSource {
    header: Vec<u8>,
    total: u64,
    /// (start, end, type) of each tensor's bytes, sorted by start.
    tensors: Vec<(u64, u64, TensorType)>,
    /// Byte ranges of the RoPE factor tensors: synthesized as f32 1.0 (a factor must be > 0;
    /// speed does not depend on the value).
    ones: Vec<(u64, u64)>,
}

impl SynthSource {
    pub(crate) fn new(path: &std::path::Path) -> Result<Self> {
        let header = std::fs::read(path).map_err(|e| Error::InvalidArgument {
            op: "bench model",
            detail: format!("{}: {e}", path.display()),
        })?;
        let mut loader = Loader::new(Format::Gguf, LoadOptions::default());
        // The header parses without the data; the loader stops at the first tensor byte.
        loader.push(&header, &mut NullSink)?;
        let h = loader.header().ok_or_else(|| Error::BadModel {
            detail: format!(
                "{} does not hold a whole GGUF header ({} bytes)",
                path.display(),
                header.len()
            ),
        })?;
        let mut tensors: Vec<(u64, u64, TensorType)> = h
            .tensors
            .iter()
            // `offset` is absolute (the data section's start is already in it).
            .map(|t| (t.offset, t.offset + t.size, t.dtype))
            .collect();
        tensors.sort_by_key(|t| t.0);
        let ones = h
            .tensors
            .iter()
            .filter(|t| HOST_TENSORS.contains(&t.name.as_str()) && t.dtype == TensorType::F32)
            .map(|t| (t.offset, t.offset + t.size))
            .collect();
        let total = h.total_bytes;
        let header = header[..h.data_start.min(header.len() as u64) as usize].to_vec();
        Ok(Self {
            header,
            total,
            tensors,
            ones,
        })
    }

    /// Fills `out` with the bytes from `pos` on, one region (header, a tensor, a gap) at a
    /// time, so the region is looked up once per span rather than per byte.
    fn fill(&self, mut pos: u64, mut out: &mut [u8]) {
        while !out.is_empty() {
            let n = if let Some(h) = self.header.get(pos as usize..).filter(|h| !h.is_empty()) {
                let n = h.len().min(out.len());
                out[..n].copy_from_slice(&h[..n]);
                n
            } else if let Some(&(start, end)) = self.ones.iter().find(|r| r.0 <= pos && pos < r.1) {
                let n = ((end - pos) as usize).min(out.len());
                let one = 1.0f32.to_le_bytes();
                for (i, b) in out[..n].iter_mut().enumerate() {
                    *b = one[((pos + i as u64 - start) % 4) as usize];
                }
                n
            } else {
                let i = self.tensors.partition_point(|t| t.0 <= pos);
                match i.checked_sub(1).and_then(|i| self.tensors.get(i)) {
                    Some(&(start, end, ty)) if pos < end => {
                        let n = ((end - pos) as usize).min(out.len());
                        for (i, b) in out[..n].iter_mut().enumerate() {
                            *b = tensor_byte(pos + i as u64, start, ty);
                        }
                        n
                    }
                    // A gap (alignment padding) up to the next tensor, or past the last one.
                    _ => {
                        let next = self.tensors.get(i).map_or(u64::MAX, |t| t.0);
                        let n = (next.saturating_sub(pos) as usize).clamp(1, out.len());
                        out[..n].fill(0);
                        n
                    }
                }
            };
            pos += n as u64;
            out = &mut out[n..];
        }
    }
}

/// Byte `pos` of a synthesized tensor of type `ty` starting at `start`: hashed bits, with
/// scales and the top bytes of floats set so that values stay small and finite.
fn tensor_byte(pos: u64, start: u64, ty: TensorType) -> u8 {
    let rel = pos - start;
    let hash = {
        let mut z = pos.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z ^= z >> 29;
        (z.wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 56) as u8
    };
    // f16 0.01 = 0x211f, little-endian.
    const F16_SCALE: [u8; 2] = [0x1f, 0x21];
    let scales: &[u64] = match ty {
        TensorType::Q4_0 | TensorType::Q5_0 | TensorType::Q8_0 => &[0],
        TensorType::Q4_1 | TensorType::Q5_1 | TensorType::Q4K | TensorType::Q5K => &[0, 2],
        TensorType::Q2K => &[80, 82],
        TensorType::Q3K => &[108],
        TensorType::Q6K => &[208],
        TensorType::IQ4NL | TensorType::IQ4XS => &[0],
        TensorType::TQ1_0 => &[52],
        TensorType::TQ2_0 => &[64],
        // The E8M0 scale byte: 120 is 2^-8 once halved.
        TensorType::MXFP4 if rel.is_multiple_of(ty.block_bytes()) => return 120,
        TensorType::MXFP4 => &[],
        TensorType::IQ2XXS
        | TensorType::IQ2XS
        | TensorType::IQ2S
        | TensorType::IQ3XXS
        | TensorType::IQ3S
        | TensorType::IQ1S => &[0],
        // IQ1_M: the f16's nibbles are the top nibbles of the scale words' odd bytes 49..55.
        TensorType::IQ1M => {
            let b = rel % ty.block_bytes();
            if (49..56).contains(&b) && b % 2 == 1 {
                let nib = (0x211f >> (4 * ((b - 49) / 2))) & 0xf;
                return (hash & 0x0f) | ((nib as u8) << 4);
            }
            &[]
        }
        TensorType::F32 => {
            // Small values: the top byte 0x3c/0xbc keeps |x| around 0.01.
            return match rel % 4 {
                3 => 0x3c | (hash & 0x80),
                _ => hash,
            };
        }
        TensorType::F16 | TensorType::BF16 => {
            return match rel % 2 {
                1 => 0x20 | (hash & 0x80),
                _ => hash,
            };
        }
        TensorType::Other(..) => return hash,
    };
    let in_block = rel % ty.block_bytes();
    for &s in scales {
        if in_block == s || in_block == s + 1 {
            return F16_SCALE[(in_block - s) as usize];
        }
    }
    hash
}

impl WeightSource for SynthSource {
    fn len(&mut self) -> Result<u64, LoaderError> {
        Ok(self.total)
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), LoaderError> {
        self.fill(offset, buf);
        Ok(())
    }
}

pub fn run(args: ModelArgs) -> Result<()> {
    let mut options = DeviceOptions {
        unchecked_shaders: args.unchecked,
        ..Default::default()
    };
    if let Some(gib) = args.memory_budget_gib {
        options.memory_budget = u64::from(gib) << 30;
    }
    let engine = Engine::new_blocking(options)?;
    let t0 = Instant::now();
    // --profile appends its 8 timed steps after the prompt.
    let max_context = args.prompt_tokens + (args.gen_tokens + 1).max(9);
    let (header, dec) = match (&args.model, &args.synthetic_from) {
        (Some(m), _) => {
            let mut file = crate::model_ref::resolve(m, "bench model")?.open()?;
            let mut src = crate::progress::ProgressSource::new(file.as_mut(), "loading")?;
            Decoder::load_with_kv(&engine, &mut src, Some(max_context), args.kv.kv_cache)?
        }
        (None, Some(h)) => Decoder::load_with_kv(
            &engine,
            &mut SynthSource::new(h)?,
            Some(max_context),
            args.kv.kv_cache,
        )?,
        (None, None) => unreachable!("clap requires one of them"),
    };
    let load_s = t0.elapsed().as_secs_f64();
    let vocab = dec.cfg.vocab as u32;
    let mut session = Session::new(&engine, dec)?;
    // A fixed pseudo-random prompt (ids are irrelevant to speed); greedy decode.
    let prompt: Vec<u32> = (0..args.prompt_tokens as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) % vocab.max(1))
        .collect();
    let greedy = SampleSettings::GREEDY;
    let (mut best_prefill, mut best_decode, mut best_sync) = (f64::MAX, f64::MAX, f64::MAX);
    let (mut dispatches, mut record_ms, mut submit_ms) = (0u32, f64::MAX, f64::MAX);
    let mut queued_behind = 0usize;
    let opts = GenerateOptions {
        max_tokens: args.gen_tokens + 1,
        ..Default::default()
    };
    // Rep 0 also compiles every pipeline; it is run once more than asked and not counted.
    for rep in 0..=args.reps {
        // What `generate` does: prefill, then pipelined decode (the next step is on the GPU
        // while the host reads the previous token).
        session.reset();
        let g = session.generate(&engine, &prompt, &opts, &|_| false, &mut |_| true)?;
        dispatches = g.dispatches_per_token;
        queued_behind = g.queued_behind;
        // The same steps one at a time, waiting for each token (shows the host recording time).
        session.reset();
        let mut tok = session.step(&engine, &prompt, &greedy)?.result.token;
        let t = Instant::now();
        let (mut rec_s, mut sub_s) = (0.0, 0.0);
        for _ in 0..args.gen_tokens {
            let s = session.step(&engine, &[tok], &greedy)?;
            rec_s += s.record_s;
            sub_s += s.submit_s;
            tok = s.result.token;
        }
        let sync = t.elapsed().as_secs_f64();
        if rep > 0 {
            best_prefill = best_prefill.min(g.prefill_s);
            best_decode = best_decode.min(g.decode_s / args.gen_tokens as f64);
            best_sync = best_sync.min(sync / args.gen_tokens as f64);
            if rec_s * 1e3 / (args.gen_tokens as f64) < record_ms {
                record_ms = rec_s * 1e3 / args.gen_tokens as f64;
                submit_ms = sub_s * 1e3 / args.gen_tokens as f64;
            }
        }
    }
    let profile = if args.profile {
        Some(profile_decode(&engine, &mut session, &prompt, &greedy)?)
    } else {
        None
    };
    let prefill_tok_s = args.prompt_tokens as f64 / best_prefill;
    let decode_tok_s = 1.0 / best_decode;
    let decode_sync_tok_s = 1.0 / best_sync;
    let v = json!({
        "model": args.model.clone().or_else(|| args.synthetic_from.as_ref().map(|p| p.display().to_string())),
        "synthetic": args.synthetic_from.is_some(),
        "architecture": header.architecture,
        "device": engine.profile().name,
        "unchecked": args.unchecked,
        "kv_cache": session.decoder.kv_dtype().map(|t| t.name()),
        "kv_cache_bytes": session.decoder.kv_cache_bytes(),
        "load_s": load_s,
        "prompt_tokens": args.prompt_tokens,
        "gen_tokens": args.gen_tokens,
        "prefill_tok_s": prefill_tok_s,
        "decode_tok_s": decode_tok_s,
        "decode_ms_per_token": 1e3 / decode_tok_s,
        "decode_sync_tok_s": decode_sync_tok_s,
        "decode_note": "decode_tok_s: generate's pipelined loop (the step after each awaited token already queued); decode_sync_tok_s: one step at a time, waiting for each token",
        "dispatches_per_token": dispatches,
        "overhead_ms_per_token": record_ms,
        "overhead_submit_ms_per_token": submit_ms,
        "overhead_note": "host time to record and submit one decode step (forward + sampling), from the one-at-a-time loop; overhead_submit_ms_per_token is the part spent in submit (finishing the command encoder and handing it to the queue)",
    });
    let mut v = v;
    v["decode_queued_behind"] = json!(queued_behind);
    v["queued_behind_note"] = json!("decode tokens of generate's loop whose readback was awaited with the next step already queued on the GPU (all but the first and last when pipelining works)");
    if let Some(p) = &profile {
        v["profile"] = p.clone();
    }
    if args.json {
        println!("{}", crate::run_info::stamped(v, Some(&engine)));
    } else {
        println!(
            "prefill {} tokens: {prefill_tok_s:.1} tok/s; decode {} tokens: {decode_tok_s:.1} tok/s \
             ({:.3} ms/token; {decode_sync_tok_s:.1} tok/s one step at a time; \
             {dispatches} dispatches/token, {record_ms:.3} ms/token recording)",
            args.prompt_tokens,
            args.gen_tokens,
            1e3 / decode_tok_s
        );
        println!("{}", crate::args::kv_cache_summary(&session.decoder));
        if let Some(p) = &profile {
            let f = |k: &str| p[k].as_f64().unwrap_or(0.0);
            println!(
                "GPU time of one decode step, one pass per dispatch: {:.1} us in {} dispatches \
                 (as generate records it: {:.1} us); per-dispatch floor {:.2} us: {:.1} us \
                 ({:.0}%) of the step is below it",
                f("gpu_us_per_step"),
                p["dispatches"],
                f("gpu_us_per_step_shared_passes"),
                f("floor_us"),
                f("below_floor_us"),
                100.0 * f("below_floor_share")
            );
            let floor = f("floor_us");
            for k in p["kernels"].as_array().into_iter().flatten() {
                let (us, n) = (
                    k["us"].as_f64().unwrap_or(0.0),
                    k["count"].as_f64().unwrap_or(0.0),
                );
                println!(
                    "  {:>9.1} us  {:>4} x  {:>7.2} us each, {:>7.2} above the floor  {}",
                    us,
                    n,
                    us / n.max(1.0),
                    (us / n.max(1.0) - floor).max(0.0),
                    k["key"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}

/// Per-kernel GPU time of a decode step after the prompt: the best of 3 profiled steps for
/// each dispatch, summed by kernel key, most expensive first.
fn profile_decode(
    engine: &Engine,
    session: &mut Session,
    prompt: &[u32],
    greedy: &SampleSettings,
) -> Result<serde_json::Value> {
    session.reset();
    let tok = session.step(engine, prompt, greedy)?.result.token;
    let mut best: Vec<(String, f64)> = Vec::new();
    for _ in 0..3 {
        let step = pollster::block_on(session.profile_step_async(engine, tok, greedy, true))?;
        if best.is_empty() {
            best = step;
        } else {
            for (b, (_, us)) in best.iter_mut().zip(step) {
                b.1 = b.1.min(us);
            }
        }
    }
    let mut by_key: Vec<(String, u32, f64)> = Vec::new();
    for (k, us) in &best {
        match by_key.iter_mut().find(|e| &e.0 == k) {
            Some(e) => {
                e.1 += 1;
                e.2 += us;
            }
            None => by_key.push((k.clone(), 1, *us)),
        }
    }
    by_key.sort_by(|a, b| b.2.total_cmp(&a.2));
    let total: f64 = best.iter().map(|b| b.1).sum();
    // The same step recorded as generate records it (dispatches sharing passes): its GPU
    // time without the per-pass cost that one pass per dispatch adds. Best of 5.
    let mut whole = f64::MAX;
    for _ in 0..5 {
        let passes = pollster::block_on(session.profile_step_async(engine, tok, greedy, false))?;
        whole = whole.min(passes.iter().map(|p| p.1).sum());
    }
    // The per-dispatch floor: the cheapest dispatch of the step (a one-row norm or the sampler's
    // last pass does almost no work), so what every dispatch costs at least. The share of the
    // step below it is what fewer dispatches would save; the rest is work.
    let floor = best.iter().map(|b| b.1).fold(f64::MAX, f64::min);
    let floor = if floor.is_finite() { floor } else { 0.0 };
    let below: f64 = best.iter().map(|b| b.1.min(floor)).sum();
    Ok(json!({
        "gpu_us_per_step": total,
        "floor_us": floor,
        "below_floor_us": below,
        "below_floor_share": if total > 0.0 { below / total } else { 0.0 },
        "floor_note": "floor_us: the cheapest dispatch of the step, what each dispatch costs at least; below_floor_us: dispatches x floor (each dispatch's time up to the floor), the step's fixed cost; the rest is work above the floor",
        "gpu_us_per_step_shared_passes": whole,
        "shared_passes_note": "the whole step recorded as in generate (dispatches share compute passes), timed by timestamps at the start and end of each pass: the step's GPU time",
        "dispatches": best.len(),
        "note": "one compute pass per dispatch with timestamp queries: no overlap between neighbouring dispatches",
        "kernels": by_key.iter().map(|(k, c, us)| json!({"key": k, "count": c, "us": us})).collect::<Vec<_>>(),
    }))
}
