//! Fused prefill attention against the dense f64 masked-softmax oracle: causal, bidirectional,
//! padded, GQA ratios 1/2/4/8, sliding windows smaller and larger than the sequence, soft-capping,
//! sequence lengths 1, primes and tile edges +-1, and every config of the space on one shape.

use webjit_engine::jit::kernels::attention::AttentionConfig;
use webjit_engine::jit::KernelSpec;
use webjit_engine::ops::{self, AttentionOptions};
use webjit_tests::oracle_attention::{attention as oracle, AttnProblem};
use webjit_tests::{assert_close, engine, Rand, NMSE_ATTENTION};

#[derive(Clone, Copy, Debug, Default)]
struct Case {
    batch: usize,
    seq_q: usize,
    seq_kv: usize,
    heads: usize,
    kv_heads: usize,
    d: usize,
    causal: bool,
    window: Option<usize>,
    softcap: Option<f32>,
    padded: bool,
}

fn case(seq: usize, heads: usize, kv_heads: usize, d: usize) -> Case {
    Case {
        batch: 1,
        seq_q: seq,
        seq_kv: seq,
        heads,
        kv_heads,
        d,
        ..Default::default()
    }
}

/// Runs `c` with each config in `configs` (None = default) and checks every output element.
fn check(r: &mut Rand, c: Case, configs: &[Option<AttentionConfig>]) {
    let e = engine();
    let q = r.vec(c.batch * c.seq_q * c.heads * c.d, -2.0, 2.0);
    let k = r.vec(c.batch * c.seq_kv * c.kv_heads * c.d, -2.0, 2.0);
    let v = r.vec(c.batch * c.seq_kv * c.kv_heads * c.d, -1.0, 1.0);
    let kv_lens: Vec<usize> = (0..c.batch)
        .map(|b| {
            if c.padded {
                // Includes an entry with all keys and, for batch > 2, one with a single key.
                match b % 3 {
                    0 => c.seq_kv,
                    1 => r.range(1, c.seq_kv + 1),
                    _ => 1.min(c.seq_kv),
                }
            } else {
                c.seq_kv
            }
        })
        .collect();
    let scale = 1.0 / (c.d as f32).sqrt();
    let p = AttnProblem {
        batch: c.batch,
        seq_q: c.seq_q,
        seq_kv: c.seq_kv,
        n_heads: c.heads,
        n_kv_heads: c.kv_heads,
        head_dim: c.d,
        causal: c.causal,
        window: c.window,
        scale: scale as f64,
        softcap: c.softcap.map(|x| x as f64),
        kv_lens: kv_lens.clone(),
        q_pos0: c.seq_kv.saturating_sub(c.seq_q),
    };
    let want = oracle(&p, &q, &k, &v);
    let qt = e.upload_f32(&[c.batch, c.seq_q, c.heads, c.d], &q).unwrap();
    let kt = e
        .upload_f32(&[c.batch, c.seq_kv, c.kv_heads, c.d], &k)
        .unwrap();
    let vt = e
        .upload_f32(&[c.batch, c.seq_kv, c.kv_heads, c.d], &v)
        .unwrap();
    let opts = AttentionOptions {
        causal: c.causal,
        window: c.window.map(|w| w as u32),
        scale: Some(scale),
        softcap: c.softcap,
        kv_lens: c
            .padded
            .then(|| kv_lens.iter().map(|&x| x as u32).collect()),
        q_pos0: None,
    };
    for cfg in configs {
        let mut rec = e.recorder();
        let out = ops::attention(&qt, &kt, &vt, &opts)
            .config_opt(cfg.clone())
            .record(&mut rec)
            .unwrap();
        rec.submit().unwrap();
        let got = e.read_f32(&out).unwrap();
        let label = format!("attention {c:?} cfg={cfg:?}");
        assert_close(&label, r.seed, &got, &want, 2e-5, 1e-4, NMSE_ATTENTION);
    }
}

#[test]
fn prefill_masks_and_gqa_match_oracle() {
    let mut r = Rand::new(5);
    let cases = [
        // Sequence length 1, both masks.
        Case {
            causal: true,
            ..case(1, 2, 1, 64)
        },
        case(1, 1, 1, 64),
        // GQA ratios 1, 2, 4, 8 at prime lengths.
        Case {
            causal: true,
            ..case(37, 4, 4, 64)
        },
        Case {
            causal: true,
            ..case(61, 4, 2, 64)
        },
        case(53, 8, 2, 64),
        Case {
            causal: true,
            ..case(29, 8, 1, 128)
        },
        // Default tile edges +-1: 128 query rows per workgroup, 32 keys per tile.
        Case {
            causal: true,
            ..case(127, 2, 1, 64)
        },
        Case {
            causal: true,
            ..case(128, 2, 2, 64)
        },
        Case {
            causal: true,
            ..case(129, 2, 1, 64)
        },
        case(31, 2, 1, 128),
        case(33, 2, 1, 128),
        // Head dims other than powers of two, and 256.
        Case {
            causal: true,
            ..case(41, 2, 1, 80)
        },
        case(23, 3, 1, 96),
        Case {
            causal: true,
            ..case(19, 2, 2, 256)
        },
        case(17, 1, 1, 4),
        // Sliding windows smaller and larger than the sequence, causal and bidirectional.
        Case {
            causal: true,
            window: Some(16),
            ..case(131, 2, 1, 64)
        },
        Case {
            causal: true,
            window: Some(1),
            ..case(40, 2, 1, 64)
        },
        Case {
            causal: true,
            window: Some(500),
            ..case(67, 2, 1, 64)
        },
        Case {
            window: Some(9),
            ..case(71, 2, 2, 64)
        },
        // Soft-capping (Gemma 2 uses 50).
        Case {
            causal: true,
            softcap: Some(2.0),
            ..case(43, 4, 2, 64)
        },
        // Queries at the end of a longer key sequence (prefill after a cached prefix).
        Case {
            causal: true,
            seq_q: 13,
            ..case(70, 2, 1, 64)
        },
        Case {
            causal: true,
            window: Some(20),
            seq_q: 5,
            ..case(90, 2, 1, 64)
        },
    ];
    for c in cases {
        check(&mut r, c, &[None]);
    }
}

