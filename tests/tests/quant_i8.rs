//! The int8 dot-product path of the decode matvec (`Path::Int8` configs of the plain matvec):
//! the activation quantization is a valid
//! 8-bit rounding, and every config of every format matches an f64 product of the same
//! dequantized weights with the activations as quantized (read back from the GPU), within the
//! f32 bound; against the unquantized activations it stays within the rounding's bound.

use webjit_engine::ops::{qmatvec, quantize_q8};
use webjit_engine::{Engine, Error};
use webjit_jit::kernels::qmatvec::{Path, QMatvecConfig, Reduce};
use webjit_jit::quant::{self, GgmlType};
use webjit_jit::KernelSpec;
use webjit_tests::{assert_close, engine, small_binding_engine, Rand};

/// NMSE bound for f32 accumulation over the same (dequantized) operands, as for the f32 path.
const NMSE_Q_F32: f64 = 1e-9;

const FORMATS: [GgmlType; 17] = [
    GgmlType::Q4_0,
    GgmlType::Q5_0,
    GgmlType::Q8_0,
    GgmlType::Q4K,
    GgmlType::Q6K,
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

/// The activations as the GPU quantized them, dequantized: codes * d per block of 32. Also
/// checks that the quantization is valid: d = max |x| / 127 per block (to f32 rounding), each
/// code within half a step of x / d, and the stored d * sum(codes) consistent.
fn dequantized_x(what: &str, x: &[f32], codes: &[u32], scales: &[f32]) -> Vec<f32> {
    let n = x.len();
    assert_eq!(codes.len() * 4, n, "{what}: code words");
    assert_eq!(scales.len() * 16, n, "{what}: scales");
    let mut out = vec![0.0f32; n];
    for b in 0..n / 32 {
        let (d, ds) = (scales[2 * b], scales[2 * b + 1]);
        let amax = x[32 * b..32 * b + 32]
            .iter()
            .fold(0.0f32, |a, v| a.max(v.abs()));
        assert!(
            ((d as f64) - amax as f64 / 127.0).abs() <= 1e-6 * amax as f64,
            "{what}: block {b}: d = {d}, max |x| / 127 = {}",
            amax / 127.0
        );
        let mut sum = 0i64;
        for i in 0..32 {
            let word = codes[(32 * b + i) / 4];
            let q = ((word >> (8 * (i % 4))) & 0xff) as u8 as i8;
            let v = x[32 * b + i];
            assert!(
                (q as f64 * d as f64 - v as f64).abs() <= 0.5 * d as f64 * (1.0 + 1e-5) + 1e-30,
                "{what}: element {}: code {q} * d {d} is not the rounding of {v}",
                32 * b + i
            );
            sum += q as i64;
            out[32 * b + i] = q as f32 * d;
        }
        assert!(
            ((ds as f64) - d as f64 * sum as f64).abs() <= 1e-6 * (d as f64 * 32.0 * 127.0),
            "{what}: block {b}: stored d * sum {ds}, want {}",
            d as f64 * sum as f64
        );
    }
    out
}

/// y [m, n] = x [m, k] w [n, k]^T in f64.
fn oracle(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f64> {
    webjit_tests::oracle::matmul(x, w, 1, m, n, k, true, true)
}

/// Runs the configs `pick` selects from the space of (format, m, n, k); returns how many ran.
#[allow(clippy::too_many_arguments)]
fn run(
    e: &Engine,
    format: GgmlType,
    m: usize,
    n: usize,
    k: usize,
    seed: u64,
    pick: &dyn Fn(&[QMatvecConfig]) -> Vec<QMatvecConfig>,
) -> usize {
    let raw = quant::synth_blocks(format, n * k / format.block_elems(), seed);
    let wf = quant::dequantize_vec(format, &raw).unwrap();
    let mut rnd = Rand::new(seed);
    let mut x = rnd.vec(m * k, -1.0, 1.0);
    // One block of zeros (d = 0) and one with a single large value.
    x[..32].fill(0.0);
    if k >= 96 {
        x[64] = 40.0;
    }
    let w = e.upload_quantized(format, [n, k], &raw).unwrap();
    let xt = e.upload_f32(&[m, k], &x).unwrap();
    let spec = qmatvec(&xt, &w).spec().unwrap();
    let what = format!("{} m{m} n{n} k{k}", format.name());

    let mut rec = e.recorder();
    let (xq, xs) = quantize_q8(&xt).record(&mut rec).unwrap();
    rec.submit().unwrap();
    let xd = dequantized_x(
        &what,
        &x,
        &e.read_u32(&xq).unwrap(),
        &e.read_f32(&xs).unwrap(),
    );
    let want = oracle(&xd, &wf, m, n, k);
    let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max);

    let int8: Vec<QMatvecConfig> = spec
        .space(e.profile())
        .into_iter()
        .filter(|c| c.path == Path::Int8)
        .collect();
    let chosen = pick(&int8);
    for cfg in &chosen {
        // The op quantizes x as `quantize_q8` did above (the same kernel, deterministic).
        let mut rec = e.recorder();
        let y = qmatvec(&xt, &w)
            .config(cfg.clone())
            .record(&mut rec)
            .unwrap();
        rec.submit().unwrap();
        let got = e.read_f32(&y).unwrap();
        assert_close(
            &format!("{} m{m} n{n} k{k}", spec.key(cfg)),
            rnd.seed,
            &got,
            &want,
            1e-5 * scale,
            1e-4,
            NMSE_Q_F32,
        );
    }

    // The whole op (quantize + matvec) against the unquantized activations: each product's x
    // is off by at most half a step (max |x| / 254 per block).
    let mut rec = e.recorder();
    let y = qmatvec(&xt, &w)
        .config(chosen[0].clone())
        .record(&mut rec)
        .unwrap();
    rec.submit().unwrap();
    let got = e.read_f32(&y).unwrap();
    let exact = oracle(&x, &wf, m, n, k);
    for i in 0..m {
        for j in 0..n {
            let bound: f64 = (0..k / 32)
                .map(|b| {
                    let amax = x[i * k + 32 * b..i * k + 32 * b + 32]
                        .iter()
                        .fold(0.0f32, |a, v| a.max(v.abs())) as f64;
                    let wsum: f64 = (0..32).map(|t| wf[j * k + 32 * b + t].abs() as f64).sum();
                    amax / 254.0 * wsum
                })
                .sum();
            let err = (got[i * n + j] as f64 - exact[i * n + j]).abs();
            assert!(
                err <= bound * 1.001 + 1e-5 * scale,
                "{what}: y[{i}, {j}] = {} vs unquantized {}: error {err:e} over the rounding bound {bound:e}",
                got[i * n + j],
                exact[i * n + j]
            );
        }
    }
    chosen.len()
}

#[test]
fn qmatvec_i8_every_config_every_format() {
    let e = engine();
    let mut total = 0;
    for (i, format) in FORMATS.into_iter().enumerate() {
        // K = 3 super-blocks (or 24 blocks), N prime; M = 1 with every config, M = 3 sampled.
        let k = 768;
        let ran = run(e, format, 1, 37, k, 40 + i as u64, &|s| s.to_vec());
        assert!(ran >= 8, "{}: only {ran} configs", format.name());
        total += ran;
        total += run(e, format, 3, 11, k, 50 + i as u64, &|s| {
            s.iter().step_by(3).cloned().collect()
        });
    }
    eprintln!("qmatvec_i8: {total} config runs");
}

#[test]
fn qmatvec_i8_gemma_shapes_and_long_k() {
    let e = engine();
    // Gemma 3 270M's shapes (K = 640 and 2048) and a long row.
    for (format, n, k) in [
        (GgmlType::Q5_0, 65, 640),
        (GgmlType::Q8_0, 33, 640),
        (GgmlType::Q4K, 19, 2048),
        (GgmlType::Q6K, 21, 2048),
        (GgmlType::Q4K, 5, 8192),
    ] {
        run(e, format, 1, n, k, 60, &|s| {
            s.iter()
                .filter(|c| c.r == 1 || c.r == 4)
                .take(3)
                .cloned()
                .collect()
        });
    }
}

#[test]
fn qmatvec_i8_segmented_matches_unsegmented() {
    let small = small_binding_engine();
    let big = engine();
    for (format, n, k) in [
        (GgmlType::Q8_0, 131, 1024),
        (GgmlType::Q6K, 67, 1536),
        (GgmlType::IQ4NL, 131, 1024),
        (GgmlType::IQ4XS, 131, 1024),
        (GgmlType::TQ1_0, 131, 2560),
        (GgmlType::TQ2_0, 131, 2048),
        (GgmlType::MXFP4, 131, 1024),
        (GgmlType::IQ2XXS, 131, 2560),
        (GgmlType::IQ2XS, 131, 2048),
        (GgmlType::IQ2S, 131, 2048),
        (GgmlType::IQ3XXS, 131, 1536),
        (GgmlType::IQ3S, 131, 1536),
        (GgmlType::IQ1S, 131, 3072),
        (GgmlType::IQ1M, 131, 2560),
    ] {
        let raw = quant::synth_blocks(format, n * k / format.block_elems(), 7);
        let x = Rand::new(71).vec(2 * k, -1.0, 1.0);
        let mut outs = Vec::new();
        for e in [small, big] {
            let w = e.upload_quantized(format, [n, k], &raw).unwrap();
            if std::ptr::eq(e, small) {
                assert!(w.segments().len() >= 2, "{w:?} not segmented");
            }
            let xt = e.upload_f32(&[2, k], &x).unwrap();
            let cfg = QMatvecConfig {
                path: Path::Int8,
                wg: 64,
                r: 2,
                reduce: Reduce::Workgroup,
            };
            let mut rec = e.recorder();
            let y = qmatvec(&xt, &w).config(cfg).record(&mut rec).unwrap();
            rec.submit().unwrap();
            outs.push(e.read_f32(&y).unwrap());
        }
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&outs[0]),
            bits(&outs[1]),
            "{}: segmented and whole differ",
            format.name()
        );
    }
}

