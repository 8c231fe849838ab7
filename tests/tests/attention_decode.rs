//! Decode attention (split-K + merge pass) against the dense f64 oracle, over a KV cache that
//! is appended in chunks: linear caches at cache lengths 1..4096 (sampled), ring buffers
//! through wraparound (including appends longer than the ring), f32 and f16 storage, GQA
//! ratios 1/2/4/8, windows, soft-capping, and every config of the space on one length.
//! Quantized caches (q8_0, q4_0): every stored block is checked against ggml's reference
//! quantizer (tests/src/oracle_kvquant.rs), the rows the append writes back against the same
//! quantize-dequantize, and the oracle attends the stored blocks dequantized on the host.

use webjit_engine::jit::kernels::attention_decode::{DecodeConfig, DecodeReduceConfig, KvDType};
use webjit_engine::jit::KernelSpec;
use webjit_engine::ops::{self, DecodeOptions};
use webjit_engine::{KvCache, KvCacheOptions};
use webjit_tests::oracle_attention::{attention as oracle, unpack_f16_pairs, AttnProblem};
use webjit_tests::oracle_kvquant as kvq;
use webjit_tests::{assert_close, engine, Rand, NMSE_ATTENTION};

/// A cache plus the host copy of every row appended: [batch, positions, kv_heads, d].
struct Tracked {
    cache: KvCache,
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl Tracked {
    fn new(opts: KvCacheOptions) -> Self {
        let b = opts.batch;
        Self {
            cache: KvCache::new(engine(), opts).unwrap(),
            k: vec![Vec::new(); b],
            v: vec![Vec::new(); b],
        }
    }

    fn row(&self) -> usize {
        let o = self.cache.options();
        o.n_kv_heads * o.head_dim
    }

    fn append(&mut self, r: &mut Rand, n: usize) {
        let e = engine();
        let o = self.cache.options().clone();
        let row = self.row();
        let k = r.vec(o.batch * n * row, -2.0, 2.0);
        let v = r.vec(o.batch * n * row, -1.0, 1.0);
        for b in 0..o.batch {
            self.k[b].extend_from_slice(&k[b * n * row..(b + 1) * n * row]);
            self.v[b].extend_from_slice(&v[b * n * row..(b + 1) * n * row]);
        }
        let shape = [o.batch, n, o.n_kv_heads, o.head_dim];
        let kt = e.upload_f32(&shape, &k).unwrap();
        let vt = e.upload_f32(&shape, &v).unwrap();
        let mut rec = e.recorder();
        webjit_engine::ops::kv_append(&mut self.cache, &kt, &vt)
            .record(&mut rec)
            .unwrap();
        rec.submit().unwrap();
        // A quantized cache's append rewrites its input rows as the cache holds them.
        let dtype = self.cache.dtype();
        if dtype.quantized() {
            let label = format!("append of {n} rows, write-back");
            kvq::check_roundtrip(&label, dtype, &k, &e.read_f32(&kt).unwrap());
            kvq::check_roundtrip(&label, dtype, &v, &e.read_f32(&vt).unwrap());
        }
    }

    /// The raw storage words (f16 and quantized caches).
    fn words(&self, which: usize) -> Vec<u32> {
        let t = if which == 0 {
            self.cache.k()
        } else {
            self.cache.v()
        };
        engine().read_u32(t).unwrap()
    }

    /// The cache storage as f32 [batch, capacity, kv_heads, d].
    fn storage(&self, which: usize) -> Vec<f32> {
        let e = engine();
        let t = if which == 0 {
            self.cache.k()
        } else {
            self.cache.v()
        };
        let d = self.cache.options().head_dim;
        match self.cache.dtype() {
            KvDType::F32 => e.read_f32(t).unwrap(),
            KvDType::F16 => unpack_f16_pairs(&e.read_u32(t).unwrap()),
            q => kvq::dequant_rows(q, &e.read_u32(t).unwrap(), d),
        }
    }

    /// K and V of the last `n` positions as the kernel sees them, after checking that every
    /// one sits in its slot (exactly for f32, within f16 rounding for f16).
    fn visible_rows(&self, n: usize) -> (Vec<f32>, Vec<f32>) {
        let o = self.cache.options();
        let row = self.row();
        let len = self.cache.len();
        let mut out = (Vec::new(), Vec::new());
        let dtype = self.cache.dtype();
        let (d, rw) = (o.head_dim, kvq_row_words(dtype, o.head_dim));
        for which in 0..2 {
            let store = self.storage(which);
            let words = if dtype.quantized() {
                self.words(which)
            } else {
                Vec::new()
            };
            let hist = if which == 0 { &self.k } else { &self.v };
            let dst = if which == 0 { &mut out.0 } else { &mut out.1 };
            for b in 0..o.batch {
                for pos in len - n..len {
                    let slot = if o.ring { pos % o.capacity } else { pos };
                    let s = &store[(b * o.capacity + slot) * row..][..row];
                    let h = &hist[b][pos * row..][..row];
                    if dtype.quantized() {
                        for (kvh, hr) in h.chunks(d).enumerate() {
                            let r = (b * o.capacity + slot) * o.n_kv_heads + kvh;
                            let label =
                                format!("cache[{which}] b{b} pos {pos} slot {slot} head {kvh}");
                            kvq::check_row(&label, dtype, &words[r * rw..][..rw], hr);
                        }
                        dst.extend_from_slice(s);
                        continue;
                    }
                    for (i, (&got, &want)) in s.iter().zip(h).enumerate() {
                        let tol = match self.cache.dtype() {
                            KvDType::F32 => 0.0,
                            _ => want.abs() / 2048.0 + 6e-8,
                        };
                        assert!(
                            (got - want).abs() <= tol,
                            "cache[{which}] b{b} pos {pos} slot {slot} elem {i}: {got} vs {want}"
                        );
                    }
                    dst.extend_from_slice(s);
                }
            }
        }
        out
    }

    /// Decodes one query per head and checks it against the oracle.
    fn check(
        &self,
        r: &mut Rand,
        heads: usize,
        opts: &DecodeOptions,
        configs: &[Option<DecodeConfig>],
    ) {
        self.check_with(r, heads, opts, configs, &[None]);
    }

    /// `check` over every (split config, merge config) pair.
    fn check_with(
        &self,
        r: &mut Rand,
        heads: usize,
        opts: &DecodeOptions,
        configs: &[Option<DecodeConfig>],
        reduce_configs: &[Option<DecodeReduceConfig>],
    ) {
        let e = engine();
        let o = self.cache.options();
        let len = self.cache.len();
        let mut n = len;
        if let Some(w) = opts.window {
            n = n.min(w as usize);
        } else if o.ring {
            n = n.min(o.capacity);
        }
        let (k, v) = self.visible_rows(n);
        let q = r.vec(o.batch * heads * o.head_dim, -2.0, 2.0);
        let scale = opts.scale.unwrap_or(1.0 / (o.head_dim as f32).sqrt());
        let p = AttnProblem {
            batch: o.batch,
            seq_q: 1,
            seq_kv: n,
            n_heads: heads,
            n_kv_heads: o.n_kv_heads,
            head_dim: o.head_dim,
            causal: false,
            window: None,
            scale: scale as f64,
            softcap: opts.softcap.map(|x| x as f64),
            kv_lens: vec![n; o.batch],
            q_pos0: n.saturating_sub(1),
        };
        let want = oracle(&p, &q, &k, &v);
        let qt = e.upload_f32(&[o.batch, heads, o.head_dim], &q).unwrap();
        for (cfg, rcfg) in configs
            .iter()
            .flat_map(|c| reduce_configs.iter().map(move |rc| (c, rc)))
        {
            let mut rec = e.recorder();
            let mut call = ops::attention_decode(&qt, &self.cache, opts).config_opt(cfg.clone());
            if let Some(rc) = rcfg {
                call = call.reduce_config(rc.clone());
            }
            let out = call.record(&mut rec).unwrap();
            rec.submit().unwrap();
            let got = e.read_f32(&out).unwrap();
            let label = format!(
                "decode len {len} (attending {n}) heads {heads} {o:?} {opts:?} dtype {:?} cfg={cfg:?} merge={rcfg:?}",
                self.cache.dtype()
            );
            assert_close(&label, r.seed, &got, &want, 2e-5, 1e-4, NMSE_ATTENTION);
        }
    }
}

/// u32 words per stored row of a quantized cache (0 for dense ones, which are not read as words).
fn kvq_row_words(dtype: KvDType, d: usize) -> usize {
    if dtype.quantized() {
        kvq::row_words(dtype, d)
    } else {
        0
    }
}

fn opts(
    batch: usize,
    kv_heads: usize,
    d: usize,
    capacity: usize,
    ring: bool,
    dtype: KvDType,
) -> KvCacheOptions {
    KvCacheOptions {
        batch,
        n_kv_heads: kv_heads,
        head_dim: d,
        capacity,
        ring,
        dtype: Some(dtype),
    }
}

/// The single-pass kernel (one workgroup per head, no merge pass).
const SINGLE: Option<DecodeConfig> = Some(DecodeConfig {
    wg: 64,
    max_splits: 1,
});

#[test]
fn decode_linear_cache_lengths_match_oracle() {
    let mut r = Rand::new(6);
    for (dtype, d, lengths) in [
        (
            KvDType::F32,
            64,
            &[
                1usize, 2, 3, 31, 32, 33, 127, 128, 129, 257, 1000, 2049, 4096,
            ][..],
        ),
        (KvDType::F16, 128, &[1usize, 5, 129, 1500, 4096][..]),
        (KvDType::Q8_0, 256, &[1usize, 33, 700][..]),
        (KvDType::Q4_0, 64, &[1usize, 2, 129, 1025][..]),
    ] {
        let mut t = Tracked::new(opts(1, 2, d, 4096, false, dtype));
        for &len in lengths {
            let n = len - t.cache.len();
            t.append(&mut r, n);
            t.check(&mut r, 8, &DecodeOptions::default(), &[None]);
        }
    }
}

#[test]
fn decode_ring_buffer_wraps() {
    let mut r = Rand::new(66);
    // kivi2 is linear only (tests/kivi.rs).
    for dtype in KvDType::ALL.into_iter().filter(|&t| t != KvDType::Kivi2) {
        let window = 48;
        // Quantized formats store blocks of 32: d 96 (3 blocks, an odd count, so the last
        // scale word is half used).
        let d = if dtype.quantized() { 96 } else { 80 };
        let mut t = Tracked::new(opts(1, 1, d, window, true, dtype));
        // Single steps up to and across the first wrap, a chunk that wraps, a chunk longer
        // than the ring (only its last `window` rows survive), then more single steps.
        for n in [1, 1, 5, 40, 1, 1, 1, 30, 100, 1, 1, 47, 1] {
            t.append(&mut r, n);
            t.check(&mut r, 4, &DecodeOptions::default(), &[None, SINGLE]);
        }
        t.check(
            &mut r,
            4,
            &DecodeOptions {
                window: Some(window as u32),
                ..Default::default()
            },
            &[None],
        );
        // A window smaller than the ring attends only the newest entries.
        t.check(
            &mut r,
            4,
            &DecodeOptions {
                window: Some(7),
                ..Default::default()
            },
            &[None],
        );
    }
}

#[test]
fn decode_gqa_window_softcap_batch_match_oracle() {
    let mut r = Rand::new(666);
    for (heads, kv_heads) in [(4, 4), (4, 2), (8, 2), (8, 1)] {
        let mut t = Tracked::new(opts(2, kv_heads, 64, 600, false, KvDType::F32));
        t.append(&mut r, 300);
        t.check(&mut r, heads, &DecodeOptions::default(), &[None]);
        t.append(&mut r, 211);
        for o in [
            DecodeOptions {
                window: Some(100),
                ..Default::default()
            },
            DecodeOptions {
                window: Some(1000),
                softcap: Some(3.0),
                scale: Some(0.3),
            },
        ] {
            t.check(&mut r, heads, &o, &[None, SINGLE]);
        }
    }
}

#[test]
fn decode_every_config_matches_oracle() {
    let mut r = Rand::new(6666);
    // kivi2's stored groups are decoded and checked in tests/kivi.rs.
    for dtype in KvDType::ALL.into_iter().filter(|&t| t != KvDType::Kivi2) {
        let mut t = Tracked::new(opts(1, 2, 64, 1024, false, dtype));
        t.append(&mut r, 777);
        let q = engine()
            .upload_f32(&[1, 4, 64], &r.vec(256, -1.0, 1.0))
            .unwrap();
        let spec = ops::attention_decode(&q, &t.cache, &DecodeOptions::default())
            .spec()
            .unwrap();
        let space: Vec<_> = spec
            .space(engine().profile())
            .into_iter()
            .map(Some)
            .collect();
        assert!(space.len() >= 12, "{} configs", space.len());
        // Every merge-pass config too, behind the default split config.
        let rspec = webjit_engine::jit::kernels::attention_decode::DecodeReduceSpec {
            batch: 1,
            n_heads: 4,
            head_dim: 64,
        };
        let rspace: Vec<_> = rspec
            .space(engine().profile())
            .into_iter()
            .map(Some)
            .collect();
        assert!(rspace.len() >= 3, "{} merge configs", rspace.len());
        t.check(&mut r, 4, &DecodeOptions::default(), &space);
        t.check_with(&mut r, 4, &DecodeOptions::default(), &[None], &rspace);
    }
}

#[test]
fn empty_cache_decodes_to_zeros_and_bad_arguments_fail() {
    let e = engine();
    let mut r = Rand::new(66666);
    let mut t = Tracked::new(opts(1, 1, 8, 4, false, KvDType::F32));
    let q = e.upload_f32(&[1, 2, 8], &r.vec(16, -1.0, 1.0)).unwrap();
    let mut rec = e.recorder();
    let out = ops::attention_decode(&q, &t.cache, &DecodeOptions::default())
        .record(&mut rec)
        .unwrap();
    rec.submit().unwrap();
    assert_eq!(e.read_f32(&out).unwrap(), vec![0.0; 16]);
    t.append(&mut r, 4);
    // A linear cache refuses to grow past its capacity.
    let k = e.upload_f32(&[1, 1, 1, 8], &r.vec(8, -1.0, 1.0)).unwrap();
    let mut rec = e.recorder();
    assert!(webjit_engine::ops::kv_append(&mut t.cache, &k, &k)
        .record(&mut rec)
        .is_err());
    // Wrong head dim, heads not a multiple of kv heads.
    let bad = e.upload_f32(&[1, 2, 4], &r.vec(8, -1.0, 1.0)).unwrap();
    assert_eq!(
        ops::attention_decode(&bad, &t.cache, &DecodeOptions::default())
            .record(&mut rec)
            .unwrap_err()
            .code(),
        "SHAPE"
    );
    // A ring cannot attend more than it keeps.
    let mut ring = Tracked::new(opts(1, 1, 8, 4, true, KvDType::F16));
    ring.append(&mut r, 9);
    let o = DecodeOptions {
        window: Some(5),
        ..Default::default()
    };
    assert!(ops::attention_decode(&q, &ring.cache, &o)
        .record(&mut rec)
        .is_err());
    // Zero-sized caches and odd head dims are rejected before allocating.
    assert!(KvCache::new(e, opts(1, 1, 6, 4, false, KvDType::F32)).is_err());
    assert!(KvCache::new(e, opts(1, 1, 8, 0, false, KvDType::F32)).is_err());
}

/// Blocks whose arithmetic is exact on any GPU (scales 1 and -1), so ggml's rounding must be
/// met bit for bit: halves away from zero (WGSL's round() would go to even), all-zero blocks
/// (scale 0), q4_0's choice of the first value of largest magnitude and its clamp at 15.
#[test]
fn quantized_blocks_round_as_ggml() {
    let e = engine();
    let mut halves = vec![127.0f32, 2.5, -3.5, 0.5, -0.5, 1.5, -1.5, 126.5];
    halves.extend((0..24).map(|i| i as f32 - 12.5));
    let mut q4 = vec![8.0f32, -8.0, 3.5, 2.5, 0.5, -0.5, -7.5, 7.5];
    q4.extend((0..24).map(|i| (i as f32 - 12.0) / 2.0 + 0.5));
    let mut q4_neg = q4.clone();
    q4_neg.swap(0, 1);
    for (dtype, blocks) in [
        (KvDType::Q8_0, [halves.clone(), vec![0.0; 32], halves]),
        (KvDType::Q4_0, [q4, vec![0.0; 32], q4_neg]),
    ] {
        let x: Vec<f32> = blocks.concat();
        let mut t = Tracked::new(opts(1, 1, 96, 4, false, dtype));
        let kt = e.upload_f32(&[1, 1, 1, 96], &x).unwrap();
        let vt = e.upload_f32(&[1, 1, 1, 96], &x).unwrap();
        let mut rec = e.recorder();
        ops::kv_append(&mut t.cache, &kt, &vt)
            .record(&mut rec)
            .unwrap();
        rec.submit().unwrap();
        let words = t.words(0);
        let stored = kvq::decode_row(dtype, &words[..kvq::row_words(dtype, 96)], 96);
        for (i, (d, q)) in stored.into_iter().enumerate() {
            let want = kvq::quant(dtype, &blocks[i]);
            assert_eq!(
                (d, q),
                (want.d, want.q),
                "{dtype:?} block {i} of {:?}",
                blocks[i]
            );
        }
    }
    // The write-back needs K and V in different buffers.
    let mut t = Tracked::new(opts(1, 1, 32, 4, false, KvDType::Q8_0));
    let kt = e.upload_f32(&[1, 1, 1, 32], &[0.5; 32]).unwrap();
    let mut rec = e.recorder();
    let err = ops::kv_append(&mut t.cache, &kt, &kt)
        .record(&mut rec)
        .unwrap_err();
    assert_eq!(err.code(), "INVALID_ARGUMENT", "{err}");
    // Spot checks of the reference itself against hand-worked values.
    let r = kvq::quant_q8_0(&blocks_first(&[127.0, 2.5, -3.5, 0.5]));
    assert_eq!(&r.q[..4], &[127, 3, -4, 1]);
    let r = kvq::quant_q4_0(&blocks_first(&[-8.0, 8.0, 3.5, 0.5]));
    // m = -8, d = 1: n = min(15, trunc(x + 8.5)) - 8.
    assert_eq!(&r.q[..4], &[-8, 7, 4, 1]);
    // Quantized caches need whole blocks of 32 along the head dim.
    let Err(err) = KvCache::new(e, opts(1, 1, 48, 4, false, KvDType::Q8_0)) else {
        panic!("a q8_0 cache of head dim 48 was made");
    };
    assert_eq!(err.code(), "INVALID_ARGUMENT");
    assert!(err.to_string().contains("multiple of 32"), "{err}");
    let err = webjit_engine::kv_cache::parse_kv_cache("q3").unwrap_err();
    assert_eq!(err.code(), "INVALID_ARGUMENT");
    assert!(err.to_string().contains("f16, q8_0, q4_0"), "{err}");
}

/// 32 values: `head` then zeros.
fn blocks_first(head: &[f32]) -> Vec<f32> {
    let mut v = head.to_vec();
    v.resize(32, 0.0);
    v
}
