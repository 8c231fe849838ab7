//! Tiled f32 matmul against the f64 oracle: sizes 1, primes, tile edges +-1, batched, both B
//! layouts, and every config of the space on an aligned and an unaligned shape.

use webjit_engine::jit::KernelSpec;
use webjit_engine::ops;
use webjit_tests::{assert_close, engine, oracle, Rand, NMSE_MATMUL};

fn check(
    r: &mut Rand,
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    trans_b: bool,
    shared_b: bool,
    all_configs: bool,
) -> usize {
    let e = engine();
    let a = r.vec(batch * m * k, -1.0, 1.0);
    let bn = if shared_b { k * n } else { batch * k * n };
    let b = r.vec(bn, -1.0, 1.0);
    let a_shape: Vec<usize> = if batch > 1 {
        vec![batch, m, k]
    } else {
        vec![m, k]
    };
    let (r0, c0) = if trans_b { (n, k) } else { (k, n) };
    let b_shape: Vec<usize> = if shared_b {
        vec![r0, c0]
    } else {
        vec![batch, r0, c0]
    };
    let at = e.upload_f32(&a_shape, &a).unwrap();
    let btt = e.upload_f32(&b_shape, &b).unwrap();
    let want = oracle::matmul(&a, &b, batch, m, n, k, trans_b, shared_b);
    let spec = ops::matmul(&at, &btt, trans_b).spec().unwrap();
    let mut configs = vec![None];
    if all_configs {
        configs.extend(spec.space(e.profile()).into_iter().map(Some));
    }
    let atol = 2e-6 * (k as f64).sqrt() * 4.0;
    for cfg in &configs {
        let mut rec = e.recorder();
        let out = ops::matmul(&at, &btt, trans_b)
            .config_opt(cfg.clone())
            .record(&mut rec)
            .unwrap();
        rec.submit().unwrap();
        let got = e.read_f32(&out).unwrap();
        let label = format!(
            "matmul b{batch} m{m} n{n} k{k} trans_b={trans_b} shared_b={shared_b} cfg={cfg:?}"
        );
        assert_close(&label, r.seed, &got, &want, atol, 1e-5, NMSE_MATMUL);
    }
    configs.len()
}

#[test]
fn matmul_shapes_match_oracle() {
    let mut r = Rand::new(51);
    let shapes = [
        (1, 1, 1),
        (1, 64, 64),
        (7, 13, 5),
        (2, 3, 1),
        (31, 33, 17),
        (63, 65, 64),
        (64, 64, 64),
        (127, 129, 130),
        (128, 128, 128),
        (1, 257, 96),
        (129, 1, 31),
        (16, 127, 255),
    ];
    for trans_b in [false, true] {
        for &(m, n, k) in &shapes {
            check(&mut r, 1, m, n, k, trans_b, true, false);
        }
        for _ in 0..4 {
            let (m, n, k) = (r.range(1, 200), r.range(1, 200), r.range(1, 300));
            check(&mut r, 1, m, n, k, trans_b, true, false);
        }
        check(&mut r, 3, 17, 40, 24, trans_b, false, false);
        check(&mut r, 2, 33, 64, 64, trans_b, true, false);
    }
}

#[test]
fn matmul_every_config_aligned() {
    let mut r = Rand::new(52);
    for trans_b in [false, true] {
        let n = check(&mut r, 1, 160, 192, 96, trans_b, true, true);
        assert!(n > 24, "space too small: {n}");
    }
}

#[test]
fn matmul_every_config_unaligned() {
    let mut r = Rand::new(53);
    for trans_b in [false, true] {
        check(&mut r, 2, 37, 61, 53, trans_b, false, true);
    }
}

#[test]
fn matmul_reruns_are_deterministic() {
    let e = engine();
    let mut r = Rand::new(54);
    let a = e.upload_f32(&[70, 90], &r.vec(6300, -1.0, 1.0)).unwrap();
    let b = e.upload_f32(&[90, 50], &r.vec(4500, -1.0, 1.0)).unwrap();
    let mut outs = Vec::new();
    for _ in 0..2 {
        let mut rec = e.recorder();
        let o = ops::matmul(&a, &b, false).record(&mut rec).unwrap();
        rec.submit().unwrap();
        outs.push(e.read_f32(&o).unwrap());
    }
    assert_eq!(outs[0], outs[1]);
}

