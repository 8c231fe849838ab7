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

mod elementwise;
mod gather;
mod pool;
mod rowwise;

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