#[test]
fn qmatvec_i8_rejects_unsupported_formats_and_shapes() {
    let e = engine();
    let int8 = QMatvecConfig {
        path: Path::Int8,
        wg: 64,
        r: 1,
        reduce: Reduce::Workgroup,
    };
    let raw = quant::synth_blocks(GgmlType::Q5K, 4, 1);
    let w = e.upload_quantized(GgmlType::Q5K, [4, 256], &raw).unwrap();
    let x = e.upload_f32(&[1, 256], &[0.5; 256]).unwrap();
    let mut rec = e.recorder();
    match qmatvec(&x, &w).config(int8.clone()).record(&mut rec) {
        Err(Error::Jit(err)) => assert!(err.to_string().contains("q5_k"), "{err}"),
        other => panic!("q5_k: expected a kernel error, got {other:?}"),
    }
    let w = e
        .upload_quantized(
            GgmlType::Q8_0,
            [4, 64],
            &quant::synth_blocks(GgmlType::Q8_0, 8, 2),
        )
        .unwrap();
    let x = e.upload_f32(&[1, 32], &[0.5; 32]).unwrap();
    assert!(matches!(
        qmatvec(&x, &w).config(int8).record(&mut e.recorder()),
        Err(Error::Shape { .. })
    ));
    // Every format the f32 path takes is either on the int8 path or has no int8 configs.
    for format in GgmlType::ALL {
        let w = e
            .upload_quantized(
                format,
                [2, 256],
                &quant::synth_blocks(format, 512 / format.block_elems(), 3),
            )
            .unwrap();
        let x = e.upload_f32(&[1, 256], &[0.25; 256]).unwrap();
        let spec = qmatvec(&x, &w).spec().unwrap();
        let has_int8 = spec.space(e.profile()).iter().any(|c| c.path == Path::Int8);
        assert_eq!(has_int8, Path::int8_supports(format), "{}", format.name());
    }
}

