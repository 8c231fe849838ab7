//! GPU side of the GGUF formats: repack -> GPU dequant is bit-exact against the CPU reference,
//! and the fused-dequant matvec matches an f64 matmul over the same dequantized weights.

use webjit_engine::ops::{qdequant, qmatvec};
use webjit_engine::{Engine, Error};
use webjit_jit::kernels::qmatvec::{Path, QMatvecConfig, Reduce};
use webjit_jit::quant::{self, GgmlType, QuantError};
use webjit_jit::KernelSpec;
use webjit_tests::quant_vectors::load;
use webjit_tests::{assert_close, engine, small_binding_engine, Rand};

/// NMSE bound for f32 accumulation over the same dequantized weights, against the f64 oracle on those weights.
const NMSE_Q_F32: f64 = 1e-9;
/// NMSE bound for the f16 paths (products in f16, sums in f32).
const NMSE_Q_F16: f64 = 1e-5;

/// The NMSE bound for a result of `outputs` elements. With f16 products a dot product's error
/// is bounded by ~2^-10 sum |x w| (checked per element), but its NMSE over very few outputs is
/// that error over the dot's own size, which cancellation makes arbitrary; the f16 bound is
/// checked on results of at least 16 elements.
fn nmse_bound(f16: bool, outputs: usize) -> f64 {
    match (f16, outputs >= 16) {
        (false, _) => NMSE_Q_F32,
        (true, true) => NMSE_Q_F16,
        (true, false) => f64::INFINITY,
    }
}

/// max over outputs of sum_k |x w| (scale of the rounding error of a dot product).
fn abs_dot_max(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> f64 {
    let mut best: f64 = 0.0;
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k)
                .map(|t| (x[i * k + t] as f64 * w[j * k + t] as f64).abs())
                .sum();
            best = best.max(s);
        }
    }
    best
}

fn gpu_dequant(e: &Engine, format: GgmlType, rows: usize, raw: &[u8]) -> Vec<f32> {
    let k = raw.len() / format.block_bytes() * format.block_elems() / rows;
    let w = e.upload_quantized(format, [rows, k], raw).unwrap();
    let mut rec = e.recorder();
    let out = qdequant(&w).record(&mut rec).unwrap();
    rec.submit().unwrap();
    e.read_f32(&out).unwrap()
}

