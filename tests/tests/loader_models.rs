//! The real models (Gemma 3 270M Q4_K_M GGUF, all-MiniLM-L6-v2 safetensors) streamed with many
//! chunk sizes give the same tensors (per-tensor sha256) as a one-shot parse.
//!
//! Chunk sizes: 1-byte chunks over the whole 253 MB Gemma file would take minutes in a debug
//! build, so the 1-byte run feeds the whole *header* (every metadata and tensor-info field,
//! ~4 MB, where the parser's state machine lives) byte by byte and then the data in 4093-byte
//! chunks; another feeds 3-byte chunks through the header and the first 4 MiB of tensor data;
//! the others use sampled sizes up to 1 MiB (4093, 65537, 1 MiB, one random size), and one
//! run draws a new random size for every push. The small synthetic files in loader_chunks.rs are split at
//! every offset.

use std::collections::BTreeMap;

use webjit_engine::loader::{parse_sha256, Format, LoadOptions};
use webjit_tests::loader_fixtures::{digests_chunked, model_file, GEMMA, MINILM};
use webjit_tests::Rand;

/// A named chunk-size schedule: offset -> size of the next push.
type Run = (String, Box<dyn FnMut(u64) -> usize>);

const GEMMA_SHA: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";

fn check_sizes(label: &str, file: &[u8], format: Format, opts: LoadOptions, header_end: u64) {
    let (want, _) = digests_chunked(file, format, opts.clone(), |_| file.len())
        .unwrap_or_else(|e| panic!("{label}: one-shot parse failed: {e}"));
    assert!(!want.is_empty());
    let mut rng = Rand::new(0x10ad);
    // The whole-file sha256 was checked by the one-shot parse; the chunked runs compare
    // per-tensor hashes only (each run is a full pass over the file).
    let opts = LoadOptions {
        sha256: None,
        ..opts
    };
    let mut sizes: Vec<usize> = vec![4093, 65537, 1 << 20];
    sizes.push(rng.range(9, 1 << 20));
    let mut runs: Vec<Run> = vec![(
        "1 byte through the header, then 4093".into(),
        Box::new(move |off| if off < header_end { 1 } else { 4093 }),
    )];
    runs.push((
        "3 bytes through the header and the first 4 MiB of data, then 65537".into(),
        Box::new(move |off| {
            if off < header_end + (4 << 20) {
                3
            } else {
                65537
            }
        }),
    ));
    for s in sizes {
        runs.push((format!("{s}-byte chunks"), Box::new(move |_| s)));
    }
    let mut r2 = Rand::new(0x5eed);
    runs.push((
        "random sizes 1..1 MiB".into(),
        Box::new(move |_| r2.range(1, 1 << 20)),
    ));
    for (name, f) in runs {
        let (got, pieces) = digests_chunked(file, format, opts.clone(), f)
            .unwrap_or_else(|e| panic!("{label} ({name}): {e}"));
        assert_eq!(got.len(), want.len(), "{label} ({name}): tensor count");
        let diff: BTreeMap<_, _> = got
            .iter()
            .filter(|(k, v)| want.get(*k) != Some(v))
            .collect();
        assert!(
            diff.is_empty(),
            "{label} ({name}): {} tensors differ, e.g. {:?}",
            diff.len(),
            diff.keys().next()
        );
        eprintln!(
            "{label}: {name}: {} tensors identical ({pieces} pieces)",
            got.len()
        );
    }
}

#[test]
fn gemma_gguf_chunk_sizes_match_one_shot() {
    let path = model_file(GEMMA);
    let file = std::fs::read(&path).expect("read gemma");
    let opts = LoadOptions {
        expected_len: Some(file.len() as u64),
        sha256: parse_sha256(GEMMA_SHA),
        skip_unsupported: false,
        compute_sha256: false,
    };
    let mut src = webjit_engine::loader::MemSource(&file);
    let (header, summary) = webjit_engine::loader::source::load_from(
        &mut src,
        None,
        opts.clone(),
        1 << 20,
        &mut webjit_engine::loader::NullSink,
    )
    .expect("gemma loads");
    assert_eq!(header.format, Format::Gguf);
    assert_eq!(header.architecture.as_deref(), Some("gemma3"));
    assert_eq!(summary.tensors, header.tensors.len());
    assert_eq!(header.n_layers, 18, "Gemma 3 270M has 18 blocks");
    let vocab = match header.get("tokenizer.ggml.tokens") {
        Some(webjit_engine::loader::MetaValue::Array(a)) => a.len(),
        other => panic!("no token array: {other:?}"),
    };
    assert_eq!(vocab, 262144);
    eprintln!(
        "gemma header: {} bytes, {} tensors, {} metadata keys",
        header.data_start,
        header.tensors.len(),
        header.metadata.len()
    );
    check_sizes("gemma", &file, Format::Gguf, opts, header.data_start);
}

#[test]
fn minilm_safetensors_chunk_sizes_match_one_shot() {
    let path = model_file(MINILM);
    let file = std::fs::read(&path).expect("read minilm");
    let opts = LoadOptions {
        expected_len: Some(file.len() as u64),
        sha256: None,
        skip_unsupported: true,
        compute_sha256: false,
    };
    let mut src = webjit_engine::loader::MemSource(&file);
    let (header, summary) = webjit_engine::loader::source::load_from(
        &mut src,
        None,
        opts.clone(),
        1 << 20,
        &mut webjit_engine::loader::NullSink,
    )
    .expect("minilm loads");
    assert_eq!(header.format, Format::Safetensors);
    assert_eq!(header.n_layers, 6, "MiniLM-L6 has 6 layers");
    // position_ids is I64: skipped, never delivered.
    assert_eq!(summary.skipped, 1);
    // Without skipping, the I64 tensor is a clear error.
    let err = digests_chunked(&file, Format::Safetensors, LoadOptions::default(), |_| {
        1 << 16
    })
    .unwrap_err();
    assert_eq!(err.code(), "LOAD_UNSUPPORTED_DTYPE", "{err}");
    check_sizes(
        "minilm",
        &file,
        Format::Safetensors,
        opts,
        header.data_start,
    );
}