/// The int8 path as configs of the plain matvec (what the tuner picks from): in the space of
/// plain problems of its formats, absent from gated and stacked ones, marked approximate,
/// never the default, and refused by a gated matvec.
#[test]
fn int8_configs_of_the_plain_matvec() {
    use webjit_engine::ops::qmatvec_gated;
    use webjit_jit::kernels::qmatvec::{Form, Gate};
    let e = engine();
    let (n, k) = (29, 512);
    for format in [GgmlType::Q8_0, GgmlType::Q4K] {
        let raw = quant::synth_blocks(format, n * k / format.block_elems(), 9);
        let w = e.upload_quantized(format, [n, k], &raw).unwrap();
        let x = e
            .upload_f32(&[1, k], &Rand::new(90).vec(k, -1.0, 1.0))
            .unwrap();
        let spec = qmatvec(&x, &w).spec().unwrap();
        let space = spec.space(e.profile());
        let int8: Vec<_> = space
            .iter()
            .filter(|c| c.path == Path::Int8)
            .cloned()
            .collect();
        assert!(
            int8.len() >= 4,
            "{}: {} int8 configs",
            format.name(),
            int8.len()
        );
        for c in &space {
            assert_eq!(
                spec.approximate(c).is_some(),
                c.path == Path::Int8,
                "{}",
                spec.key(c)
            );
        }
        assert!(
            spec.default_config(e.profile()).path != Path::Int8,
            "int8 must not be the default"
        );
        let mut gated = spec.clone();
        gated.form = Form::Gated(Gate::GeluTanh);
        assert!(gated
            .space(e.profile())
            .iter()
            .all(|c| c.path != Path::Int8));
        let mut rec = e.recorder();
        let err = qmatvec_gated(&x, &w, &w, Gate::GeluTanh)
            .config(int8[0].clone())
            .record(&mut rec);
        assert!(err.is_err(), "a gated matvec accepted an int8 config");
    }
    // A format without an int8 path offers none.
    let w = e
        .upload_quantized(
            GgmlType::Q5K,
            [4, 256],
            &quant::synth_blocks(GgmlType::Q5K, 4, 1),
        )
        .unwrap();
    let x = e.upload_f32(&[1, 256], &[0.5; 256]).unwrap();
    let spec = qmatvec(&x, &w).spec().unwrap();
    assert!(spec.space(e.profile()).iter().all(|c| c.path != Path::Int8));
}

