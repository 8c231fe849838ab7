//! Golden test: all-MiniLM-L6-v2 embeddings against sentence-transformers references recorded
//! by `scripts/record_minilm_refs.py` (tests/data/minilm_refs.json). The weights stream from
//! the file onto the GPU: the heap of the loading thread stays far below the 90.9 MB file, and
//! the way the file is cut into reads does not change a bit of the embeddings.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};

use webjit_engine::loader::source::load_from;
use webjit_engine::loader::{FileSource, Format, GpuSink};
use webjit_engine::model::bert::Bert;
use webjit_engine::{DeviceOptions, Engine};
use webjit_tests::{engine, make_engine, require_model};

/// Counts the heap of threads that ask for it (`counted`), so the other test of this binary,
/// running beside it, does not count.
struct Counting;

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}
static NOW: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn counted() -> bool {
    COUNTED.try_with(|c| c.get()).unwrap_or(false)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() && counted() {
            let n = NOW.fetch_add(l.size() as isize, Ordering::Relaxed) + l.size() as isize;
            PEAK.fetch_max(n, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        if counted() {
            NOW.fetch_sub(l.size() as isize, Ordering::Relaxed);
        }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// The most the heap of this thread grows while `f` runs.
fn peak_heap<T>(f: impl FnOnce() -> T) -> (T, usize) {
    NOW.store(0, Ordering::Relaxed);
    PEAK.store(0, Ordering::Relaxed);
    COUNTED.with(|c| c.set(true));
    let out = f();
    COUNTED.with(|c| c.set(false));
    (out, PEAK.load(Ordering::Relaxed).max(0) as usize)
}

struct Ref {
    text: String,
    ids: Vec<u32>,
    emb: Vec<f32>,
}

fn refs() -> Vec<Ref> {
    let text = include_str!("../data/minilm_refs.json");
    let doc: serde_json::Value =
        serde_json::from_str(text).expect("tests/data/minilm_refs.json parses");
    doc["sentences"]
        .as_array()
        .expect("sentences")
        .iter()
        .map(|s| Ref {
            text: s["text"].as_str().unwrap_or_default().to_string(),
            ids: s["token_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect(),
            emb: s["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect(),
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn minilm_matches_sentence_transformers() {
    let dir = require_model("all-MiniLM-L6-v2");
    let e = engine();
    let mut bert = Bert::load_dir(e, &dir).expect("load MiniLM");
    // The device's own choice, then the other way of running the LayerNorms (inside the
    // projections on GPUs, as dispatches of their own on CPU adapters): both must match.
    let default = bert.norm_in_matmul.unwrap_or(!e.profile().cpu);
    for fused in [default, !default] {
        bert.norm_in_matmul = Some(fused);
        eprintln!("MiniLM with LayerNorms inside the projections: {fused}");
        check(e, &bert);
    }
}

fn check(e: &webjit_engine::Engine, bert: &Bert) {
    let refs = refs();
    assert!(
        refs.len() >= 8
            && refs.iter().any(|r| r.text.is_empty())
            && refs.iter().any(|r| r.ids.len() > 128)
    );
    let texts: Vec<&str> = refs.iter().map(|r| r.text.as_str()).collect();

    // Batched (padded to the longest sentence).
    let (ids, batched) = bert.embed(e, &texts, 32).expect("embed batch");
    for (i, r) in refs.iter().enumerate() {
        assert_eq!(ids[i], r.ids, "token ids of {:?}", r.text);
        let c = cosine(&batched[i], &r.emb);
        assert!(c >= 0.9999, "cosine {c} < 0.9999 for {:?}", r.text);
    }
    // One by one: the same embeddings as in the padded batch.
    for (i, t) in texts.iter().enumerate() {
        let (_, single) = bert.embed(e, &[t], 1).expect("embed one");
        let c = cosine(&single[0], &batched[i]);
        assert!(c >= 0.99999, "batched and single disagree ({c}) for {t:?}");
    }
}

/// The 90.9 MB weights stream in 1 MiB reads: the loading thread's heap peaks far below the
/// file (reading it whole, as the loader did before, took the file plus the largest tensor
/// widened to f32, 138 MB). Streamed in 4093-byte reads instead, so that tensors and f32
/// values are cut between reads, the embeddings are bit for bit the same, and both match
/// sentence-transformers.
#[test]
fn minilm_streams_in_bounded_heap() {
    const MIB: usize = 1 << 20;
    let dir = require_model("all-MiniLM-L6-v2");
    // An engine of its own without the tests' NaN poisoning, which fills every new buffer
    // from a host vector as big as the buffer: the CLI and the browser do not.
    let e = &make_engine(DeviceOptions {
        load_tuning: false,
        ..Default::default()
    });
    e.set_poison(false);
    let (bert, peak) = peak_heap(|| Bert::load_dir(e, &dir).expect("load MiniLM"));
    let file = std::fs::metadata(dir.join("model.safetensors"))
        .unwrap()
        .len();
    eprintln!(
        "load_dir: {file} bytes streamed, peak heap of the loading thread {:.2} MiB",
        peak as f64 / MIB as f64
    );
    assert!(
        peak < 24 * MIB,
        "peak heap {peak} bytes while loading a {file}-byte file (limit 24 MiB)"
    );

    let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
    let streamed = |e: &Engine, chunk: usize| {
        let mut sink = GpuSink::new(e);
        let mut src = FileSource::open(&dir.join("model.safetensors")).unwrap();
        let (header, summary) = load_from(
            &mut src,
            Some(Format::Safetensors),
            Bert::load_options(),
            chunk,
            &mut sink,
        )
        .expect("stream the weights");
        assert_eq!(summary.bytes, file);
        assert_eq!(summary.skipped, 1, "the I64 position_ids are streamed past");
        Bert::from_sink(
            e,
            &read("config.json"),
            &read("tokenizer.json"),
            256,
            sink,
            &header,
        )
        .expect("MiniLM from the streamed sink")
    };
    let odd = streamed(e, 4093);

    let refs = refs();
    let texts: Vec<&str> = refs.iter().map(|r| r.text.as_str()).collect();
    let (_, a) = bert.embed(e, &texts, 32).expect("embed");
    let (_, b) = odd.embed(e, &texts, 32).expect("embed");
    for (i, r) in refs.iter().enumerate() {
        let (ab, bb): (&[u8], &[u8]) = (bytemuck::cast_slice(&a[i]), bytemuck::cast_slice(&b[i]));
        assert!(
            ab == bb,
            "1 MiB and 4093-byte reads embed {:?} differently",
            r.text
        );
        let c = cosine(&a[i], &r.emb);
        assert!(c >= 0.9999, "cosine {c} < 0.9999 for {:?}", r.text);
    }
}
