//! The fused q/k preparation (per-head RMSNorm, RoPE, KV append) against the f64 oracles of
//! its parts: q out, and every slot of the K and V caches (the new slots hold the normed,
//! rotated k and the v rows; all others keep what earlier appends wrote). Linear and ring
//! caches (wraparound), f32, f16, q8_0 and q4_0 storage, both RoPE layouts, with and without norms,
//! partial rotation, GQA ratios, and every config of the space.

use webjit_engine::jit::kernels::attention_decode::KvDType;
use webjit_engine::jit::kernels::qk_rope::{QkRopeConfig, QkRopeSpec};
use webjit_engine::jit::kernels::rope::RopeLayout;
use webjit_engine::jit::KernelSpec;
use webjit_engine::ops::{self, QkNorms, RopeOptions};
use webjit_engine::{Engine, KvCache, KvCacheOptions};
use webjit_tests::oracle::{rms_norm, rope};
use webjit_tests::oracle_attention::unpack_f16_pairs;
use webjit_tests::oracle_kvquant as kvq;
use webjit_tests::{assert_close, engine, Rand, NMSE_ELEMENTWISE};

struct Case {
    layout: RopeLayout,
    tokens: usize,
    heads: usize,
    kv_heads: usize,
    hd: usize,
    rot: usize,
    norm: bool,
    dtype: KvDType,
    capacity: usize,
    ring: bool,
    /// Positions appended (through the plain append) before the fused call.
    before: usize,
    /// 0: q, k, v apart; 1: q and k packed in one row, v apart; 2: q, k and v packed.
    packed: u8,
    /// The cache's key rotation (`KvCache::key_rotation`) left on where its format has one.
    key_rot: bool,
}

/// x times the orthonormal Walsh-Hadamard matrix of n dims (Sylvester's order, built as
/// H_2m = [[H_m, H_m], [H_m, -H_m]]) in blocks of n, in f64 as a plain matrix product.
fn wht(x: &[f64], n: usize) -> Vec<f64> {
    let h = |i: usize, j: usize| {
        if (i & j).count_ones().is_multiple_of(2) {
            1.0
        } else {
            -1.0
        }
    };
    let s = 1.0 / (n as f64).sqrt();
    let mut out = vec![0.0; x.len()];
    for (o, b) in out.chunks_mut(n).zip(x.chunks(n)) {
        for (j, oj) in o.iter_mut().enumerate() {
            *oj = s * (0..n).map(|i| b[i] * h(i, j)).sum::<f64>();
        }
    }
    out
}

fn storage(e: &Engine, cache: &KvCache, k: bool) -> Vec<f32> {
    let t = if k { cache.k() } else { cache.v() };
    match cache.dtype() {
        KvDType::F32 => e.read_f32(t).unwrap(),
        KvDType::F16 => unpack_f16_pairs(&e.read_u32(t).unwrap()),
        q => kvq::dequant_rows(q, &e.read_u32(t).unwrap(), cache.options().head_dim),
    }
}