#[test]
fn gpu_dequant_of_repacked_vectors_is_bit_exact() {
    let e = engine();
    let mut failures = Vec::new();
    for format in GgmlType::ALL {
        let v = load(format);
        let blocks = v.raw.len() / format.block_bytes();
        let rows = [4, 2, 1]
            .into_iter()
            .find(|r| blocks.is_multiple_of(*r))
            .unwrap();
        let got = gpu_dequant(e, format, rows, &v.raw);
        assert_eq!(got.len(), v.want.len());
        // MXFP4's E8M0 scales 0 and 1 are f32 subnormals, which a GPU may flush to zero
        // (WGSL allows it); their weights may then come back as zeros.
        let flushable =
            |i: usize| format == GgmlType::MXFP4 && v.raw[i / 32 * 17] < 2 && got[i] == 0.0;
        let bad: Vec<usize> = (0..got.len())
            .filter(|&i| got[i].to_bits() != v.want[i].to_bits() && !flushable(i))
            .collect();
        if let Some(&i) = bad.first() {
            failures.push(format!(
                "{}: {} of {} differ, first element {i}: got {:e} ({:#x}) want {:e} ({:#x})",
                format.name(),
                bad.len(),
                got.len(),
                got[i],
                got[i].to_bits(),
                v.want[i],
                v.want[i].to_bits()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// f64 oracle: y [m, n] = x [m, k] * w [n, k]^T.
fn oracle(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut y = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            y[i * n + j] = (0..k)
                .map(|t| x[i * k + t] as f64 * w[j * k + t] as f64)
                .sum();
        }
    }
    y
}

fn run_qmatvec(
    e: &Engine,
    format: GgmlType,
    m: usize,
    n: usize,
    k: usize,
    seed: u64,
    configs: &dyn Fn(&[QMatvecConfig]) -> Vec<QMatvecConfig>,
) -> usize {
    let blocks = n * k / format.block_elems();
    let raw = quant::synth_blocks(format, blocks, seed);
    let wf = quant::dequantize_vec(format, &raw).unwrap();
    let mut rnd = Rand::new(seed);
    let x = rnd.vec(m * k, -1.0, 1.0);
    let want = oracle(&x, &wf, m, n, k);
    let mag = abs_dot_max(&x, &wf, m, n, k);
    let w = e.upload_quantized(format, [n, k], &raw).unwrap();
    let xt = e.upload_f32(&[m, k], &x).unwrap();
    let spec = qmatvec(&xt, &w).spec().unwrap();
    // The int8 configs (approximate: 8-bit activations) are checked in quant_i8.rs.
    let space: Vec<QMatvecConfig> = spec
        .space(e.profile())
        .into_iter()
        .filter(|c| !(c.path == Path::Int8))
        .collect();
    let chosen = configs(&space);
    for cfg in &chosen {
        let mut rec = e.recorder();
        let y = qmatvec(&xt, &w)
            .config(cfg.clone())
            .record(&mut rec)
            .unwrap();
        rec.submit().unwrap();
        let got = e.read_f32(&y).unwrap();
        let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max);
        assert_close(
            &format!("{} m{m} n{n} k{k}", spec.key(cfg)),
            rnd.seed,
            &got,
            &want,
            if cfg.path == Path::F16 {
                4e-3 * mag
            } else {
                1e-5 * scale
            },
            if cfg.path == Path::F16 { 1e-2 } else { 1e-4 },
            nmse_bound(cfg.path == Path::F16, want.len()),
        );
    }
    chosen.len()
}

#[test]
fn qmatvec_every_config_on_q4_k() {
    let e = engine();
    let mut total = 0;
    // every config of the space, at two shapes (M = 1 and 5; N prime; K = 3 super-blocks)
    total += run_qmatvec(e, GgmlType::Q4K, 1, 37, 768, 11, &|s| s.to_vec());
    total += run_qmatvec(e, GgmlType::Q4K, 5, 13, 256, 12, &|s| s.to_vec());
    assert!(total >= 30, "only {total} configs ran");
}

#[test]
fn qmatvec_every_lane_config_on_q6_k() {
    // Q6_K's other configs are sampled below; its lane decoder (Path::Lanes, Q4_K and Q6_K
    // only) runs every config: N prime, K = 3 super-blocks, and N = 8 with K = 2048 (8 super-
    // blocks, so workgroups of 64 lanes walk two steps of the K loop).
    let e = engine();
    let lanes = |s: &[QMatvecConfig]| -> Vec<QMatvecConfig> {
        s.iter()
            .filter(|c| c.path == Path::Lanes)
            .cloned()
            .collect()
    };
    let mut total = 0;
    total += run_qmatvec(e, GgmlType::Q6K, 1, 37, 768, 13, &lanes);
    total += run_qmatvec(e, GgmlType::Q6K, 1, 8, 2048, 14, &lanes);
    total += run_qmatvec(e, GgmlType::Q4K, 1, 8, 2048, 15, &lanes);
    assert!(total >= 3 * 12, "only {total} lane configs ran");
}

/// The formats added for the low-bit work (issue 27): each runs every float config.
const LOW_BIT: [GgmlType; 12] = [
    GgmlType::IQ4NL,
    GgmlType::IQ4XS,
    GgmlType::TQ1_0,
    GgmlType::TQ2_0,
    GgmlType::MXFP4,
    GgmlType::IQ2XXS,
    GgmlType::IQ2XS,
    GgmlType::IQ2S,
    GgmlType::IQ3XXS,
    GgmlType::IQ3S,
    GgmlType::IQ1S,
    GgmlType::IQ1M,
];

#[test]
fn qmatvec_every_config_on_the_low_bit_formats() {
    let e = engine();
    for (i, format) in LOW_BIT.into_iter().enumerate() {
        // N prime; K = 2 super-blocks or 16 blocks of 32 (every element position of a block).
        let n = run_qmatvec(e, format, 3, 13, 512, 400 + i as u64, &|s| s.to_vec());
        assert!(n >= 30, "{}: only {n} configs ran", format.name());
    }
}

#[test]
fn qmatvec_all_formats_sampled_configs() {
    let e = engine();
    let sample = |s: &[QMatvecConfig]| -> Vec<QMatvecConfig> {
        // first, last and one subgroup config when the device has them
        let mut v = vec![s[0].clone(), s[s.len() - 1].clone()];
        if let Some(c) = s.iter().find(|c| c.reduce == Reduce::Subgroup && c.r == 4) {
            v.push(c.clone());
        }
        v
    };
    for (i, format) in GgmlType::ALL.into_iter().enumerate() {
        let k = 3 * format.block_elems().max(32) + if format.block_elems() == 1 { 4 } else { 0 };
        for (m, n) in [(1, 1), (8, 31), (3, 53)] {
            run_qmatvec(e, format, m, n, k, 100 + i as u64, &sample);
        }
    }
}

#[test]
fn segmented_weights_match_unsegmented() {
    let small = small_binding_engine();
    let big = engine();
    let low_bit = [
        (GgmlType::IQ4NL, 131, 1024),
        (GgmlType::IQ4XS, 131, 1024),
        (GgmlType::TQ1_0, 131, 2560),
        (GgmlType::TQ2_0, 131, 2048),
        (GgmlType::MXFP4, 131, 1024),
        // Codebook formats: K long enough for 2+ segments of 64 KiB.
        (GgmlType::IQ2XXS, 131, 2560),
        (GgmlType::IQ2XS, 131, 2048),
        (GgmlType::IQ2S, 131, 2048),
        (GgmlType::IQ3XXS, 131, 1536),
        (GgmlType::IQ3S, 131, 1536),
        (GgmlType::IQ1S, 131, 3072),
        (GgmlType::IQ1M, 131, 2560),
    ];
    let old = [(GgmlType::Q8_0, 131, 1024), (GgmlType::Q6K, 67, 1536)];
    for (format, n, k) in old.into_iter().chain(low_bit) {
        let raw = quant::synth_blocks(format, n * k / format.block_elems(), 7);
        let mut rnd = Rand::new(70);
        let x = rnd.vec(2 * k, -1.0, 1.0);
        let mut outs = Vec::new();
        for e in [small, big] {
            let w = e.upload_quantized(format, [n, k], &raw).unwrap();
            if std::ptr::eq(e, small) {
                assert!(w.segments().len() >= 2, "{:?} not segmented", w);
            }
            let xt = e.upload_f32(&[2, k], &x).unwrap();
            let spec = qmatvec(&xt, &w).spec().unwrap();
            // same config on both engines so results must be identical bit for bit
            let cfg = QMatvecConfig {
                wg: 64,
                path: Path::F32,
                r: 2,
                reduce: Reduce::Workgroup,
            };
            assert!(spec.space(e.profile()).contains(&cfg));
            let mut rec = e.recorder();
            let y = qmatvec(&xt, &w).config(cfg).record(&mut rec).unwrap();
            rec.submit().unwrap();
            outs.push(e.read_f32(&y).unwrap());
        }
        let want = oracle(&x, &quant::dequantize_vec(format, &raw).unwrap(), 2, n, k);
        assert_close("segmented", 70, &outs[0], &want, 1e-3, 1e-3, NMSE_Q_F32);
        assert!(
            outs[0]
                .iter()
                .zip(&outs[1])
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{}: segmented result differs from unsegmented",
            format.name()
        );
    }
}

/// The quantized embedding gather (`ops::qembedding`: rows of a repacked table times a
/// scale) gives the CPU reference's rows times the scale, bit for bit, for every format, and
/// across the segments of a table split over bindings.
#[test]
fn qembedding_gathers_every_format_exactly() {
    let check = |e: &Engine, format: GgmlType, n: usize, dim: usize, ids: &[u32]| {
        let raw = quant::synth_blocks(format, n * dim / format.block_elems(), 11);
        let rows = quant::dequantize_vec(format, &raw).unwrap();
        let table = e.upload_quantized(format, [n, dim], &raw).unwrap();
        let idt = e.upload_u32(&[ids.len()], ids).unwrap();
        let scale = 25.3f32;
        let mut rec = e.recorder();
        let out = webjit_engine::ops::qembedding(&table, &idt, scale)
            .record(&mut rec)
            .unwrap();
        rec.submit().unwrap();
        let got = e.read_f32(&out).unwrap();
        let want: Vec<f32> = ids
            .iter()
            .flat_map(|&i| rows[i as usize * dim..][..dim].iter().map(|v| v * scale))
            .collect();
        assert!(
            got.iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{}: gathered rows differ from the CPU reference",
            format.name()
        );
        table.segments().len()
    };
    let e = engine();
    for format in GgmlType::ALL {
        let dim = 2 * format.block_elems().max(32);
        check(e, format, 5, dim, &[3, 0, 4, 3]);
    }
    // Tables of 3 or more segments: rows from the first, a middle and the last one.
    for format in LOW_BIT {
        let (n, dim) = (1000, 1024);
        let segs = check(
            small_binding_engine(),
            format,
            n,
            dim,
            &[999, 0, 500, 7, 998],
        );
        assert!(segs >= 3, "{}: {segs} segments", format.name());
    }
}

#[test]
fn bad_sizes_are_typed_errors() {
    let e = engine();
    let raw = quant::synth_blocks(GgmlType::Q4K, 2, 1);
    let r = e.upload_quantized(GgmlType::Q4K, [2, 300], &raw);
    assert!(
        matches!(
            r,
            Err(Error::Quant(QuantError::RowNotBlockMultiple {
                k: 300,
                block: 256,
                ..
            }))
        ),
        "{r:?}"
    );
    let r = e.upload_quantized(GgmlType::Q4K, [3, 256], &raw);
    assert!(matches!(r, Err(Error::Shape { .. })), "{r:?}");
    let r = e.upload_quantized(GgmlType::Q4K, [usize::MAX / 2, 256], &raw);
    assert!(matches!(r, Err(Error::Shape { .. })), "{r:?}");
    let w = e.upload_quantized(GgmlType::Q4K, [2, 256], &raw).unwrap();
    let x = e.upload_f32(&[1, 128], &[0.5; 128]).unwrap();
    let mut rec = e.recorder();
    let r = qmatvec(&x, &w).record(&mut rec);
    assert!(matches!(r, Err(Error::Shape { .. })), "{r:?}");
    let x9 = e.upload_f32(&[9, 256], &[0.5; 9 * 256]).unwrap();
    let r = qmatvec(&x9, &w).record(&mut rec);
    assert!(matches!(r, Err(Error::Jit(_))), "{r:?}");
}

#[test]
fn streamed_row_chunks_equal_whole_upload() {
    // Rows written in chunks that straddle a segment boundary give the same weight.
    let e = small_binding_engine();
    let (format, n, k) = (GgmlType::Q6K, 67, 1536);
    let raw = quant::synth_blocks(format, n * k / format.block_elems(), 9);
    let whole = e.upload_quantized(format, [n, k], &raw).unwrap();
    let streamed = e.alloc_quantized(format, [n, k]).unwrap();
    assert!(streamed.segments().len() >= 2);
    let rb = format.row_bytes(k).unwrap();
    for (lo, hi) in [(0, 30), (30, 60), (60, n)] {
        e.write_quantized_rows(&streamed, lo, &raw[lo * rb..hi * rb])
            .unwrap();
    }
    let r = e.write_quantized_rows(&streamed, 60, &raw[..8 * rb]);
    assert!(matches!(r, Err(Error::Shape { .. })), "{r:?}");
    let r = e.write_quantized_rows(&streamed, 0, &raw[..rb + 1]);
    assert!(matches!(r, Err(Error::Shape { .. })), "{r:?}");
    let x = Rand::new(90).vec(k, -1.0, 1.0);
    let xt = e.upload_f32(&[1, k], &x).unwrap();
    let mut outs = Vec::new();
    for w in [&whole, &streamed] {
        let mut rec = e.recorder();
        let y = qmatvec(&xt, w).record(&mut rec).unwrap();
        rec.submit().unwrap();
        outs.push(e.read_f32(&y).unwrap());
    }
    assert!(outs[0].iter().all(|v| v.is_finite()));
    assert_eq!(
        outs[0].iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        outs[1].iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
}

/// lavapipe is a CPU adapter: the profile says so (wgpu's `DeviceType::Cpu`; browsers' fallback
/// adapter), and the barrier-heavy kernels default to their barrier-free configs there.
#[test]
fn cpu_adapters_get_barrier_free_defaults() {
    use webjit_jit::kernels::attention_decode::{DecodeSpec, KvDType};
    use webjit_jit::kernels::rowwise::{RowOp, RowwiseSpec};
    let e = engine();
    assert!(
        e.profile().cpu,
        "this suite runs on Mesa lavapipe, which wgpu reports as a CPU adapter: {:?}",
        e.profile().name
    );
    let raw = quant::synth_blocks(GgmlType::Q8_0, 1024 * 640 / 32, 3);
    let w = e
        .upload_quantized(GgmlType::Q8_0, [1024, 640], &raw)
        .unwrap();
    let x = e.upload_f32(&[1, 640], &vec![0.5; 640]).unwrap();
    let spec = qmatvec(&x, &w).spec().unwrap();
    let c = spec.default_config(e.profile());
    assert_eq!(
        (c.path, c.reduce, c.wg, c.r),
        (Path::Blocks, Reduce::None, 32, 2),
        "{c:?}"
    );
    // A vocabulary-sized output keeps the f32 path, 8 rows per invocation.
    let mut out = spec.clone();
    (out.n, out.rows) = (262144, 262144);
    let c = out.default_config(e.profile());
    assert_eq!(
        (c.path, c.reduce, c.wg, c.r),
        (Path::F32, Reduce::None, 32, 8),
        "{c:?}"
    );
    // A GPU profile keeps the reductions; the block path there only from K = 2048 on.
    let gpu = webjit_jit::DeviceProfile::discrete_like();
    assert_ne!(spec.default_config(&gpu).reduce, Reduce::None);
    assert_ne!(spec.default_config(&gpu).path, Path::Blocks);
    let mut wide = spec.clone();
    wide.k = 4096;
    assert_eq!(wide.default_config(&gpu).path, Path::Blocks);
    let dec = DecodeSpec {
        batch: 1,
        n_heads: 4,
        n_kv_heads: 1,
        head_dim: 256,
        kv_dtype: KvDType::F32,
        kv_len: 512,
    };
    let d = dec.default_config(e.profile());
    assert_eq!((d.wg, d.max_splits), (64, 4), "{d:?}");
    assert!(dec.default_config(&gpu).max_splits > 4);
    let norm = RowwiseSpec {
        op: RowOp::RmsNorm,
        rows: 1,
        cols: 640,
    };
    let n = norm.default_config(e.profile());
    assert_eq!((n.wg, n.vec), (32, 1), "{n:?}");
    assert_eq!(norm.default_config(&gpu).wg, 256);
}