#[test]
fn many_ops_share_one_pass() {
    let e = engine();
    let mut r = Rand::new(55);
    let x = r.vec(64 * 64, -1.0, 1.0);
    let xt = e.upload_f32(&[64, 64], &x).unwrap();
    let w = e.upload_f32(&[64], &r.vec(64, -1.0, 1.0)).unwrap();
    let mut rec = e.recorder();
    let h = ops::matmul(&xt, &xt, true).record(&mut rec).unwrap();
    let h = ops::rms_norm(&h, &w, 1e-6, 1.0).record(&mut rec).unwrap();
    let h = ops::gelu_tanh(&h).record(&mut rec).unwrap();
    let h = ops::softmax(&h).record(&mut rec).unwrap();
    assert_eq!(rec.stats.dispatches, 4);
    assert_eq!(
        rec.stats.passes, 1,
        "consecutive dispatches must share a compute pass"
    );
    rec.submit().unwrap();
    let got = e.read_f32(&h).unwrap();
    // The same chain through the oracles.
    let wv = e.read_f32(&w).unwrap();
    let mm: Vec<f32> = oracle::matmul(&x, &x, 1, 64, 64, 64, true, true)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let n: Vec<f32> = oracle::rms_norm(&mm, &wv, 64, 1e-6, 1.0)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let g: Vec<f32> = oracle::gelu_tanh(&n).iter().map(|&v| v as f32).collect();
    let want = oracle::softmax(&g, 64);
    assert_close("chain", r.seed, &got, &want, 1e-5, 1e-4, 1e-8);
}

/// `ops::linear`'s epilogue (bias, erf GELU, residual, and their combinations) against the f64
/// oracle: the full epilogue on every config of the space for an unaligned shape, every
/// combination on the default config, and an aligned encoder-like shape. The reference applies each part in f64 to the f64 product.
#[test]
fn linear_epilogue_every_config_matches_oracle() {
    let e = engine();
    let mut r = Rand::new(56);
    let variants = [
        (true, false, false),
        (true, true, false),
        (true, false, true),
        (false, false, true),
        (true, true, true),
        (false, true, false),
    ];
    let mut checked = 0;
    for &(m, n, k, all) in &[(19usize, 45usize, 37usize, true), (16, 384, 96, false)] {
        let x = r.vec(m * k, -1.0, 1.0);
        let w = r.vec(n * k, -1.0, 1.0);
        let bias = r.vec(n, -1.0, 1.0);
        let res = r.vec(m * n, -1.0, 1.0);
        let (xt, wt) = (
            e.upload_f32(&[m, k], &x).unwrap(),
            e.upload_f32(&[n, k], &w).unwrap(),
        );
        let (bt, rt) = (
            e.upload_f32(&[n], &bias).unwrap(),
            e.upload_f32(&[m, n], &res).unwrap(),
        );
        let prod = oracle::matmul(&x, &w, 1, m, n, k, true, true);
        for &(use_bias, gelu, use_res) in &variants {
            let want: Vec<f64> = prod
                .iter()
                .enumerate()
                .map(|(i, &p)| {
                    let mut y = p + if use_bias { bias[i % n] as f64 } else { 0.0 };
                    if gelu {
                        y = 0.5 * y * (1.0 + libm::erf(y / std::f64::consts::SQRT_2));
                    }
                    y + if use_res { res[i] as f64 } else { 0.0 }
                })
                .collect();
            let epi = ops::LinearEpilogue {
                bias: use_bias.then_some(&bt),
                gelu,
                residual: use_res.then_some(&rt),
            };
            let mut spec = ops::matmul(&xt, &wt, true).spec().unwrap();
            spec.epilogue = webjit_engine::jit::kernels::matmul::Epilogue {
                bias: use_bias,
                gelu,
                residual: use_res,
                split: 0,
                norm: false,
            };
            let mut configs = vec![None];
            if all && use_bias && gelu && use_res {
                configs.extend(spec.space(e.profile()).into_iter().map(Some));
            }
            for cfg in configs {
                let mut rec = e.recorder();
                let out = ops::linear(&xt, &wt, epi)
                    .config_opt(cfg.clone())
                    .record(&mut rec)
                    .unwrap();
                assert_eq!(
                    rec.stats.dispatches, 1,
                    "the epilogue must not add dispatches"
                );
                rec.submit().unwrap();
                let got = e.read_f32(&out).unwrap();
                let label = format!(
                    "linear m{m} n{n} k{k} bias={use_bias} gelu={gelu} res={use_res} cfg={cfg:?}"
                );
                let atol = 2e-6 * (k as f64).sqrt() * 4.0;
                assert_close(&label, r.seed, &got, &want, atol, 1e-5, NMSE_MATMUL);
                checked += 1;
            }
        }
    }
    assert!(checked > 12 + 24, "space too small: {checked} runs");
}