/// The tuner accepts int8 candidates within their own tolerance (none is rejected as wrong),
/// and with `exact` never tries them.
#[test]
fn tuner_takes_int8_candidates_unless_exact() {
    use std::time::Duration;
    use webjit_engine::tune::TuneOptions;
    // A private engine: the records this test makes must not steer other tests' defaults.
    let e = Engine::new_blocking(webjit_engine::DeviceOptions {
        load_tuning: false,
        ..Default::default()
    })
    .expect("a GPU adapter (lavapipe: apt-get install mesa-vulkan-drivers)");
    let (n, k) = (64, 1024);
    let raw = quant::synth_blocks(GgmlType::Q8_0, n * k / 32, 5);
    let w = e.upload_quantized(GgmlType::Q8_0, [n, k], &raw).unwrap();
    let x = e
        .upload_f32(&[1, k], &Rand::new(91).vec(k, -1.0, 1.0))
        .unwrap();
    let spec = qmatvec(&x, &w).spec().unwrap();
    // The candidates of an exact run: the f32-multiply configs, dequantized or by blocks (the
    // default's arithmetic; the tuner never runs f16 ones against an f32 default).
    let exact_space = spec
        .space(e.profile())
        .iter()
        .filter(|c| {
            matches!(
                c.path,
                Path::F32 | Path::Blocks | Path::BlocksX | Path::Lanes
            )
        })
        .count() as u32;
    let mut rejected = Vec::new();
    for exact in [false, true] {
        let opts = TuneOptions {
            budget: Duration::from_secs(60),
            min_batch: Duration::from_millis(2),
            max_nmse: 1e-8,
            exact,
        };
        let r = e
            .tune(&spec, &opts, |rec, c| {
                qmatvec(&x, &w).config(c.clone()).record(rec)
            })
            .unwrap();
        if exact {
            assert!(!r.winner_key.starts_with("qmatvec_i8"), "{r:?}");
            assert_eq!(r.tried + r.rejected + r.skipped, exact_space, "{r:?}");
        } else {
            assert!(r.tried + r.rejected + r.skipped > exact_space, "{r:?}");
        }
        rejected.push(r.rejected);
    }
    assert_eq!(rejected, [0, 0], "candidates were rejected: {rejected:?}");
}
