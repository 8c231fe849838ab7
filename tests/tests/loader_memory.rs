//! Peak heap while streaming the 253 MB Gemma GGUF stays under 32 MiB: the loader keeps the
//! header (metadata incl. the 262144-token vocabulary, tensor infos), one field and one
//! partial block, never tensor data. Measured with a counting global allocator, in its own
//! test binary so no other test's allocations count. The read buffer (1 MiB chunks) counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use webjit_engine::loader::source::load_from;
use webjit_engine::loader::{
    FileSource, HashSink, LoadEvent, LoadOptions, LoaderError, TensorInfo, TensorSink,
};
use webjit_tests::loader_fixtures::{model_file, GEMMA};

struct Counting;

static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let n = NOW.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(n, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        NOW.fetch_sub(l.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Wraps the hashing sink and samples the heap at every layer, so the test also shows the
/// heap does not grow as layers stream in.
struct Sampling {
    inner: HashSink,
    base: usize,
    at_layers: Vec<usize>,
}

impl TensorSink for Sampling {
    fn event(&mut self, e: &LoadEvent<'_>) -> Result<(), LoaderError> {
        if let LoadEvent::LayerReady { .. } = e {
            self.at_layers
                .push(NOW.load(Ordering::Relaxed).saturating_sub(self.base));
        }
        Ok(())
    }
    fn tensor_data(&mut self, i: &TensorInfo, o: u64, b: &[u8]) -> Result<(), LoaderError> {
        self.inner.tensor_data(i, o, b)
    }
    fn tensor_ready(&mut self, i: &TensorInfo) -> Result<(), LoaderError> {
        self.inner.tensor_ready(i)
    }
}

#[test]
fn gemma_streams_in_bounded_heap() {
    let path = model_file(GEMMA);
    for chunk in [1usize << 20, 4093] {
        let mut src = FileSource::open(&path).expect("open");
        let base = NOW.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let mut sink = Sampling {
            inner: HashSink::default(),
            base,
            at_layers: Vec::new(),
        };
        let (header, summary) =
            load_from(&mut src, None, LoadOptions::default(), chunk, &mut sink).expect("load");
        let peak = PEAK.load(Ordering::Relaxed) - base;
        eprintln!(
            "chunk {chunk}: {} bytes, {} tensors, peak heap {:.2} MiB, heap at layers (MiB): {:?}",
            summary.bytes,
            summary.tensors,
            peak as f64 / (1 << 20) as f64,
            sink.at_layers
                .iter()
                .map(|b| (*b as f64 / 1048576.0 * 10.0).round() / 10.0)
                .collect::<Vec<_>>()
        );
        assert!(summary.bytes > 250_000_000);
        assert_eq!(sink.at_layers.len(), header.n_layers);
        assert!(peak < 32 << 20, "peak loader heap {peak} bytes >= 32 MiB");
        // Steady state: the heap after the last layer is no larger than after the first.
        let (first, last) = (sink.at_layers[0], sink.at_layers[sink.at_layers.len() - 1]);
        assert!(
            last <= first + (64 << 10),
            "heap grew while streaming: {first} -> {last}"
        );
    }
}
