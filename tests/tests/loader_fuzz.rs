//! Bounded-time fuzzing of both parsers on stable: a seeded random-mutation loop over the
//! corpus in tests/data/fuzz/ (small valid and edge-case files). Each mutant is parsed in one
//! push and in random chunks, with and without the file length known. Properties: no panic,
//! and the outcome (per-tensor hashes, or the exact error) does not depend on chunking.
//!
//! `WEBJIT_FUZZ_SECS` sets the time budget (default 3 s); `WEBJIT_TEST_SEED` the seed. A
//! failing mutant is written to target/loader-fuzz-failure.bin for adding to the corpus.
//! `cargo test -p webjit-tests --test loader_fuzz -- --ignored` regenerates the seed corpus.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use webjit_engine::loader::{Format, LoadOptions};
use webjit_tests::loader_fixtures::{
    digests_chunked, gguf_every_type, safetensors_small, GgufBuilder, Kv,
};
use webjit_tests::Rand;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/fuzz")
}

const INTERESTING: [u64; 10] = [
    0,
    1,
    2,
    0x7f,
    0xff,
    1 << 31,
    1 << 32,
    1 << 40,
    1 << 60,
    u64::MAX,
];

fn mutate(rng: &mut Rand, f: &mut Vec<u8>) {
    let n = rng.range(1, 4);
    for _ in 0..n {
        if f.is_empty() {
            f.push(rng.range(0, 256) as u8);
            continue;
        }
        let at = rng.range(0, f.len());
        match rng.range(0, 7) {
            0 => f[at] ^= 1 << rng.range(0, 8),
            1 => f[at] = rng.range(0, 256) as u8,
            2 => {
                let v = INTERESTING[rng.range(0, INTERESTING.len())].to_le_bytes();
                let w = if rng.range(0, 2) == 0 { 4 } else { 8 };
                for (i, b) in v.iter().take(w).enumerate() {
                    if let Some(x) = f.get_mut(at + i) {
                        *x = *b;
                    }
                }
            }
            3 => f.truncate(at),
            4 => {
                let k = rng.range(1, 9).min(f.len() - at);
                f.drain(at..at + k);
            }
            5 => {
                let b = rng.range(0, 256) as u8;
                f.splice(at..at, std::iter::repeat_n(b, rng.range(1, 9)));
            }
            _ => {
                // Duplicate a slice elsewhere (repeats fields and records).
                let len = rng.range(1, 33).min(f.len() - at);
                let piece = f[at..at + len].to_vec();
                let to = rng.range(0, f.len());
                f.splice(to..to, piece);
            }
        }
    }
}

#[test]
fn fuzz_parsers_bounded_time() {
    let mut corpus: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir())
        .expect("tests/data/fuzz exists")
        .filter_map(|e| e.ok())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    corpus.sort();
    assert!(corpus.len() >= 4, "fuzz corpus missing");
    for (name, f) in &corpus {
        assert!(f.len() < 64 << 10, "corpus file {name} is not small");
    }
    let secs: u64 = std::env::var("WEBJIT_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let mut rng = Rand::new(0xf022);
    let seed = rng.seed;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut runs, mut ok, mut errs) = (
        0u64,
        0u64,
        std::collections::BTreeMap::<&'static str, u64>::new(),
    );
    while Instant::now() < deadline {
        let (name, base) = &corpus[rng.range(0, corpus.len())];
        let mut f = base.clone();
        mutate(&mut rng, &mut f);
        let chunk_seed = rng.range(0, 1 << 30) as u64;
        for known in [false, true] {
            let format = if rng.range(0, 8) == 0 {
                Format::Safetensors
            } else {
                Format::sniff(&f)
            };
            let opts = LoadOptions {
                expected_len: known.then_some(f.len() as u64),
                ..Default::default()
            };
            let outcome = std::panic::catch_unwind(|| {
                let one = digests_chunked(&f, format, opts.clone(), |_| f.len());
                let mut r = Rand::new(chunk_seed);
                let chunked = digests_chunked(&f, format, opts.clone(), |_| r.range(1, 64));
                (one.map(|d| d.0), chunked.map(|d| d.0))
            });
            let failure = match &outcome {
                Err(_) => Some("panicked".to_string()),
                Ok((a, b)) if a != b => {
                    Some(format!("chunking changed the outcome: {a:?} vs {b:?}"))
                }
                _ => None,
            };
            if let Some(why) = failure {
                let out = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../target/loader-fuzz-failure.bin");
                let _ = std::fs::write(&out, &f);
                panic!("fuzz (seed {seed}, from {name}, known length {known}): {why}; input saved to {}", out.display());
            }
            match outcome {
                Ok((Ok(_), _)) => ok += 1,
                Ok((Err(e), _)) => *errs.entry(e.code()).or_default() += 1,
                Err(_) => {}
            }
            runs += 1;
        }
    }
    eprintln!("fuzz: {runs} parses in {secs} s (seed {seed}): {ok} ok, errors {errs:?}");
    assert!(runs > 100, "fuzz loop too slow: {runs} parses");
    assert!(
        errs.len() >= 5,
        "mutations reach too few error kinds: {errs:?}"
    );
}

/// Writes the seed corpus (run with --ignored after changing the fixtures).
#[test]
#[ignore]
fn write_fuzz_corpus() {
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut rng = Rand::new(0xc0);
    for v in [2, 3] {
        let (f, _) = gguf_every_type(&mut rng, v).build();
        std::fs::write(dir.join(format!("every_type_v{v}.gguf.seed")), f).expect("write");
    }
    let mut b = GgufBuilder::new(3);
    b.kvs.push(Kv::str("general.architecture", "tiny"));
    b.tensor(&mut rng, "blk.0.attn_q.weight", &[32, 2], 8);
    std::fs::write(dir.join("tiny.gguf.seed"), b.build().0).expect("write");
    std::fs::write(
        dir.join("no_tensors.gguf.seed"),
        GgufBuilder::new(2).build().0,
    )
    .expect("write");
    std::fs::write(
        dir.join("small.safetensors.seed"),
        safetensors_small(&mut rng),
    )
    .expect("write");
    let empty = webjit_tests::loader_fixtures::safetensors(&[], None);
    std::fs::write(dir.join("empty.safetensors.seed"), empty).expect("write");
}