#[test]
fn linear_rejects_mismatched_epilogue_operands() {
    let e = engine();
    let x = e.upload_f32(&[4, 8], &[0.5; 32]).unwrap();
    let w = e.upload_f32(&[6, 8], &[0.25; 48]).unwrap();
    let short_bias = e.upload_f32(&[5], &[0.0; 5]).unwrap();
    let bad_res = e.upload_f32(&[4, 5], &[0.0; 20]).unwrap();
    let w3 = e.upload_f32(&[1, 6, 8], &[0.25; 48]).unwrap();
    let mut rec = e.recorder();
    for (what, epi, w) in [
        (
            "short bias",
            ops::LinearEpilogue {
                bias: Some(&short_bias),
                ..Default::default()
            },
            &w,
        ),
        (
            "residual of the wrong shape",
            ops::LinearEpilogue {
                residual: Some(&bad_res),
                ..Default::default()
            },
            &w,
        ),
        ("3-D weight", ops::LinearEpilogue::default(), &w3),
    ] {
        let err = ops::linear(&x, w, epi).record(&mut rec).expect_err(what);
        assert!(
            matches!(err, webjit_engine::Error::Shape { op: "linear", .. }),
            "{what}: {err:?}"
        );
    }
    assert_eq!(rec.stats.dispatches, 0);
}

/// `ops::linear_split`: one dispatch writing N / parts columns to each of its outputs (a
/// stacked Q/K/V projection), on every config of the space, against the f64 oracle of the
/// full product; and its refusals.
#[test]
fn linear_split_every_config_matches_oracle() {
    let e = engine();
    let mut r = Rand::new(57);
    let (m, n, k) = (19usize, 45usize, 37usize);
    let x = r.vec(m * k, -1.0, 1.0);
    let w = r.vec(n * k, -1.0, 1.0);
    let bias = r.vec(n, -1.0, 1.0);
    let (xt, wt, bt) = (
        e.upload_f32(&[m, k], &x).unwrap(),
        e.upload_f32(&[n, k], &w).unwrap(),
        e.upload_f32(&[n], &bias).unwrap(),
    );
    let full: Vec<f64> = oracle::matmul(&x, &w, 1, m, n, k, true, true)
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let y = p + bias[i % n] as f64;
            0.5 * y * (1.0 + libm::erf(y / std::f64::consts::SQRT_2))
        })
        .collect();
    let epi = ops::LinearEpilogue {
        bias: Some(&bt),
        gelu: true,
        residual: None,
    };
    let mut spec = ops::matmul(&xt, &wt, true).spec().unwrap();
    spec.epilogue = webjit_engine::jit::kernels::matmul::Epilogue {
        bias: true,
        gelu: true,
        residual: false,
        split: 3,
        norm: false,
    };
    let mut configs = vec![None];
    configs.extend(spec.space(e.profile()).into_iter().map(Some));
    assert!(configs.len() > 24, "space too small: {}", configs.len());
    let nb = n / 3;
    for cfg in configs {
        let mut rec = e.recorder();
        let outs = ops::linear_split(&xt, &wt, epi, 3)
            .config_opt(cfg.clone())
            .record(&mut rec)
            .unwrap();
        assert_eq!(rec.stats.dispatches, 1);
        rec.submit().unwrap();
        for (part, t) in outs.iter().enumerate() {
            assert_eq!(t.shape(), &[m, nb]);
            let got = e.read_f32(t).unwrap();
            let want: Vec<f64> = (0..m)
                .flat_map(|row| (0..nb).map(move |c| (row, c)))
                .map(|(row, c)| full[row * n + part * nb + c])
                .collect();
            let label = format!("linear_split part {part} cfg={cfg:?}");
            assert_close(
                &label,
                r.seed,
                &got,
                &want,
                2e-6 * (k as f64).sqrt() * 4.0,
                1e-5,
                NMSE_MATMUL,
            );
        }
    }
    // Refused: a residual with a split, and columns that do not divide.
    let res = e.upload_f32(&[m, n], &vec![0.0; m * n]).unwrap();
    let mut rec = e.recorder();
    let with_res = ops::LinearEpilogue {
        residual: Some(&res),
        ..Default::default()
    };
    for (what, epi, parts) in [
        ("residual", with_res, 3),
        ("45 columns in 4 parts", ops::LinearEpilogue::default(), 4),
        ("0 parts", ops::LinearEpilogue::default(), 0),
    ] {
        let err = ops::linear_split(&xt, &wt, epi, parts)
            .record(&mut rec)
            .expect_err(what);
        assert!(
            matches!(
                err,
                webjit_engine::Error::InvalidArgument { op: "linear", .. }
            ),
            "{what}: {err:?}"
        );
    }
    assert_eq!(rec.stats.dispatches, 0);
}

