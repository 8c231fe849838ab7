//! Row ops (norms, softmax, L2) and the fused residual + pre-norm against the f64 oracle.

use super::*;

fn check_rowwise(e: &Engine, r: &mut Rand, op: RowOp, rows: usize, cols: usize, all_configs: bool) {
    let mag = if op == RowOp::Softmax { 20.0 } else { 3.0 };
    let x = r.vec(rows * cols, -mag, mag);
    let w = r.vec(cols, -1.5, 1.5);
    let b = r.vec(cols, -1.0, 1.0);
    let xt = e.upload_f32(&[rows, cols], &x).unwrap();
    let wt = e.upload_f32(&[cols], &w).unwrap();
    let bt = e.upload_f32(&[cols], &b).unwrap();
    let eps = 1e-6f32;
    let spec = RowwiseSpec {
        op,
        rows: rows as u64,
        cols: cols as u64,
    };
    let mut configs = vec![None];
    if all_configs {
        configs.extend(spec.space(e.profile()).into_iter().map(Some));
    }
    let res = r.vec(rows * cols, -2.0, 2.0);
    let rt = e.upload_f32(&[rows, cols], &res).unwrap();
    let offsets: &[f32] = if matches!(op, RowOp::RmsNorm | RowOp::RmsNormAdd) {
        &[0.0, 1.0]
    } else {
        &[0.0]
    };
    for cfg in configs {
        for &off in offsets {
            let (want, ins): (Vec<f64>, Vec<&Tensor>) = match op {
                RowOp::RmsNorm => (
                    oracle::rms_norm(&x, &w, cols, eps as f64, off as f64),
                    vec![&wt],
                ),
                RowOp::LayerNorm => (
                    oracle::layer_norm(&x, &w, &b, cols, eps as f64),
                    vec![&wt, &bt],
                ),
                RowOp::Softmax => (oracle::softmax(&x, cols), vec![]),
                RowOp::L2Normalize => (oracle::l2_normalize(&x, cols, eps as f64), vec![]),
                RowOp::RmsNormAdd => (
                    oracle::rms_norm(&x, &w, cols, eps as f64, off as f64)
                        .iter()
                        .zip(&res)
                        .map(|(a, b)| a + *b as f64)
                        .collect(),
                    vec![&wt, &rt],
                ),
                RowOp::RmsNormAddNorm | RowOp::AddNorm => {
                    unreachable!("two-output ops are checked by check_add_norm")
                }
            };
            let label = format!("{} [{rows}x{cols}] w_offset={off} cfg={cfg:?}", op.name());
            let got = run(e, |rec| {
                ops::rowwise(op, &xt, &ins, eps, off)
                    .config_opt(cfg.clone())
                    .record(rec)
            });
            assert_close(&label, r.seed, &got, &want, 1e-6, 1e-5, NMSE_ELEMENTWISE);
        }
    }
}

#[test]
fn rowwise_ops_match_oracle() {
    let e = engine();
    let mut r = Rand::new(21);
    for op in [
        RowOp::RmsNorm,
        RowOp::LayerNorm,
        RowOp::Softmax,
        RowOp::L2Normalize,
        RowOp::RmsNormAdd,
    ] {
        for (rows, cols) in [
            (1, 1),
            (1, 7),
            (3, 64),
            (5, 255),
            (2, 256),
            (2, 257),
            (4, 640),
            (3, 1031),
            (1, 5003),
            (7, 32768),
        ] {
            check_rowwise(e, &mut r, op, rows, cols, false);
        }
        check_rowwise(e, &mut r, op, 6, 384, true);
        check_rowwise(e, &mut r, op, 3, 131, true);
    }
}

#[test]
fn rowwise_on_segmented_tensors() {
    let e = small_binding_engine();
    let mut r = Rand::new(22);
    for op in [
        RowOp::RmsNorm,
        RowOp::LayerNorm,
        RowOp::Softmax,
        RowOp::RmsNormAdd,
    ] {
        check_rowwise(e, &mut r, op, 97, 384, false);
    }
}

