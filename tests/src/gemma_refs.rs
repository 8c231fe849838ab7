//! Gemma 3 golden references (recorded with llama-cpp-python by
//! `scripts/record_gemma_refs.py` into `tests/data/gemma/`) and a GGUF header reader, shared by
//! the tokenizer and model tests.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use webjit_engine::loader::{Format, LoadOptions, Loader, ModelHeader, NullSink};

/// The model file in the cache of `scripts/fetch-models.sh`.
pub const GEMMA_MODEL: &str = "gemma-3-270m-q4_k_m.gguf";

/// `tests/data`.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// A recorded JSON file under `tests/data` (e.g. `gemma/refs.json`).
pub fn read_json(rel: &str) -> serde_json::Value {
    let p = data_dir().join(rel);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A recorded little-endian f16 vector under `tests/data` (e.g. full logits), as f32.
pub fn read_f16(rel: &str) -> Vec<f32> {
    let p = data_dir().join(rel);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(bytes.len().is_multiple_of(2), "{}: odd length", p.display());
    bytes
        .chunks_exact(2)
        .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
        .collect()
}

/// IEEE binary16 -> f32 (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let man = (h & 0x3ff) as f32;
    match exp {
        0 => sign * man * 2f32.powi(-24),
        31 if man == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        e => sign * (1.0 + man / 1024.0) * 2f32.powi(e - 15),
    }
}

/// Parses only the header of a GGUF file (metadata and tensor infos), reading 4 MiB at a time
/// until it is complete: the tensor data is never read.
pub fn read_gguf_header(path: &Path) -> ModelHeader {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let len = f.metadata().map(|m| m.len()).ok();
    let mut loader = Loader::new(
        Format::Gguf,
        LoadOptions {
            expected_len: len,
            ..Default::default()
        },
    );
    let mut buf = vec![0u8; 4 << 20];
    loop {
        if let Some(h) = loader.header() {
            return h.clone();
        }
        let n = f
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(n > 0, "{}: ends before its header does", path.display());
        loader
            .push(&buf[..n], &mut NullSink)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// The Gemma 3 270M header, read once per test binary (the model must be fetched).
pub fn gemma_header() -> &'static ModelHeader {
    static H: OnceLock<ModelHeader> = OnceLock::new();
    H.get_or_init(|| read_gguf_header(&crate::require_model(GEMMA_MODEL)))
}
