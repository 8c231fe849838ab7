//! Mean pooling (with its LayerNorm and L2 forms) against the f64 oracle.

use super::*;

#[test]
fn mean_pool_and_l2_normalize_match_oracle() {
    use webjit_engine::jit::kernels::pool::PoolSpec;
    let e = engine();
    let mut r = Rand::new(71);
    for &(batch, seq, dim) in &[
        (1, 1, 1),
        (3, 7, 384),
        (2, 13, 13),
        (5, 128, 384),
        (1, 257, 64),
    ] {
        let x = r.vec(batch * seq * dim, -2.0, 2.0);
        let lens: Vec<u32> = (0..batch).map(|_| r.range(1, seq + 1) as u32).collect();
        let xt = e.upload_f32(&[batch, seq, dim], &x).unwrap();
        let want = oracle::mean_pool(&x, seq, dim, &lens);
        let spec = PoolSpec {
            batch: batch as u64,
            seq: seq as u64,
            dim: dim as u64,
            norm: false,
            l2: false,
        };
        let mut configs = vec![None];
        configs.extend(spec.space(e.profile()).into_iter().map(Some));
        for cfg in configs {
            let got = run(e, |rec| {
                ops::mean_pool(&xt, &lens, Default::default())
                    .config_opt(cfg.clone())
                    .record(rec)
            });
            assert_close(
                &format!("mean_pool b{batch} s{seq} d{dim} {cfg:?}"),
                r.seed,
                &got,
                &want,
                1e-6,
                1e-5,
                NMSE_ELEMENTWISE,
            );
        }
        let rows = batch * seq;
        let want = oracle::l2_normalize(&x, dim, 1e-12);
        let spec = RowwiseSpec {
            op: RowOp::L2Normalize,
            rows: rows as u64,
            cols: dim as u64,
        };
        let mut configs = vec![None];
        configs.extend(spec.space(e.profile()).into_iter().map(Some));
        for cfg in configs {
            let xt2 = xt.reshape(&[rows, dim]).unwrap();
            let got = run(e, |rec| {
                ops::rowwise(RowOp::L2Normalize, &xt2, &[], 1e-12, 0.0)
                    .config_opt(cfg.clone())
                    .record(rec)
            });
            assert_close(
                &format!("l2norm {rows}x{dim} {cfg:?}"),
                r.seed,
                &got,
                &want,
                1e-6,
                1e-5,
                NMSE_ELEMENTWISE,
            );
        }
    }
    let x = e.upload_f32(&[2, 3, 4], &[1.0; 24]).unwrap();
    let mut rec = e.recorder();
    assert_eq!(
        ops::mean_pool(&x, &[0, 1], Default::default())
            .record(&mut rec)
            .unwrap_err()
            .code(),
        "INVALID_ARGUMENT"
    );
    assert_eq!(
        ops::mean_pool(&x, &[1], Default::default())
            .record(&mut rec)
            .unwrap_err()
            .code(),
        "SHAPE"
    );
}

/// `ops::mean_pool_opts`: LayerNorm of each row, then the mean over real tokens, then L2
/// (each alone and together), on every config, against f64; rows with a large mean; more
/// tokens than invocations; and its refusals.
#[test]
fn mean_pool_with_layer_norm_and_l2_matches_oracle() {
    use webjit_engine::jit::kernels::pool::PoolSpec;
    let e = engine();
    let mut r = Rand::new(72);
    let eps = 1e-5f32;
    let mut runs = 0;
    for &(batch, seq, dim, offset) in &[
        (3usize, 7usize, 384usize, 0.0f32),
        (2, 13, 13, 4.0),
        (2, 300, 64, 0.0),
    ] {
        let x: Vec<f32> = r
            .vec(batch * seq * dim, -2.0, 2.0)
            .iter()
            .map(|&v| v + offset)
            .collect();
        let g = r.vec(dim, 0.5, 1.5);
        let be = r.vec(dim, -0.5, 0.5);
        let mut lens: Vec<u32> = (0..batch).map(|_| r.range(1, seq + 1) as u32).collect();
        lens[0] = seq as u32;
        let xt = e.upload_f32(&[batch, seq, dim], &x).unwrap();
        let (gt, bet) = (
            e.upload_f32(&[dim], &g).unwrap(),
            e.upload_f32(&[dim], &be).unwrap(),
        );
        for (norm, l2) in [(true, true), (true, false), (false, true)] {
            // f64 reference: LayerNorm rows, mean over real tokens, L2.
            let mut want = Vec::new();
            for (bi, &len) in lens.iter().enumerate() {
                let mut acc = vec![0.0f64; dim];
                for t in 0..len as usize {
                    let row = &x[(bi * seq + t) * dim..][..dim];
                    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / dim as f64;
                    let var =
                        row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / dim as f64;
                    for (d, &v) in row.iter().enumerate() {
                        acc[d] += if norm {
                            (v as f64 - mean) / (var + eps as f64).sqrt() * g[d] as f64
                                + be[d] as f64
                        } else {
                            v as f64
                        };
                    }
                }
                acc.iter_mut().for_each(|a| *a /= len as f64);
                if l2 {
                    let n = acc.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
                    acc.iter_mut().for_each(|a| *a /= n);
                }
                want.extend(acc);
            }
            let opts = ops::PoolOptions {
                norm: norm.then_some(ops::LayerNormIn {
                    gamma: &gt,
                    beta: &bet,
                    eps,
                }),
                l2_eps: l2.then_some(1e-12),
            };
            let spec = PoolSpec {
                batch: batch as u64,
                seq: seq as u64,
                dim: dim as u64,
                norm,
                l2,
            };
            let mut configs = vec![None];
            configs.extend(spec.space(e.profile()).into_iter().map(Some));
            assert!(configs.len() > 4, "space too small: {}", configs.len());
            for cfg in configs {
                let got = run(e, |rec| {
                    ops::mean_pool(&xt, &lens, opts)
                        .config_opt(cfg.clone())
                        .record(rec)
                });
                let label = format!("pool b{batch} s{seq} d{dim} norm={norm} l2={l2} {cfg:?}");
                assert_close(&label, r.seed, &got, &want, 2e-6, 1e-5, NMSE_ELEMENTWISE);
                runs += 1;
            }
        }
    }
    assert!(runs > 30, "{runs} runs");
    let x = e.upload_f32(&[2, 3, 4], &[1.0; 24]).unwrap();
    let g3 = e.upload_f32(&[3], &[1.0; 3]).unwrap();
    let g4 = e.upload_f32(&[4], &[1.0; 4]).unwrap();
    let mut rec = e.recorder();
    let bad = |g, eps, l2_eps| ops::PoolOptions {
        norm: Some(ops::LayerNormIn {
            gamma: g,
            beta: &g4,
            eps,
        }),
        l2_eps,
    };
    for (what, opts, code) in [
        ("short gamma", bad(&g3, 1e-5, None), "SHAPE"),
        ("zero epsilon", bad(&g4, 0.0, None), "INVALID_ARGUMENT"),
        (
            "negative L2 epsilon",
            bad(&g4, 1e-5, Some(-1.0)),
            "INVALID_ARGUMENT",
        ),
    ] {
        let err = ops::mean_pool(&x, &[3, 1], opts)
            .record(&mut rec)
            .expect_err(what);
        assert_eq!(err.code(), code, "{what}: {err}");
    }
    assert_eq!(rec.stats.dispatches, 0);
}