/// `ops::add_norm` (with and without the post-norm) against the f64 composition of its parts:
/// out = res + [rms_norm(x) * w | x], next = rms_norm(out) * w2.
fn check_add_norm(
    e: &Engine,
    r: &mut Rand,
    post: bool,
    rows: usize,
    cols: usize,
    all_configs: bool,
) {
    let x = r.vec(rows * cols, -3.0, 3.0);
    let res = r.vec(rows * cols, -2.0, 2.0);
    let w = r.vec(cols, -1.5, 1.5);
    let w2 = r.vec(cols, -1.5, 1.5);
    let (xt, rt) = (
        e.upload_f32(&[rows, cols], &x).unwrap(),
        e.upload_f32(&[rows, cols], &res).unwrap(),
    );
    let (wt, w2t) = (
        e.upload_f32(&[cols], &w).unwrap(),
        e.upload_f32(&[cols], &w2).unwrap(),
    );
    let eps = 1e-6f32;
    let op = if post {
        RowOp::RmsNormAddNorm
    } else {
        RowOp::AddNorm
    };
    let spec = RowwiseSpec {
        op,
        rows: rows as u64,
        cols: cols as u64,
    };
    let mut configs = vec![None];
    if all_configs {
        configs.extend(spec.space(e.profile()).into_iter().map(Some));
    }
    for cfg in configs {
        for off in [0.0f32, 1.0] {
            let y: Vec<f64> = if post {
                oracle::rms_norm(&x, &w, cols, eps as f64, off as f64)
            } else {
                x.iter().map(|&v| v as f64).collect()
            };
            let out: Vec<f64> = y.iter().zip(&res).map(|(a, b)| a + *b as f64).collect();
            // The kernel normalizes its own f32 `out`: feed the oracle that rounding.
            let out32: Vec<f32> = out.iter().map(|&v| v as f32).collect();
            let next = oracle::rms_norm(&out32, &w2, cols, eps as f64, off as f64);
            let label = format!("{} [{rows}x{cols}] w_offset={off} cfg={cfg:?}", op.name());
            let mut rec = e.recorder();
            let (o, n) = ops::add_norm(&xt, post.then_some(&wt), &rt, &w2t, eps, off)
                .config_opt(cfg.clone())
                .record(&mut rec)
                .unwrap();
            rec.submit().unwrap();
            let (go, gn) = (e.read_f32(&o).unwrap(), e.read_f32(&n).unwrap());
            assert_close(
                &format!("{label} out"),
                r.seed,
                &go,
                &out,
                1e-6,
                1e-5,
                NMSE_ELEMENTWISE,
            );
            assert_close(
                &format!("{label} next"),
                r.seed,
                &gn,
                &next,
                1e-6,
                1e-5,
                NMSE_ELEMENTWISE,
            );
        }
    }
}

#[test]
fn add_norm_matches_oracle() {
    let e = engine();
    let mut r = Rand::new(23);
    for post in [true, false] {
        for (rows, cols) in [
            (1, 1),
            (1, 7),
            (2, 256),
            (2, 257),
            (4, 640),
            (3, 1031),
            (7, 32768),
        ] {
            check_add_norm(e, &mut r, post, rows, cols, false);
        }
        check_add_norm(e, &mut r, post, 1, 640, true);
        check_add_norm(e, &mut r, post, 3, 131, true);
        // Segmented rows (64 KiB bindings).
        check_add_norm(small_binding_engine(), &mut r, post, 97, 384, false);
    }
    // The one-output entry point refuses the two-output ops with a clear error.
    let x = e.upload_f32(&[1, 4], &[1.0; 4]).unwrap();
    let mut rec = e.recorder();
    let err = ops::rowwise(RowOp::AddNorm, &x, &[&x, &x], 1e-6, 0.0).record(&mut rec);
    assert!(err.is_err());
}
