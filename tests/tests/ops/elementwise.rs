//! Elementwise ops against the f64 oracle, every op and config.

use super::*;

fn gated(a: &[f64], y: &[f32]) -> Vec<f64> {
    a.iter()
        .enumerate()
        .map(|(i, &v)| v * y[i % y.len()] as f64)
        .collect()
}

fn ew_oracle(op: EwOp, x: &[f32], y: &[f32], s: f32) -> Vec<f64> {
    match op {
        EwOp::Add => oracle::add(x, y),
        EwOp::Mul => oracle::mul(x, y),
        EwOp::Scale => oracle::scale(x, s),
        EwOp::GeluTanh => oracle::gelu_tanh(x),
        EwOp::GeluErf => oracle::gelu_erf(x),
        EwOp::Silu => oracle::silu(x),
        EwOp::GeluTanhMul => gated(&oracle::gelu_tanh(x), y),
        EwOp::SiluMul => gated(&oracle::silu(x), y),
        EwOp::Softcap => x
            .iter()
            .map(|&v| s as f64 * (v as f64 / s as f64).tanh())
            .collect(),
    }
}

const EW_OPS: [EwOp; 9] = [
    EwOp::Add,
    EwOp::Mul,
    EwOp::Scale,
    EwOp::GeluTanh,
    EwOp::GeluErf,
    EwOp::Silu,
    EwOp::GeluTanhMul,
    EwOp::SiluMul,
    EwOp::Softcap,
];

fn check_elementwise(
    e: &Engine,
    r: &mut Rand,
    op: EwOp,
    rows: usize,
    cols: usize,
    bcast: bool,
    all_configs: bool,
) {
    let n = rows * cols;
    let x = r.vec(n, -6.0, 6.0);
    let ylen = if bcast { cols } else { n };
    let y = r.vec(ylen, -2.0, 2.0);
    let s = 0.37f32;
    let xt = e.upload_f32(&[rows, cols], &x).unwrap();
    let y_shape = if bcast { vec![cols] } else { vec![rows, cols] };
    let yt = e.upload_f32(&y_shape, &y).unwrap();
    let want = ew_oracle(op, &x, &y, s);
    let spec = ElementwiseSpec {
        op,
        len: n as u64,
        b_len: ylen as u64,
    };
    let mut configs = vec![None];
    if all_configs {
        configs.extend(spec.space(e.profile()).into_iter().map(Some));
    }
    for cfg in configs {
        let label = format!("{} [{rows}x{cols}] bcast={bcast} cfg={cfg:?}", op.name());
        let yarg = op.is_binary().then_some(&yt);
        let got = run(e, |rec| {
            ops::elementwise(op, &xt, yarg, s)
                .config_opt(cfg.clone())
                .record(rec)
        });
        assert_close(&label, r.seed, &got, &want, 1e-6, 2e-6, NMSE_ELEMENTWISE);
    }
}

#[test]
fn elementwise_matches_oracle() {
    let e = engine();
    let mut r = Rand::new(11);
    for op in EW_OPS {
        for (rows, cols) in [
            (1, 1),
            (1, 2),
            (3, 7),
            (1, 64),
            (2, 255),
            (4, 256),
            (1, 257),
            (9, 640),
            (3, 4099),
        ] {
            check_elementwise(e, &mut r, op, rows, cols, false, false);
            if op.is_binary() {
                check_elementwise(e, &mut r, op, rows, cols, true, false);
            }
        }
        for _ in 0..3 {
            let (rows, cols) = (r.range(1, 9), r.range(1, 3000));
            check_elementwise(e, &mut r, op, rows, cols, op.is_binary(), false);
        }
        check_elementwise(e, &mut r, op, 5, 96, op.is_binary(), true);
        check_elementwise(e, &mut r, op, 3, 97, false, true);
    }
}

#[test]
fn elementwise_on_segmented_tensors() {
    let e = small_binding_engine();
    let mut r = Rand::new(12);
    for op in EW_OPS {
        // 300 x 100 f32 = 120 KB, split into segments of at most 64 KiB.
        check_elementwise(e, &mut r, op, 300, 100, false, false);
        if op.is_binary() {
            check_elementwise(e, &mut r, op, 300, 100, true, false);
        }
    }
    let t = e.upload_f32(&[300, 100], &r.vec(30000, -1.0, 1.0)).unwrap();
    assert!(t.segments().len() >= 2, "the test tensor must be segmented");
}
