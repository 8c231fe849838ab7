//! GPU op tests against f64 oracles on random inputs (native, on the machine's adapter:
//! Mesa lavapipe where there is no GPU). Every config of each kernel's space is run on at
//! least one aligned and one unaligned shape.

use webjit_engine::jit::kernels::elementwise::{ElementwiseSpec, EwOp};
use webjit_engine::jit::kernels::embedding::EmbeddingSpec;
use webjit_engine::jit::kernels::rope::{RopeLayout, RopeSpec};
use webjit_engine::jit::kernels::rowwise::{RowOp, RowwiseSpec};
use webjit_engine::jit::KernelSpec;
use webjit_engine::{ops, Engine, Tensor};
use webjit_tests::{assert_close, engine, oracle, small_binding_engine, Rand, NMSE_ELEMENTWISE};

fn run<F: FnOnce(&mut webjit_engine::Recorder) -> webjit_engine::Result<Tensor>>(
    e: &Engine,
    f: F,
) -> Vec<f32> {
    let mut rec = e.recorder();
    let out = f(&mut rec).expect("op");
    rec.submit().expect("submit");
    e.read_f32(&out).expect("read")
}

/// `a[i] * y[i % y.len()]` for an f64 activation `a` (the gated ops).
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
    }
}

const EW_OPS: [EwOp; 8] = [
    EwOp::Add,
    EwOp::Mul,
    EwOp::Scale,
    EwOp::GeluTanh,
    EwOp::GeluErf,
    EwOp::Silu,
    EwOp::GeluTanhMul,
    EwOp::SiluMul,
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

#[test]
fn rope_matches_oracle() {
    let e = engine();
    let mut r = Rand::new(31);
    for layout in [RopeLayout::Neox, RopeLayout::Normal] {
        for &(tokens, heads, head_dim, rot) in &[
            (1, 1, 2, 2),
            (3, 4, 64, 64),
            (7, 8, 128, 128),
            (5, 3, 256, 256),
            (4, 2, 64, 32),
            (13, 1, 80, 80),
        ] {
            for base in [10_000.0, 1_000_000.0, 500.0] {
                let x = r.vec(tokens * heads * head_dim, -2.0, 2.0);
                let positions: Vec<u32> = (0..tokens).map(|_| r.range(0, 40_000) as u32).collect();
                let xt = e.upload_f32(&[tokens, heads, head_dim], &x).unwrap();
                let want = oracle::rope(
                    &x,
                    heads,
                    head_dim,
                    rot,
                    &positions,
                    base,
                    layout == RopeLayout::Neox,
                );
                let opts = ops::RopeOptions {
                    layout,
                    base,
                    rot_dims: Some(rot),
                };
                let spec = RopeSpec {
                    layout,
                    tokens: tokens as u64,
                    heads: heads as u64,
                    head_dim: head_dim as u64,
                    rot: rot as u64,
                };
                let mut configs = vec![None];
                configs.extend(spec.space(e.profile()).into_iter().map(Some));
                for cfg in configs {
                    let label = format!("rope {layout:?} t{tokens} h{heads} d{head_dim} rot{rot} base{base} {cfg:?}");
                    let got = run(e, |rec| {
                        ops::rope(&xt, &positions, &opts)
                            .config_opt(cfg.clone())
                            .record(rec)
                    });
                    assert_close(&label, r.seed, &got, &want, 1e-6, 1e-5, NMSE_ELEMENTWISE);
                }
            }
        }
    }
}

#[test]
fn embedding_gathers_from_every_segment() {
    let mut r = Rand::new(41);
    for (e, vocab, dim) in [
        (engine(), 1000, 64),
        (engine(), 37, 13),
        (small_binding_engine(), 1000, 64),
        (small_binding_engine(), 2001, 13),
    ] {
        let table = r.vec(vocab * dim, -1.0, 1.0);
        let tt = e.upload_f32(&[vocab, dim], &table).unwrap();
        let mut ids = r.ids(50, vocab as u32);
        ids.extend([0, vocab as u32 - 1]);
        let want = oracle::embedding(&table, dim, &ids, 1.5);
        let spec = EmbeddingSpec {
            n: ids.len() as u64,
            dim: dim as u64,
            add_rows: 0,
        };
        let mut configs = vec![None];
        configs.extend(spec.space(e.profile()).into_iter().map(Some));
        for cfg in configs {
            let got = run(e, |rec| {
                ops::embedding(&tt, &ids, 1.5)
                    .config_opt(cfg.clone())
                    .record(rec)
            });
            assert_close(
                &format!(
                    "embedding v{vocab} d{dim} segs {} {cfg:?}",
                    tt.segments().len()
                ),
                r.seed,
                &got,
                &want,
                0.0,
                1e-7,
                NMSE_ELEMENTWISE,
            );
        }
    }
    assert!(
        small_binding_engine()
            .upload_f32(&[1000, 64], &vec![1.0; 64000])
            .unwrap()
            .segments()
            .len()
            >= 3
    );
}

/// `ops::embedding_add`: the gather plus row `i % period` of a second table, on every config,
/// from one buffer and from a table split over segments; and its refusals.
#[test]
fn embedding_add_matches_oracle_on_every_config() {
    let mut r = Rand::new(42);
    for (e, vocab, dim) in [
        (engine(), 1000, 64),
        (engine(), 37, 13),
        (small_binding_engine(), 2001, 13),
    ] {
        let (rows, period) = (11usize, 7usize);
        let table = r.vec(vocab * dim, -1.0, 1.0);
        let add = r.vec(rows * dim, -1.0, 1.0);
        let tt = e.upload_f32(&[vocab, dim], &table).unwrap();
        let at = e.upload_f32(&[rows, dim], &add).unwrap();
        let mut ids = r.ids(40, vocab as u32);
        ids.extend([0, vocab as u32 - 1]);
        let want: Vec<f64> = oracle::embedding(&table, dim, &ids, 0.5)
            .iter()
            .enumerate()
            .map(|(i, &v)| v + add[((i / dim) % period) * dim + i % dim] as f64)
            .collect();
        let spec = EmbeddingSpec {
            n: ids.len() as u64,
            dim: dim as u64,
            add_rows: period as u64,
        };
        let mut configs = vec![None];
        configs.extend(spec.space(e.profile()).into_iter().map(Some));
        for cfg in configs {
            let got = run(e, |rec| {
                ops::embedding_add(&tt, &ids, 0.5, &at, period)
                    .config_opt(cfg.clone())
                    .record(rec)
            });
            let label = format!(
                "embedding_add v{vocab} d{dim} segs {} {cfg:?}",
                tt.segments().len()
            );
            assert_close(&label, r.seed, &got, &want, 1e-6, 1e-6, NMSE_ELEMENTWISE);
        }
    }
    let e = engine();
    let table = e.upload_f32(&[4, 3], &[1.0; 12]).unwrap();
    let add = e.upload_f32(&[2, 3], &[1.0; 6]).unwrap();
    let narrow = e.upload_f32(&[2, 2], &[1.0; 4]).unwrap();
    let mut rec = e.recorder();
    for (what, t, period) in [
        ("period past the added rows", &add, 3),
        ("period 0", &add, 0),
        ("added table of another width", &narrow, 2),
    ] {
        let err = ops::embedding_add(&table, &[1, 2], 1.0, t, period)
            .record(&mut rec)
            .expect_err(what);
        assert_eq!(err.code(), "SHAPE", "{what}: {err}");
    }
    let err = ops::embedding_add(&table, &[4], 1.0, &add, 2)
        .record(&mut rec)
        .unwrap_err();
    assert_eq!(err.code(), "INVALID_ARGUMENT", "{err}");
    assert_eq!(rec.stats.dispatches, 0);
}

#[test]
fn bad_arguments_are_typed_errors() {
    let e = engine();
    let x = e.upload_f32(&[2, 3], &[1.0; 6]).unwrap();
    let y = e.upload_f32(&[4], &[1.0; 4]).unwrap();
    let mut rec = e.recorder();
    let err = ops::add(&x, &y).record(&mut rec).unwrap_err();
    assert_eq!(err.code(), "SHAPE", "{err}");
    let err = ops::rms_norm(&x, &y, 1e-6, 0.0)
        .record(&mut rec)
        .unwrap_err();
    assert_eq!(err.code(), "SHAPE", "{err}");
    let table = e.upload_f32(&[4, 3], &[1.0; 12]).unwrap();
    let err = ops::embedding(&table, &[4], 1.0)
        .record(&mut rec)
        .unwrap_err();
    assert_eq!(err.code(), "INVALID_ARGUMENT", "{err}");
    let err = ops::matmul(&x, &x, false).record(&mut rec).unwrap_err();
    assert_eq!(err.code(), "SHAPE", "{err}");
    let err = ops::rope(
        &x,
        &[0, 1],
        &ops::RopeOptions {
            layout: RopeLayout::Neox,
            base: 1e4,
            rot_dims: None,
        },
    )
    .record(&mut rec)
    .unwrap_err();
    assert_eq!(err.code(), "SHAPE", "{err}");
    let err = e.upload_f32(&[2, 2], &[1.0; 3]).unwrap_err();
    assert_eq!(err.code(), "SHAPE", "{err}");
    let err = e
        .empty(&[usize::MAX, 4], webjit_engine::DType::F32)
        .unwrap_err();
    assert_eq!(err.code(), "SHAPE", "{err}");
    let err = e
        .empty(&[1 << 20, 1 << 20], webjit_engine::DType::F32)
        .unwrap_err();
    assert!(matches!(err.code(), "TOO_LARGE" | "OUT_OF_MEMORY"), "{err}");
    rec.submit().unwrap();
}

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

#[test]
fn reshaped_views_bind_every_element() {
    // A [8, 384] tensor viewed as [96, 32] must still bind all 8 * 384 elements.
    let e = engine();
    let mut r = Rand::new(81);
    let x = r.vec(8 * 384, -1.0, 1.0);
    let t = e.upload_f32(&[8, 384], &x).unwrap();
    let v = t.reshape(&[1, 8, 12, 32]).unwrap();
    assert_eq!(v.segment_bytes(0), t.bytes());
    let got = run(e, |rec| ops::scale(&v, 2.0).record(rec));
    assert_close(
        "scale of a reshaped view",
        r.seed,
        &got,
        &oracle::scale(&x, 2.0),
        0.0,
        1e-7,
        NMSE_ELEMENTWISE,
    );
    let seg = small_binding_engine()
        .upload_f32(&[300, 100], &r.vec(30000, -1.0, 1.0))
        .unwrap();
    assert!(
        seg.reshape(&[30000]).is_none(),
        "a segmented tensor cannot change its row length"
    );
    assert_eq!(
        seg.reshape(&[3, 100, 100]).unwrap().segments().len(),
        seg.segments().len()
    );
}

/// Readbacks share one kept mappable buffer (`Engine::submit_and_read`): reads of different
/// sizes in any order, one above the size that is kept, each return exactly their tensor.
#[test]
fn readbacks_of_different_sizes_return_their_own_values() {
    let e = engine();
    let mut r = Rand::new(58);
    let sizes = [100usize, 10, 2_000_000, 7, 100, 16_384, 1];
    let tensors: Vec<(Vec<f32>, _)> = sizes
        .iter()
        .map(|&n| {
            let v = r.vec(n, -1.0, 1.0);
            let t = e.upload_f32(&[n], &v).unwrap();
            (v, t)
        })
        .collect();
    for _ in 0..2 {
        for (want, t) in &tensors {
            assert_eq!(&e.read_f32(t).unwrap(), want, "{} floats", want.len());
        }
    }
}