fn check(e: &Engine, r: &mut Rand, c: &Case, cfg: Option<QkRopeConfig>) {
    let row = c.kv_heads * c.hd;
    let mut cache = KvCache::new(
        e,
        KvCacheOptions {
            batch: 1,
            n_kv_heads: c.kv_heads,
            head_dim: c.hd,
            capacity: c.capacity,
            ring: c.ring,
            dtype: Some(c.dtype),
        },
    )
    .unwrap();
    cache.set_key_rotation(c.key_rot).unwrap();
    let key_rot = cache.key_rotation();
    assert_eq!(
        key_rot.is_some(),
        c.key_rot && c.dtype.quantized() && c.dtype != KvDType::Kivi2 && c.hd.is_multiple_of(64),
        "key rotation of a {:?} cache, head dim {}",
        c.dtype,
        c.hd
    );
    // Earlier positions through the plain append: the fused call must leave them alone.
    let mut slots_k = vec![f64::NAN; c.capacity * row];
    let mut slots_v = vec![f64::NAN; c.capacity * row];
    if c.before > 0 {
        let k0 = r.vec(c.before * row, -2.0, 2.0);
        let v0 = r.vec(c.before * row, -2.0, 2.0);
        let shape = [1, c.before, c.kv_heads, c.hd];
        let (kt, vt) = (
            e.upload_f32(&shape, &k0).unwrap(),
            e.upload_f32(&shape, &v0).unwrap(),
        );
        let mut rec = e.recorder();
        webjit_engine::ops::kv_append(&mut cache, &kt, &vt)
            .record(&mut rec)
            .unwrap();
        rec.submit().unwrap();
        for p in 0..c.before {
            let s = p % c.capacity;
            for i in 0..row {
                slots_k[s * row + i] = k0[p * row + i] as f64;
                slots_v[s * row + i] = v0[p * row + i] as f64;
            }
        }
    }
    let pos0 = c.before;
    let q = r.vec(c.tokens * c.heads * c.hd, -3.0, 3.0);
    let k = r.vec(c.tokens * row, -3.0, 3.0);
    let v = r.vec(c.tokens * row, -2.0, 2.0);
    let qn = r.vec(c.hd, -1.5, 1.5);
    let kn = r.vec(c.hd, -1.5, 1.5);
    let (eps, off) = (1e-6f32, if c.norm { 1.0f32 } else { 0.0 });
    let base = if c.layout == RopeLayout::Neox {
        1_000_000.0
    } else {
        10_000.0
    };
    let positions: Vec<u32> = (0..c.tokens).map(|t| (pos0 + t) as u32).collect();
    let neox = c.layout == RopeLayout::Neox;

    // Oracle: norm per head (f64), then rotate (the oracle's rope takes f32 input, so feed it
    // the f64 norm rounded to f32 only where there is a norm; rotation of exact inputs).
    let prep = |x: &[f32], w: &[f32], heads: usize| -> Vec<f64> {
        let normed: Vec<f32> = if c.norm {
            rms_norm(x, w, c.hd, eps as f64, off as f64)
                .iter()
                .map(|&v| v as f32)
                .collect()
        } else {
            x.to_vec()
        };
        let r = rope(&normed, heads, c.hd, c.rot, &positions, base, neox);
        // A q8_0 / q4_0 cache's keys, and the queries meeting them, rotated after RoPE.
        match key_rot {
            Some(n) => wht(&r, n),
            None => r,
        }
    };
    let want_q = prep(&q, &qn, c.heads);
    let want_k = prep(&k, &kn, c.kv_heads);
    for t in 0..c.tokens {
        let s = (pos0 + t) % c.capacity;
        for i in 0..row {
            slots_k[s * row + i] = want_k[t * row + i];
            slots_v[s * row + i] = v[t * row + i] as f64;
        }
    }

    let qt = e.upload_f32(&[c.tokens, c.heads, c.hd], &q).unwrap();
    let kt = e.upload_f32(&[c.tokens, c.kv_heads, c.hd], &k).unwrap();
    let vt = e.upload_f32(&[c.tokens, c.kv_heads, c.hd], &v).unwrap();
    let qnt = e.upload_f32(&[c.hd], &qn).unwrap();
    let knt = e.upload_f32(&[c.hd], &kn).unwrap();
    let opts = RopeOptions {
        layout: c.layout,
        base,
        rot_dims: Some(c.rot),
    };
    let norms = c.norm.then_some(QkNorms {
        q: &qnt,
        k: &knt,
        eps,
        w_offset: off,
    });
    let mut rec = e.recorder();
    let table = ops::rope_table(&mut rec, &positions, c.rot, base).unwrap();
    let out = if c.packed > 0 {
        let mut row = q.clone();
        row.extend_from_slice(&k);
        if c.packed == 2 {
            row.extend_from_slice(&v);
        }
        let pt = e.upload_f32(&[1, row.len()], &row).unwrap();
        let vt1 = e.upload_f32(&[1, v.len()], &v).unwrap();
        let vsep = (c.packed == 1).then_some(&vt1);
        ops::qk_rope_append_packed(&pt, vsep, c.heads, norms, &table, &opts, &mut cache)
            .config_opt(cfg.clone())
            .record(&mut rec)
            .unwrap()
    } else {
        ops::qk_rope_append(&qt, &kt, &vt, norms, &table, &opts, &mut cache)
            .config_opt(cfg.clone())
            .record(&mut rec)
            .unwrap()
    };
    rec.submit().unwrap();
    assert_eq!(
        cache.len(),
        pos0 + c.tokens,
        "cache length after the fused append"
    );

    let label = format!(
        "qk_rope {:?} t{} h{}x{} d{} rot{} norm={} {:?} wht {key_rot:?} cap{} ring={} before={} {cfg:?}",
        c.layout,
        c.tokens,
        c.heads,
        c.kv_heads,
        c.hd,
        c.rot,
        c.norm,
        c.dtype,
        c.capacity,
        c.ring,
        c.before
    );
    // The norm's f32 rounding feeds the rotation: allow f32-level error.
    assert_close(
        &format!("{label} q"),
        r.seed,
        &e.read_f32(&out).unwrap(),
        &want_q,
        1e-5,
        1e-5,
        NMSE_ELEMENTWISE,
    );
    if c.dtype.quantized() {
        // Each written row's blocks against ggml's quantization of the oracle's row.
        let rw = kvq::row_words(c.dtype, c.hd);
        for (name, is_k, want) in [("k", true, &slots_k), ("v", false, &slots_v)] {
            let words = e
                .read_u32(if is_k { cache.k() } else { cache.v() })
                .unwrap();
            let mut n = 0;
            for (r, w) in want.chunks(c.hd).enumerate() {
                if !w[0].is_nan() {
                    let label = format!("{label} {name} cache row {r}");
                    kvq::check_row_close(&label, c.dtype, &words[r * rw..][..rw], w);
                    n += 1;
                }
            }
            assert!(n > 0);
        }
        return;
    }
    let (atol, rtol, nmse) = match c.dtype {
        KvDType::F32 => (1e-5, 1e-5, NMSE_ELEMENTWISE),
        _ => (2e-3, 1e-3, 1e-6),
    };
    // Slots never written keep the cache's initial contents: compare only written ones.
    for (name, is_k, want) in [("k", true, &slots_k), ("v", false, &slots_v)] {
        let got = storage(e, &cache, is_k);
        let (g, w): (Vec<f32>, Vec<f64>) = got
            .iter()
            .zip(want.iter())
            .filter(|(_, w)| !w.is_nan())
            .map(|(&g, &w)| (g, w))
            .unzip();
        assert!(!w.is_empty());
        assert_close(
            &format!("{label} {name} cache"),
            r.seed,
            &g,
            &w,
            atol,
            rtol,
            nmse,
        );
    }
}

