//! `webjit load`: streams a GGUF or safetensors file through the chunk-fed loader (as the
//! browser will from the network) and reports throughput, time to the first and to the last
//! layer ready, and the peak host heap the load took.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde_json::json;
use webjit_engine::loader::{
    hex, parse_sha256, Format, GpuSink, LoadEvent, LoadOptions, Loader, LoaderError, NullSink,
    TensorInfo, TensorSink, WeightSource,
};
use webjit_engine::{DeviceOptions, Engine, Error, Result};

/// Counts live Rust heap bytes so the CLI can report the load's peak (the whole process:
/// loader, sink conversions and the read buffer; GPU driver memory is not Rust heap).
struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[derive(clap::Args)]
pub struct LoadArgs {
    /// A .gguf or .safetensors file: a path, a short name of a fetched model (gemma3-270m,
    /// minilm-l6, tiny-llama) or an http:// URL (streamed with Range requests).
    #[arg(long)]
    model: String,
    /// Bytes per push, in KiB (the size of network chunks to simulate; 1..=1048576).
    #[arg(long, default_value_t = 1024, value_parser = crate::args::whole::<usize>(1, 1 << 20, ""))]
    chunk_kib: usize,
    /// Only parse and hash the tensors; no GPU upload.
    #[arg(long)]
    no_gpu: bool,
    /// Also compute the file's sha256 (costs CPU; implied by --sha256).
    #[arg(long)]
    hash: bool,
    /// Expected sha256 of the whole file (hex), checked at the end.
    #[arg(long)]
    sha256: Option<String>,
    #[arg(long)]
    json: bool,
}

/// Forwards to the real sink and timestamps the events.
struct Timed<'a> {
    inner: &'a mut dyn TensorSink,
    start: Instant,
    header: Option<f64>,
    first_layer: Option<f64>,
    last_layer: Option<f64>,
    layers: usize,
}

impl TensorSink for Timed<'_> {
    fn event(&mut self, e: &LoadEvent<'_>) -> std::result::Result<(), LoaderError> {
        let t = self.start.elapsed().as_secs_f64();
        match e {
            LoadEvent::Header(_) => self.header = Some(t),
            LoadEvent::LayerReady { .. } => {
                self.first_layer.get_or_insert(t);
                self.last_layer = Some(t);
                self.layers += 1;
            }
            _ => {}
        }
        self.inner.event(e)
    }
    fn tensor_data(
        &mut self,
        i: &TensorInfo,
        o: u64,
        b: &[u8],
    ) -> std::result::Result<(), LoaderError> {
        self.inner.tensor_data(i, o, b)
    }
    fn tensor_ready(&mut self, i: &TensorInfo) -> std::result::Result<(), LoaderError> {
        self.inner.tensor_ready(i)
    }
}

