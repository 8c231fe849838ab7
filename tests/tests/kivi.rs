//! The kivi2 KV cache (KIVI's 2-bit keys per channel and values per token with an f16
//! residual window): every complete group the append and flush kernels store is checked
//! against the f64 reference quantizer (tests/src/oracle_kivi.rs), the residual window
//! against the f16 of the appended rows, and decode attention over every config of its
//! tuning space against f64 attention over the cache as the host decodes its words, at
//! lengths on both sides of group boundaries.

use webjit_engine::jit::kernels::attention_decode::{DecodeConfig, KvDType};
use webjit_engine::jit::KernelSpec;
use webjit_engine::ops::{self, DecodeOptions};
use webjit_engine::{KvCache, KvCacheOptions};
use webjit_tests::oracle_attention::{attention as oracle, AttnProblem};
use webjit_tests::oracle_kivi::{Layout, G};
use webjit_tests::{assert_close, engine, Rand, NMSE_ATTENTION};

/// A kivi2 cache plus the host copy of every row appended: [batch, positions, kv_heads, d].
struct Tracked {
    cache: KvCache,
    layout: Layout,
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl Tracked {
    fn new(batch: usize, hk: usize, d: usize, capacity: usize) -> Self {
        let opts = KvCacheOptions {
            batch,
            n_kv_heads: hk,
            head_dim: d,
            capacity,
            ring: false,
            dtype: Some(KvDType::Kivi2),
        };
        let layout = Layout {
            batch,
            capacity,
            hk,
            d,
        };
        Self {
            cache: KvCache::new(engine(), opts).unwrap(),
            layout,
            k: vec![Vec::new(); batch],
            v: vec![Vec::new(); batch],
        }
    }

    /// Appends `n` random rows in one kv_append (a prompt's path). Keys get a per-channel
    /// offset, as real keys' outlier channels have, so the per-channel groups matter.
    fn append(&mut self, r: &mut Rand, n: usize) {
        let e = engine();
        let l = self.layout;
        let row = l.hk * l.d;
        let mut k = r.vec(l.batch * n * row, -2.0, 2.0);
        for (i, x) in k.iter_mut().enumerate() {
            *x += ((i % l.d) % 7) as f32 - 3.0;
        }
        let v = r.vec(l.batch * n * row, -1.0, 1.0);
        for b in 0..l.batch {
            self.k[b].extend_from_slice(&k[b * n * row..(b + 1) * n * row]);
            self.v[b].extend_from_slice(&v[b * n * row..(b + 1) * n * row]);
        }
        let shape = [l.batch, n, l.hk, l.d];
        let kt = e.upload_f32(&shape, &k).unwrap();
        let vt = e.upload_f32(&shape, &v).unwrap();
        let mut rec = e.recorder();
        ops::kv_append(&mut self.cache, &kt, &vt)
            .record(&mut rec)
            .unwrap();
        rec.submit().unwrap();
        // The prompt attends its rows at full precision: kivi2 leaves them as they were.
        assert_eq!(e.read_f32(&kt).unwrap(), k, "k_new was modified");
    }

    fn words(&self) -> (Vec<u32>, Vec<u32>) {
        let e = engine();
        let (kw, vw) = (
            e.read_u32(self.cache.k()).unwrap(),
            e.read_u32(self.cache.v()).unwrap(),
        );
        assert_eq!((kw.len(), vw.len()), self.layout.words(), "storage size");
        (kw, vw)
    }

    /// Checks the stored groups and residual rows against the reference.
    fn check_storage(&self, label: &str) {
        let (kw, vw) = self.words();
        let len = self.cache.len();
        let flat = |x: &Vec<Vec<f32>>| x.concat();
        self.layout
            .check(label, &kw, &vw, &flat(&self.k), &flat(&self.v), len);
    }

    /// Decodes one query per head with each config and checks it against f64 attention over
    /// the cache as the host decodes it.
    fn check_decode(&self, r: &mut Rand, heads: usize, configs: &[Option<DecodeConfig>]) {
        let e = engine();
        let l = self.layout;
        let n = self.cache.len();
        let (kw, vw) = self.words();
        let (k, v) = l.decode(&kw, &vw, n);
        let q = r.vec(l.batch * heads * l.d, -2.0, 2.0);
        let p = AttnProblem {
            batch: l.batch,
            seq_q: 1,
            seq_kv: n,
            n_heads: heads,
            n_kv_heads: l.hk,
            head_dim: l.d,
            causal: false,
            window: None,
            scale: 1.0 / (l.d as f64).sqrt(),
            softcap: None,
            kv_lens: vec![n; l.batch],
            q_pos0: n.saturating_sub(1),
        };
        let want = oracle(&p, &q, &k, &v);
        let qt = e.upload_f32(&[l.batch, heads, l.d], &q).unwrap();
        for cfg in configs {
            let mut rec = e.recorder();
            let out = ops::attention_decode(&qt, &self.cache, &DecodeOptions::default())
                .config_opt(cfg.clone())
                .record(&mut rec)
                .unwrap();
            rec.submit().unwrap();
            let got = e.read_f32(&out).unwrap();
            let label = format!("kivi2 decode len {n} {l:?} cfg={cfg:?}");
            assert_close(&label, r.seed, &got, &want, 2e-5, 1e-4, NMSE_ATTENTION);
        }
    }

    fn space(&self, heads: usize) -> Vec<Option<DecodeConfig>> {
        let l = self.layout;
        let q = engine()
            .upload_f32(&[l.batch, heads, l.d], &vec![0.0; l.batch * heads * l.d])
            .unwrap();
        let spec = ops::attention_decode(&q, &self.cache, &DecodeOptions::default())
            .spec()
            .unwrap();
        spec.space(engine().profile())
            .into_iter()
            .map(Some)
            .collect()
    }
}

/// Lengths 0, 1, G - 1, G, G + 1 and 3G + 5 reached one append at a time where a single
/// position completes a group (what a decode step does), the storage checked and decode
/// attention run over every config at each.
#[test]
fn decode_every_config_across_group_boundaries() {
    let mut r = Rand::new(2727);
    let mut t = Tracked::new(1, 2, 64, 4 * G + 3);
    let space = t.space(4);
    assert!(space.len() >= 12, "{} configs", space.len());
    t.check_decode(&mut r, 4, &space);
    for n in [1, G - 2, 1, 1, 2 * G + 4] {
        t.append(&mut r, n);
        let len = t.cache.len();
        t.check_storage(&format!("len {len}"));
        t.check_decode(&mut r, 4, &space);
    }
    assert_eq!(t.cache.len(), 3 * G + 5);
}

/// The whole decode space at real models' head dims (128, and Gemma 3's 256: 8 and 16 code
/// words a key, against 4 at d 64 above), GQA 4 over 2 kv heads: a prompt of 3G - 2, then
/// single positions across the boundary of group 2, decoded at 3G + 1 (three quantized
/// groups and a residual row; score blocks of some configs straddle two groups).
#[test]
fn decode_every_config_at_model_head_dims() {
    let mut r = Rand::new(3030);
    for d in [128, 256] {
        let mut t = Tracked::new(1, 2, d, 4 * G);
        t.append(&mut r, 3 * G - 2);
        for _ in 0..3 {
            t.append(&mut r, 1);
        }
        t.check_storage(&format!("d {d}"));
        let space = t.space(8);
        assert!(space.len() >= 12, "{} configs", space.len());
        t.check_decode(&mut r, 8, &space);
    }
}

/// A prompt longer than the residual window in one append (the flush quantizes three groups
/// from k_new; only the last 2G rows go to the window), then single positions up to and past
/// the next boundary; batch 2, GQA, head dims 320 (10 value groups) and 96 (3).
#[test]
fn prompt_then_single_steps_quantize_as_the_reference() {
    let mut r = Rand::new(2828);
    for (d, hk) in [(320, 1), (96, 2)] {
        let mut t = Tracked::new(2, hk, d, 5 * G);
        t.append(&mut r, 3 * G + 126);
        t.check_storage(&format!("d {d} prompt"));
        t.check_decode(&mut r, 2 * hk, &[None]);
        for _ in 0..3 {
            t.append(&mut r, 1);
        }
        assert_eq!(t.cache.len(), 4 * G + 1);
        t.check_storage(&format!("d {d} after steps"));
        t.check_decode(&mut r, 2 * hk, &[None]);
    }
}

/// Rewinding a step that completed a group (a generation's step run ahead) reads the group's
/// rows from the residual window again, and re-appending quantizes it anew.
#[test]
fn rewind_across_a_flushed_group_reads_the_window() {
    let mut r = Rand::new(2929);
    let mut t = Tracked::new(1, 1, 64, 3 * G);
    t.append(&mut r, G + 2);
    t.cache.truncate(G - 1);
    for x in [&mut t.k, &mut t.v] {
        x[0].truncate((G - 1) * 64);
    }
    t.check_decode(&mut r, 2, &[None]);
    t.append(&mut r, 2);
    t.check_storage("after rewind");
    t.check_decode(&mut r, 2, &[None]);
}

#[test]
fn kivi2_rejects_ring_caches_and_odd_head_dims() {
    let mut o = KvCacheOptions {
        batch: 1,
        n_kv_heads: 1,
        head_dim: 64,
        capacity: 512,
        ring: true,
        dtype: Some(KvDType::Kivi2),
    };
    let Err(err) = KvCache::new(engine(), o.clone()) else {
        panic!("a kivi2 ring cache was made");
    };
    assert!(err.to_string().contains("ring"), "{err}");
    o.ring = false;
    o.head_dim = 48;
    let Err(err) = KvCache::new(engine(), o) else {
        panic!("a kivi2 cache of head dim 48 was made");
    };
    assert!(err.to_string().contains("multiple of 32"), "{err}");
}