#[test]
fn prefill_padding_masks_match_oracle() {
    let mut r = Rand::new(55);
    let cases = [
        Case {
            batch: 3,
            padded: true,
            ..case(47, 4, 2, 64)
        },
        Case {
            batch: 4,
            padded: true,
            ..case(33, 2, 1, 32)
        },
        Case {
            batch: 3,
            padded: true,
            causal: true,
            ..case(29, 2, 2, 128)
        },
        Case {
            batch: 2,
            ..case(65, 4, 1, 64)
        },
    ];
    for c in cases {
        check(&mut r, c, &[None]);
    }
}

#[test]
fn prefill_every_config_matches_oracle() {
    // Every config of the head-dim-64 space; for head dim 128 (another space: different
    // register and workgroup-memory limits) the configs that split columns over threads, the
    // path its default takes. Pipeline compilation on lavapipe dominates this test's time.
    let mut r = Rand::new(555);
    for (d, seq, all) in [(64, 45, true), (128, 23, false)] {
        let c = Case {
            causal: true,
            window: Some(30),
            ..case(seq, 4, 2, d)
        };
        let spec = webjit_engine::jit::kernels::attention::AttentionSpec {
            batch: 1,
            seq_q: seq as u64,
            seq_kv: seq as u64,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: d as u64,
        };
        let space: Vec<_> = spec
            .space(engine().profile())
            .into_iter()
            .filter(|c| all || (c.tpr > 1 && c.wg == 64))
            .map(Some)
            .collect();
        eprintln!("prefill d{d}: {} configs", space.len());
        assert!(space.len() >= 8, "d{d}: {} configs", space.len());
        check(&mut r, c, &space);
    }
}

#[test]
fn prefill_is_deterministic() {
    let e = engine();
    let mut r = Rand::new(5555);
    let q = e
        .upload_f32(&[1, 50, 2, 64], &r.vec(50 * 2 * 64, -1.0, 1.0))
        .unwrap();
    let k = e
        .upload_f32(&[1, 50, 1, 64], &r.vec(50 * 64, -1.0, 1.0))
        .unwrap();
    let opts = AttentionOptions {
        causal: true,
        ..Default::default()
    };
    let run = || {
        let mut rec = e.recorder();
        let o = ops::attention(&q, &k, &k, &opts).record(&mut rec).unwrap();
        rec.submit().unwrap();
        e.read_f32(&o).unwrap()
    };
    let a = run();
    assert!(a.iter().all(|x| x.is_finite()));
    assert_eq!(a, run());
}

#[test]
fn prefill_rejects_bad_arguments() {
    let e = engine();
    let t = |s: &[usize]| e.upload_f32(s, &vec![0.5; s.iter().product()]).unwrap();
    let mut rec = e.recorder();
    let d = AttentionOptions::default();
    // Head dim not a multiple of 4.
    let err = ops::attention(&t(&[1, 3, 2, 6]), &t(&[1, 3, 2, 6]), &t(&[1, 3, 2, 6]), &d)
        .record(&mut rec)
        .unwrap_err();
    assert!(err.to_string().contains("multiple of 4"), "{err}");
    // Query heads not a multiple of kv heads.
    let err = ops::attention(&t(&[1, 3, 3, 8]), &t(&[1, 3, 2, 8]), &t(&[1, 3, 2, 8]), &d)
        .record(&mut rec)
        .unwrap_err();
    assert_eq!(err.code(), "SHAPE");
    // Padding length above seq_kv, wrong count, zero window, bad scale.
    let q = t(&[2, 3, 2, 8]);
    let k = t(&[2, 3, 2, 8]);
    for bad in [
        AttentionOptions {
            kv_lens: Some(vec![3, 4]),
            ..Default::default()
        },
        AttentionOptions {
            kv_lens: Some(vec![3]),
            ..Default::default()
        },
        AttentionOptions {
            window: Some(0),
            ..Default::default()
        },
        AttentionOptions {
            scale: Some(f32::NAN),
            ..Default::default()
        },
        AttentionOptions {
            softcap: Some(-1.0),
            ..Default::default()
        },
    ] {
        assert!(
            ops::attention(&q, &k, &k, &bad).record(&mut rec).is_err(),
            "{bad:?}"
        );
    }
}