pub fn run(args: LoadArgs) -> Result<()> {
    // The model is found (and its length known) before the GPU is set up, so a wrong
    // --model fails at once with one line.
    let model = crate::model_ref::resolve(&args.model, "load")?.weights_file();
    let mut file = model.open()?;
    let mut src = crate::progress::ProgressSource::new(file.as_mut(), "loading")?;
    let sha256 = match &args.sha256 {
        Some(h) => Some(parse_sha256(h).ok_or_else(|| Error::InvalidArgument {
            op: "load",
            detail: format!("--sha256 {h:?} is not 64 hex digits"),
        })?),
        None => None,
    };
    let engine = if args.no_gpu {
        None
    } else {
        Some(Engine::new_blocking(DeviceOptions::default())?)
    };
    let len = src.len()?;
    let mut first = [0u8; Format::DETECT_BYTES];
    let n = (len as usize).min(first.len());
    src.read_at(0, &mut first[..n])?;
    let format = Format::detect(&first[..n])?;
    let opts = LoadOptions {
        expected_len: Some(len),
        sha256,
        compute_sha256: args.hash,
        // BERT checkpoints carry an I64 `position_ids` buffer the engine does not need.
        skip_unsupported: true,
    };

    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let mut null_sink = NullSink;
    let mut gpu_sink = engine.as_ref().map(GpuSink::new);
    let inner: &mut dyn TensorSink = match gpu_sink.as_mut() {
        Some(s) => s,
        None => &mut null_sink,
    };
    let start = Instant::now();
    let mut timed = Timed {
        inner,
        start,
        header: None,
        first_layer: None,
        last_layer: None,
        layers: 0,
    };
    let mut loader = Loader::new(format, opts);
    let chunk = args.chunk_kib << 10;
    let mut buf = vec![0u8; chunk.min(len.max(1) as usize)];
    let mut off = 0u64;
    let mut max_buffered = 0usize;
    while off < len {
        let n = (len - off).min(buf.len() as u64) as usize;
        src.read_at(off, &mut buf[..n])?;
        loader.push(&buf[..n], &mut timed)?;
        max_buffered = max_buffered.max(loader.buffered_bytes());
        off += n as u64;
    }
    let summary = loader.finish(&mut timed)?;
    if let Some(e) = &engine {
        // Ready means on the GPU: wait for the uploads to land.
        e.gpu.queue.submit(std::iter::empty());
        e.gpu.wait_idle()?;
    }
    let all_ready = start.elapsed().as_secs_f64();
    src.finish();
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    let header = loader.header();
    let v = json!({
        "model": model.to_string(),
        "format": format.name(),
        "architecture": header.and_then(|h| h.architecture.clone()),
        "bytes": summary.bytes,
        "chunk_bytes": chunk,
        "gpu_upload": engine.is_some(),
        "device": engine.as_ref().map(|e| e.profile().name.clone()),
        "tensors": summary.tensors,
        "skipped_tensors": summary.skipped,
        "layers": timed.layers,
        "header_bytes": header.map(|h| h.data_start),
        "seconds": all_ready,
        "bytes_per_s": summary.bytes as f64 / all_ready,
        "time_to_header_s": timed.header,
        "time_to_first_layer_s": timed.first_layer,
        "time_to_last_layer_s": timed.last_layer,
        "time_to_all_ready_s": all_ready,
        "peak_heap_bytes": peak,
        "loader_max_buffered_bytes": max_buffered,
        "loader_largest_header_field_bytes": loader.largest_field(),
        "sha256": summary.sha256.map(|h| hex(&h)),
        "sha256_checked": args.sha256.is_some(),
    });
    if args.json {
        println!("{}", crate::run_info::stamped(v, engine.as_ref()));
    } else {
        let ms = |t: Option<f64>| {
            t.map(|t| format!("{:.1} ms", t * 1e3))
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "model          {} ({}, {})",
            model,
            format.name(),
            v["architecture"]
        );
        println!(
            "bytes          {} in {} KiB chunks",
            summary.bytes, args.chunk_kib
        );
        println!(
            "tensors        {} ({} skipped), {} layers",
            summary.tensors, summary.skipped, timed.layers
        );
        println!(
            "upload         {}",
            if engine.is_some() {
                "GPU"
            } else {
                "none (--no-gpu: parse only)"
            }
        );
        println!(
            "throughput     {:.1} MB/s",
            summary.bytes as f64 / all_ready / 1e6
        );
        println!("header ready   {}", ms(timed.header));
        println!("first layer    {}", ms(timed.first_layer));
        println!("last layer     {}", ms(timed.last_layer));
        println!("all ready      {}", ms(Some(all_ready)));
        println!(
            "peak heap      {:.2} MiB (loader buffers at most {} bytes)",
            peak as f64 / 1048576.0,
            max_buffered
        );
        if let Some(h) = summary.sha256 {
            println!(
                "sha256         {}{}",
                hex(&h),
                if args.sha256.is_some() {
                    " (checked)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}
