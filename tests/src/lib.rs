//! Shared test support: plain f64 oracles (one per op), seeded random inputs, error bounds,
//! and the GPU engine the tests run on (which must exist: no GPU means the run fails).

use std::sync::OnceLock;

use rand::{Rng, SeedableRng};
use webjit_engine::{DeviceOptions, Engine};

pub mod cli_support;
pub mod f64_refs;
pub mod gemma_refs;
pub mod loader_fixtures;
pub mod oracle;
pub mod oracle_attention;
pub mod oracle_block_sparse;
pub mod oracle_kivi;
pub mod oracle_kvquant;
pub mod oracle_loader;
pub mod oracle_neighborhood;
pub mod oracle_spm;
pub mod quant_vectors;

/// The test engine on the machine's adapter. Panics with instructions when there is none:
/// GPU tests never skip silently.
pub fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        make_engine(DeviceOptions {
            load_tuning: false,
            ..Default::default()
        })
    })
}

/// An engine whose max storage binding is 64 KiB, so small tensors are split into segments.
pub fn small_binding_engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        make_engine(DeviceOptions {
            max_binding_override: Some(64 * 1024),
            load_tuning: false,
            ..Default::default()
        })
    })
}

/// An engine whose prefill matmuls multiply in f16 (`DeviceOptions::f16_prefill`), the
/// default on GPUs with 32-lane subgroups, so that path is tested on adapters without them.
pub fn f16_prefill_engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        make_engine(DeviceOptions {
            f16_prefill: Some(true),
            load_tuning: false,
            ..Default::default()
        })
    })
}

pub fn make_engine(opts: DeviceOptions) -> Engine {
    match Engine::new_blocking(opts) {
        Ok(e) => {
            e.set_poison(true);
            eprintln!("webjit tests on: {} ({})", e.profile().name, e.profile().backend);
            e
        }
        Err(e) => panic!(
            "\n\n*** GPU TESTS CANNOT RUN: {e}\n*** Install a Vulkan driver (lavapipe: `apt-get install mesa-vulkan-drivers`) \
             or run `make test`, which installs it.\n\n"
        ),
    }
}

pub struct Rand {
    pub seed: u64,
    rng: rand::rngs::StdRng,
}

impl Rand {
    /// Seeded from `WEBJIT_TEST_SEED` if set, else from `default`.
    pub fn new(default: u64) -> Self {
        let seed = std::env::var("WEBJIT_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default);
        Self {
            seed,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
        }
    }
    /// Uniform in [lo, hi), never exactly zero (zeros hide unwritten outputs).
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let v: f32 = self.rng.gen_range(lo..hi);
                if v == 0.0 {
                    1e-3
                } else {
                    v
                }
            })
            .collect()
    }
    pub fn ids(&mut self, n: usize, below: u32) -> Vec<u32> {
        (0..n).map(|_| self.rng.gen_range(0..below)).collect()
    }
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        self.rng.gen_range(lo..hi)
    }
}

/// Per-element `|y - r| <= atol + rtol * |r|` and global NMSE `sum((y-r)^2) / sum(r^2) <= max_nmse`.
/// Every element must be finite (NaN-poisoned outputs that were never written fail here).
pub fn assert_close(
    what: &str,
    seed: u64,
    got: &[f32],
    want: &[f64],
    atol: f64,
    rtol: f64,
    max_nmse: f64,
) {
    assert_eq!(got.len(), want.len(), "{what}: length (seed {seed})");
    let mut num = 0.0;
    let mut den = 0.0;
    for (i, (&g, &r)) in got.iter().zip(want).enumerate() {
        let g = g as f64;
        assert!(
            g.is_finite(),
            "{what}: element {i} is {g} (never written?), want {r} (seed {seed})"
        );
        let err = (g - r).abs();
        assert!(
            err <= atol + rtol * r.abs(),
            "{what}: element {i}: got {g}, want {r}, err {err:e} (seed {seed})"
        );
        num += (g - r) * (g - r);
        den += r * r;
    }
    let nmse = if den > 0.0 { num / den } else { num };
    assert!(
        nmse <= max_nmse,
        "{what}: NMSE {nmse:e} > {max_nmse:e} (seed {seed})"
    );
}

/// f32 NMSE bound for elementwise ops and norms against the f64 oracle (<= 1e-10).
pub const NMSE_ELEMENTWISE: f64 = 1e-10;
/// f32 NMSE bound for matmul against the f64 oracle (<= 1e-8: f32 sums over K).
pub const NMSE_MATMUL: f64 = 1e-8;

/// f32 NMSE bound for fused attention against the f64 oracle (<= 1e-9).
pub const NMSE_ATTENTION: f64 = 1e-9;

/// The model cache of `scripts/fetch-models.sh`: `${WEBJIT_CACHE:-~/.cache/webjit}/models`.
pub fn model_cache() -> std::path::PathBuf {
    let base = std::env::var_os("WEBJIT_CACHE")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| std::path::PathBuf::from(h).join(".cache").join("webjit"))
        })
        .unwrap_or_else(|| std::path::PathBuf::from(".cache/webjit"));
    base.join("models")
}

/// The sha256 of a file, in hex (a generated model checked against the bytes its references
/// were recorded on).
pub fn file_sha256(path: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A fetched model file or directory; fails loudly (never skips) when it is missing.
pub fn require_model(name: &str) -> std::path::PathBuf {
    let p = model_cache().join(name);
    assert!(
        p.exists(),
        "\n\n*** MODEL MISSING: {} does not exist. Run `make models` (scripts/fetch-models.sh) first; `make test` does it.\n\n",
        p.display()
    );
    p
}
