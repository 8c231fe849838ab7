//! Prefill qmatmul (tiled, weights dequantized into workgroup memory) against the f64 matmul
//! over the same dequantized weights.

use webjit_engine::ops::qmatmul;
use webjit_engine::Engine;
use webjit_jit::kernels::qmatmul::QMatmulConfig;
use webjit_jit::quant::{self, GgmlType};
use webjit_jit::KernelSpec;
use webjit_tests::{assert_close, engine, small_binding_engine, Rand};

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

#[allow(clippy::too_many_arguments)]
fn run(
    e: &Engine,
    format: GgmlType,
    m: usize,
    n: usize,
    k: usize,
    seed: u64,
    pick: &dyn Fn(&[QMatmulConfig]) -> Vec<QMatmulConfig>,
) -> (usize, Vec<Vec<f32>>) {
    let raw = quant::synth_blocks(format, n * k / format.block_elems(), seed);
    let wf = quant::dequantize_vec(format, &raw).unwrap();
    let mut rnd = Rand::new(seed);
    let x = rnd.vec(m * k, -1.0, 1.0);
    let want = oracle(&x, &wf, m, n, k);
    let mag = abs_dot_max(&x, &wf, m, n, k);
    let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max);
    let w = e.upload_quantized(format, [n, k], &raw).unwrap();
    let xt = e.upload_f32(&[m, k], &x).unwrap();
    let spec = qmatmul(&xt, &w).spec().unwrap();
    let chosen = pick(&spec.space(e.profile()));
    let mut outs = Vec::new();
    for cfg in &chosen {
        let mut rec = e.recorder();
        let y = qmatmul(&xt, &w)
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
            if cfg.f16 { 4e-3 * mag } else { 1e-5 * scale },
            if cfg.f16 { 1e-2 } else { 1e-4 },
            nmse_bound(cfg.f16, want.len()),
        );
        outs.push(got);
    }
    (chosen.len(), outs)
}

#[test]
fn qmatmul_every_config_on_q4_k() {
    // M and N prime, not multiples of any tile; K = 2 super-blocks (K tails not multiple of TK
    // are covered by the float formats in the sampled test)
    let (n, _) = run(engine(), GgmlType::Q4K, 67, 37, 512, 21, &|s| s.to_vec());
    assert!(n >= 20, "only {n} configs");
}

#[test]
fn qmatmul_every_config_on_the_low_bit_formats() {
    let formats = [
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
    for (i, format) in formats.into_iter().enumerate() {
        // M and N prime; K = 2 super-blocks or 16 blocks of 32.
        let (n, _) = run(engine(), format, 19, 13, 512, 500 + i as u64, &|s| {
            s.to_vec()
        });
        assert!(n >= 20, "{}: only {n} configs", format.name());
    }
}

#[test]
fn qmatmul_all_formats_sampled_configs() {
    let pick =
        |s: &[QMatmulConfig]| vec![s[0].clone(), s[s.len() / 2].clone(), s[s.len() - 1].clone()];
    for (i, format) in GgmlType::ALL.into_iter().enumerate() {
        let k = 2 * format.block_elems().max(32) + if format.block_elems() == 1 { 12 } else { 0 };
        for (m, n) in [(1, 1), (17, 29)] {
            run(engine(), format, m, n, k, 200 + i as u64, &pick);
        }
    }
}

#[test]
fn qmatmul_segmented_matches_unsegmented() {
    // X [m, k] must fit the small engine's one binding of 64 KiB.
    for (format, m, n, k) in [
        (GgmlType::Q5_0, 9, 97, 1024),
        (GgmlType::IQ4NL, 9, 131, 1024),
        (GgmlType::IQ4XS, 9, 131, 1024),
        (GgmlType::TQ1_0, 5, 131, 2560),
        (GgmlType::TQ2_0, 7, 131, 2048),
        (GgmlType::MXFP4, 9, 131, 1024),
        (GgmlType::IQ2XXS, 5, 131, 2560),
        (GgmlType::IQ2XS, 7, 131, 2048),
        (GgmlType::IQ2S, 7, 131, 2048),
        (GgmlType::IQ3XXS, 9, 131, 1536),
        (GgmlType::IQ3S, 9, 131, 1536),
        (GgmlType::IQ1S, 5, 131, 3072),
        (GgmlType::IQ1M, 5, 131, 2560),
    ] {
        segmented_matches_unsegmented(format, m, n, k);
    }
}

fn segmented_matches_unsegmented(format: GgmlType, m: usize, n: usize, k: usize) {
    // One config without and one with K splits (partial sums of every segment, one sum pass).
    let cfg = |s: &[QMatmulConfig]| {
        [1, 4]
            .map(|ks| {
                s.iter()
                    .find(|c| {
                        !c.f16
                            && c.tm == 16
                            && c.tn == 16
                            && c.tk == 16
                            && c.rm == 2
                            && c.rn == 2
                            && c.ks == ks
                    })
                    .cloned()
                    .expect("config in space")
            })
            .to_vec()
    };
    let e = small_binding_engine();
    let raw = quant::synth_blocks(format, n * k / format.block_elems(), 5);
    let w = e.upload_quantized(format, [n, k], &raw).unwrap();
    assert!(w.segments().len() >= 2, "{w:?} not segmented");
    let (_, a) = run(e, format, m, n, k, 5, &cfg);
    let (_, b) = run(engine(), format, m, n, k, 5, &cfg);
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        assert!(
            a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{}: segmented result differs (config {i})",
            format.name()
        );
    }
}