fn case(
    layout: RopeLayout,
    heads: usize,
    kv_heads: usize,
    hd: usize,
    rot: usize,
    norm: bool,
    dtype: KvDType,
) -> Case {
    Case {
        layout,
        tokens: 1,
        heads,
        kv_heads,
        hd,
        rot,
        norm,
        dtype,
        capacity: 64,
        ring: false,
        before: 5,
        packed: 0,
        key_rot: true,
    }
}

#[test]
fn qk_rope_matches_oracle() {
    let e = engine();
    let mut r = Rand::new(77);
    let mut dtypes = vec![KvDType::F32, KvDType::Q8_0, KvDType::Q4_0];
    if e.profile().f16 {
        dtypes.push(KvDType::F16);
    }
    for &dtype in &dtypes {
        for layout in [RopeLayout::Neox, RopeLayout::Normal] {
            // The quantizers do not depend on the layout: one is enough (keeps this fast).
            if dtype.quantized() && layout == RopeLayout::Normal {
                continue;
            }
            for norm in [true, false] {
                // Gemma 3 270M's shape (4 q heads, 1 kv head, d 256), GQA 1/2/8, partial rotation.
                for (h, g, d, rot) in [
                    (4, 1, 256, 256),
                    (8, 8, 64, 64),
                    (8, 4, 128, 128),
                    (8, 1, 128, 64),
                    (2, 1, 4, 2),
                ] {
                    // Quantized caches store whole blocks of 32.
                    if dtype.quantized() && d % 32 != 0 {
                        continue;
                    }
                    check(e, &mut r, &case(layout, h, g, d, rot, norm, dtype), None);
                }
            }
            // A quantized cache with its key rotation turned off stores RoPE'd keys as they are.
            if dtype.quantized() {
                let mut c = case(layout, 4, 1, 256, 256, true, dtype);
                c.key_rot = false;
                check(e, &mut r, &c, None);
            }
            // Several new positions, a ring through wraparound, an empty cache.
            let mut c = case(layout, 4, 2, 64, 64, true, dtype);
            c.tokens = 3;
            check(e, &mut r, &c, None);
            let mut c = case(layout, 4, 1, 256, 256, true, dtype);
            c.capacity = 7;
            c.ring = true;
            c.before = 12;
            check(e, &mut r, &c, None);
            c.tokens = 4;
            check(e, &mut r, &c, None);
            c.before = 0;
            check(e, &mut r, &c, None);
            // q, k (and v) packed in one row, as the stacked projection writes them.
            for packed in [1, 2] {
                let mut c = case(layout, 4, 1, 256, 256, true, dtype);
                c.packed = packed;
                check(e, &mut r, &c, None);
                let mut c = case(layout, 8, 2, 64, 32, false, dtype);
                c.packed = packed;
                c.ring = true;
                c.capacity = 5;
                c.before = 9;
                check(e, &mut r, &c, None);
            }
        }
    }
}