/// f64 LayerNorm of each row of x [m, k] (population variance).
fn layer_norm_ref(x: &[f32], m: usize, k: usize, g: &[f32], b: &[f32], eps: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(m * k);
    for row in x.chunks(k).take(m) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / k as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / k as f64;
        let rs = 1.0 / (var + eps).sqrt();
        out.extend(
            row.iter()
                .enumerate()
                .map(|(i, &v)| (v as f64 - mean) * rs * g[i] as f64 + b[i] as f64),
        );
    }
    out
}

/// `ops::linear_norm`: LayerNorm of x inside the matmul's dispatch, on every config of the
/// space for an unaligned shape (scalar loads) and an aligned one (vec4 loads), with a split
/// output, bias and GELU; the normalized x it also returns; a residual on the default config;
/// rows with a mean far from zero (the statistics are shifted); and its refusals.
#[test]
fn linear_norm_every_config_matches_oracle() {
    let e = engine();
    let mut r = Rand::new(58);
    let eps = 1e-5f32;
    let mut runs = 0;
    for &(m, n, k, offset) in &[(19usize, 45usize, 37usize, 0.0f32), (13, 48, 64, 6.0)] {
        // Rows of different scales around `offset`.
        let x: Vec<f32> = r
            .vec(m * k, -1.0, 1.0)
            .iter()
            .enumerate()
            .map(|(i, &v)| offset + v * (1.0 + (i / k) as f32 * 0.3))
            .collect();
        let w = r.vec(n * k, -1.0, 1.0);
        let bias = r.vec(n, -1.0, 1.0);
        let g = r.vec(k, 0.5, 1.5);
        let be = r.vec(k, -0.5, 0.5);
        let xt = e.upload_f32(&[m, k], &x).unwrap();
        let wt = e.upload_f32(&[n, k], &w).unwrap();
        let bt = e.upload_f32(&[n], &bias).unwrap();
        let (gt, bet) = (
            e.upload_f32(&[k], &g).unwrap(),
            e.upload_f32(&[k], &be).unwrap(),
        );
        let xn = layer_norm_ref(&x, m, k, &g, &be, eps as f64);
        let prod: Vec<f64> = (0..m * n)
            .map(|i| {
                let (row, col) = (i / n, i % n);
                (0..k)
                    .map(|j| xn[row * k + j] * w[col * k + j] as f64)
                    .sum::<f64>()
                    + bias[col] as f64
            })
            .collect();
        let gelu = |y: f64| 0.5 * y * (1.0 + libm::erf(y / std::f64::consts::SQRT_2));
        let norm = ops::LayerNormIn {
            gamma: &gt,
            beta: &bet,
            eps,
        };
        let atol = 2e-6 * (k as f64).sqrt() * 4.0;
        // Split in 3, bias, GELU: every config.
        let epi = ops::LinearEpilogue {
            bias: Some(&bt),
            gelu: true,
            residual: None,
        };
        let mut spec = ops::matmul(&xt, &wt, true).spec().unwrap();
        spec.epilogue = webjit_engine::jit::kernels::matmul::Epilogue {
            bias: true,
            gelu: true,
            residual: false,
            split: 3,
            norm: true,
        };
        let mut configs = vec![None];
        configs.extend(spec.space(e.profile()).into_iter().map(Some));
        assert!(configs.len() > 24, "space too small: {}", configs.len());
        let nb = n / 3;
        for cfg in configs {
            let mut rec = e.recorder();
            let (outs, xnt) = ops::linear_norm(&xt, &wt, norm, epi, 3)
                .config_opt(cfg.clone())
                .record(&mut rec)
                .unwrap();
            assert_eq!(
                rec.stats.dispatches, 1,
                "the LayerNorm must not add dispatches"
            );
            rec.submit().unwrap();
            assert_eq!(xnt.shape(), &[m, k]);
            let label = format!("linear_norm m{m} n{n} k{k} normalized x cfg={cfg:?}");
            assert_close(
                &label,
                r.seed,
                &e.read_f32(&xnt).unwrap(),
                &xn,
                2e-5,
                1e-5,
                1e-9,
            );
            for (part, t) in outs.iter().enumerate() {
                let want: Vec<f64> = (0..m * nb)
                    .map(|i| gelu(prod[(i / nb) * n + part * nb + i % nb]))
                    .collect();
                let label = format!("linear_norm m{m} n{n} k{k} part {part} cfg={cfg:?}");
                let got = e.read_f32(t).unwrap();
                assert_close(&label, r.seed, &got, &want, atol, 1e-5, NMSE_MATMUL);
            }
            runs += 1;
        }
        // A residual, no split, default config.
        let res = r.vec(m * n, -1.0, 1.0);
        let rt = e.upload_f32(&[m, n], &res).unwrap();
        let mut rec = e.recorder();
        let epi = ops::LinearEpilogue {
            bias: Some(&bt),
            gelu: false,
            residual: Some(&rt),
        };
        let (outs, _) = ops::linear_norm(&xt, &wt, norm, epi, 1)
            .record(&mut rec)
            .unwrap();
        rec.submit().unwrap();
        let want: Vec<f64> = prod.iter().zip(&res).map(|(&p, &q)| p + q as f64).collect();
        let got = e.read_f32(&outs[0]).unwrap();
        assert_close(
            "linear_norm residual",
            r.seed,
            &got,
            &want,
            atol,
            1e-5,
            NMSE_MATMUL,
        );
    }
    assert!(runs > 48, "{runs} runs");

    // Refused: LayerNorm operands of the wrong length, a non-positive epsilon, a batched
    // weight.
    let x = e.upload_f32(&[4, 8], &[0.5; 32]).unwrap();
    let w = e.upload_f32(&[6, 8], &[0.25; 48]).unwrap();
    let g8 = e.upload_f32(&[8], &[1.0; 8]).unwrap();
    let g7 = e.upload_f32(&[7], &[1.0; 7]).unwrap();
    let mut rec = e.recorder();
    for (what, g, eps) in [("short gamma", &g7, 1e-5), ("zero epsilon", &g8, 0.0)] {
        let norm = ops::LayerNormIn {
            gamma: g,
            beta: &g8,
            eps,
        };
        let err = ops::linear_norm(&x, &w, norm, Default::default(), 1)
            .record(&mut rec)
            .expect_err(what);
        assert!(
            matches!(
                err,
                webjit_engine::Error::Shape { op: "linear", .. }
                    | webjit_engine::Error::InvalidArgument { op: "linear", .. }
            ),
            "{what}: {err:?}"
        );
    }
    assert_eq!(rec.stats.dispatches, 0);
}