#[test]
fn qk_rope_every_config_matches_oracle() {
    let e = engine();
    let mut r = Rand::new(78);
    for (h, g, d, dtype) in [
        (4, 1, 256, KvDType::F32),
        (8, 2, 64, KvDType::F32),
        (4, 1, 256, KvDType::Q8_0),
        (8, 2, 96, KvDType::Q4_0),
        (8, 2, 128, KvDType::Q4_0),
    ] {
        let mut c = case(RopeLayout::Neox, h, g, d, d, true, dtype);
        c.packed = 2;
        c.ring = true;
        c.capacity = 9;
        c.before = 20;
        let spec = QkRopeSpec {
            layout: c.layout,
            tokens: 1,
            n_heads: h as u64,
            n_kv_heads: g as u64,
            head_dim: d as u64,
            rot: d as u64,
            norm: true,
            kv_dtype: c.dtype,
            hadamard: c.dtype.key_rotation(d as u64).unwrap_or(0),
        };
        let space = spec.space(e.profile());
        assert!(space.len() >= 3, "space {space:?}");
        for cfg in space {
            check(e, &mut r, &c, Some(cfg));
        }
    }
}

#[test]
fn qk_rope_bad_arguments_fail_cleanly() {
    let e = engine();
    let mut r = Rand::new(79);
    let mut cache = KvCache::new(
        e,
        KvCacheOptions {
            batch: 1,
            n_kv_heads: 1,
            head_dim: 8,
            capacity: 2,
            ring: false,
            dtype: Some(KvDType::F32),
        },
    )
    .unwrap();
    let q = e.upload_f32(&[1, 2, 8], &r.vec(16, -1.0, 1.0)).unwrap();
    let k = e.upload_f32(&[1, 1, 8], &r.vec(8, -1.0, 1.0)).unwrap();
    let bad_k = e.upload_f32(&[1, 2, 8], &r.vec(16, -1.0, 1.0)).unwrap();
    let opts = RopeOptions {
        layout: RopeLayout::Neox,
        base: 10_000.0,
        rot_dims: None,
    };
    let mut rec = e.recorder();
    let table = ops::rope_table(&mut rec, &[0], 8, 10_000.0).unwrap();
    let bad_table = ops::rope_table(&mut rec, &[0, 1], 8, 10_000.0).unwrap();
    assert!(
        ops::qk_rope_append(&q, &bad_k, &k, None, &table, &opts, &mut cache)
            .record(&mut rec)
            .is_err()
    );
    assert!(
        ops::qk_rope_append(&q, &k, &k, None, &bad_table, &opts, &mut cache)
            .record(&mut rec)
            .is_err()
    );
    assert_eq!(cache.len(), 0, "a refused call appends nothing");
    // The linear cache of 2 slots takes two positions, then refuses the third.
    for _ in 0..2 {
        ops::qk_rope_append(&q, &k, &k, None, &table, &opts, &mut cache)
            .record(&mut rec)
            .unwrap();
    }
    let err = ops::qk_rope_append(&q, &k, &k, None, &table, &opts, &mut cache).record(&mut rec);
    assert!(err.is_err(), "overflow must fail");
    assert_eq!(cache.len(), 2);
    // A packed row of the wrong width is refused.
    let row = e.upload_f32(&[1, 20], &r.vec(20, -1.0, 1.0)).unwrap();
    let bad =
        ops::qk_rope_append_packed(&row, None, 2, None, &table, &opts, &mut cache).record(&mut rec);
    assert!(bad.is_err());
    rec.submit().unwrap();
}

#[test]
fn hadamard_every_config_matches_f64() {
    let e = engine();
    let mut r = Rand::new(80);
    // (rows, width, block): a prompt's keys at Gemma's head dim, blocks narrower than the row,
    // 1/sqrt(block) inexact (128), the smallest block, one row.
    for (rows, width, block) in [
        (6, 256, 256),
        (5, 192, 64),
        (3, 128, 128),
        (4, 8, 2),
        (1, 64, 64),
    ] {
        let x = r.vec(rows * width, -3.0, 3.0);
        let want = wht(&x.iter().map(|&v| v as f64).collect::<Vec<_>>(), block);
        let xt = e.upload_f32(&[rows, width], &x).unwrap();
        let spec = ops::hadamard(&xt, block).spec().unwrap();
        let space = spec.space(e.profile());
        assert!(space.len() >= 3, "space {space:?}");
        for cfg in space {
            let mut rec = e.recorder();
            let y = ops::hadamard(&xt, block)
                .config(cfg.clone())
                .record(&mut rec)
                .unwrap();
            // Its own inverse: twice gives x back.
            let back = ops::hadamard(&y, block).record(&mut rec).unwrap();
            rec.submit().unwrap();
            let label = format!("{} rows {rows}", spec.key(&cfg));
            let got = e.read_f32(&y).unwrap();
            assert_close(&label, r.seed, &got, &want, 1e-5, 1e-5, NMSE_ELEMENTWISE);
            let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            let got = e.read_f32(&back).unwrap();
            assert_close(
                &format!("{label} twice"),
                r.seed,
                &got,
                &x64,
                1e-5,
                1e-5,
                NMSE_ELEMENTWISE,
            );
        }
    }
    // Blocks that are not a power of two, or do not divide the row, are shape errors.
    let xt = e.upload_f32(&[2, 96], &r.vec(192, -1.0, 1.0)).unwrap();
    for block in [0, 1, 3, 64, 128] {
        let mut rec = e.recorder();
        let err = ops::hadamard(&xt, block).record(&mut rec).unwrap_err();
        assert_eq!(err.code(), "SHAPE", "block {block}: {err}");
    }
}
