//! The gated quantized matvec, `act(x Wg^T) * (x Wu^T)` in one pass (an FFN's gate, up and
//! activation), against the f64 composition over the same dequantized weights: every config
//! on Gemma's Q5_0 and on Q4_K, sampled configs on every format, both activations, segmented
//! weights, and mismatched operands refused.

use webjit_engine::ops::{qmatvec_gated, qmatvec_stacked};
use webjit_engine::Engine;
use webjit_jit::kernels::qmatvec::{Gate, Path, QMatvecConfig, Reduce};
use webjit_jit::quant::{self, GgmlType};
use webjit_jit::KernelSpec;
use webjit_tests::{assert_close, engine, small_binding_engine, Rand};

fn act(g: Gate, v: f64) -> f64 {
    match g {
        Gate::GeluTanh => {
            0.5 * v * (1.0 + (0.7978845608028654 * (v + 0.044715 * v * v * v)).tanh())
        }
        Gate::Silu => v / (1.0 + (-v).exp()),
    }
}

fn dots(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> (Vec<f64>, f64) {
    let mut y = vec![0.0; m * n];
    let mut mag: f64 = 0.0;
    for i in 0..m {
        for j in 0..n {
            let (mut s, mut a) = (0.0, 0.0);
            for t in 0..k {
                let p = x[i * k + t] as f64 * w[j * k + t] as f64;
                s += p;
                a += p.abs();
            }
            y[i * n + j] = s;
            mag = mag.max(a);
        }
    }
    (y, mag)
}

#[allow(clippy::too_many_arguments)]
fn run(
    e: &Engine,
    format: GgmlType,
    gate: Gate,
    m: usize,
    n: usize,
    k: usize,
    seed: u64,
    pick: &dyn Fn(&[QMatvecConfig]) -> Vec<QMatvecConfig>,
) -> usize {
    let blocks = n * k / format.block_elems();
    let raw_g = quant::synth_blocks(format, blocks, seed);
    let raw_u = quant::synth_blocks(format, blocks, seed + 1000);
    let wg = quant::dequantize_vec(format, &raw_g).unwrap();
    let wu = quant::dequantize_vec(format, &raw_u).unwrap();
    let mut rnd = Rand::new(seed);
    let x = rnd.vec(m * k, -1.0, 1.0);
    let (g, mag_g) = dots(&x, &wg, m, n, k);
    let (u, mag_u) = dots(&x, &wu, m, n, k);
    let want: Vec<f64> = g.iter().zip(&u).map(|(&a, &b)| act(gate, a) * b).collect();
    let max_u = u.iter().map(|v| v.abs()).fold(0.0, f64::max);
    let max_act = g.iter().map(|&v| act(gate, v).abs()).fold(0.0, f64::max);
    let scale_g = g.iter().map(|v| v.abs()).fold(0.0, f64::max);
    let scale_u = max_u;
    let tg = e.upload_quantized(format, [n, k], &raw_g).unwrap();
    let tu = e.upload_quantized(format, [n, k], &raw_u).unwrap();
    let xt = e.upload_f32(&[m, k], &x).unwrap();
    let spec = qmatvec_gated(&xt, &tg, &tu, gate).spec().unwrap();
    let chosen = pick(&spec.space(e.profile()));
    for cfg in &chosen {
        let mut rec = e.recorder();
        let y = qmatvec_gated(&xt, &tg, &tu, gate)
            .config(cfg.clone())
            .record(&mut rec)
            .unwrap();
        rec.submit().unwrap();
        let got = e.read_f32(&y).unwrap();
        // Each dot's error (as for the plain matvec), carried through act(g) * u (|act'| <= 1.2).
        let (eg, eu) = if cfg.path == Path::F16 {
            (4e-3 * mag_g, 4e-3 * mag_u)
        } else {
            (1e-5 * scale_g.max(1e-3), 1e-5 * scale_u.max(1e-3))
        };
        let atol = 1.2 * eg * max_u + eu * max_act + 1e-7;
        let nmse = match ((cfg.path == Path::F16), want.len() >= 16) {
            (false, _) => 1e-9,
            (true, true) => 1e-5,
            (true, false) => f64::INFINITY,
        };
        assert_close(
            &format!("{} m{m} n{n} k{k}", spec.key(cfg)),
            seed,
            &got,
            &want,
            atol,
            if cfg.path == Path::F16 { 1e-2 } else { 1e-4 },
            nmse,
        );
    }
    chosen.len()
}

#[test]
fn gated_qmatvec_every_config_on_q5_0_and_q4_k() {
    let e = engine();
    let all = |s: &[QMatvecConfig]| s.to_vec();
    let mut total = 0;
    total += run(e, GgmlType::Q5_0, Gate::GeluTanh, 1, 37, 640, 1, &all);
    total += run(e, GgmlType::Q4K, Gate::Silu, 3, 13, 512, 3, &all);
    assert!(total >= 60, "only {total} configs ran");
}

#[test]
fn gated_qmatvec_all_formats_sampled_configs() {
    let e = engine();
    let sample = |s: &[QMatvecConfig]| -> Vec<QMatvecConfig> {
        let mut v = vec![s[0].clone(), s[s.len() - 1].clone()];
        if let Some(c) = s.iter().find(|c| c.reduce == Reduce::Subgroup && c.r == 4) {
            v.push(c.clone());
        }
        v
    };
    for (i, format) in GgmlType::ALL.into_iter().enumerate() {
        let k = 3 * format.block_elems().max(32) + if format.block_elems() == 1 { 4 } else { 0 };
        for (j, (m, n)) in [(1, 1), (8, 31), (2, 53)].into_iter().enumerate() {
            let gate = if j % 2 == 0 {
                Gate::GeluTanh
            } else {
                Gate::Silu
            };
            run(
                e,
                format,
                gate,
                m,
                n,
                k,
                200 + 10 * i as u64 + j as u64,
                &sample,
            );
        }
    }
}

#[test]
fn gated_qmatvec_segmented_matches_unsegmented_and_refuses_mismatches() {
    let (small, big) = (small_binding_engine(), engine());
    let (format, n, k) = (GgmlType::Q8_0, 131, 1024);
    let raw_g = quant::synth_blocks(format, n * k / 32, 5);
    let raw_u = quant::synth_blocks(format, n * k / 32, 6);
    let x = Rand::new(50).vec(k, -1.0, 1.0);
    let cfg = QMatvecConfig {
        wg: 64,
        path: Path::F32,
        r: 2,
        reduce: Reduce::Workgroup,
    };
    let mut outs = Vec::new();
    for e in [small, big] {
        let tg = e.upload_quantized(format, [n, k], &raw_g).unwrap();
        let tu = e.upload_quantized(format, [n, k], &raw_u).unwrap();
        if std::ptr::eq(e, small) {
            assert!(tg.segments().len() >= 2, "the weight must be segmented");
        }
        let xt = e.upload_f32(&[1, k], &x).unwrap();
        let mut rec = e.recorder();
        let y = qmatvec_gated(&xt, &tg, &tu, Gate::GeluTanh)
            .config(cfg.clone())
            .record(&mut rec)
            .unwrap();
        rec.submit().unwrap();
        outs.push(e.read_f32(&y).unwrap());
    }
    assert!(
        outs[0]
            .iter()
            .zip(&outs[1])
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "segmented result differs from unsegmented"
    );
    // Different shapes or formats are a typed error, not a wrong answer.
    let e = big;
    let xt = e.upload_f32(&[1, k], &x).unwrap();
    let tg = e.upload_quantized(format, [n, k], &raw_g).unwrap();
    let other = e
        .upload_quantized(
            GgmlType::Q4_0,
            [n, k],
            &quant::synth_blocks(GgmlType::Q4_0, n * k / 32, 7),
        )
        .unwrap();
    let short = e
        .upload_quantized(format, [n - 1, k], &raw_u[..(n - 1) * (k / 32) * 34])
        .unwrap();
    let mut rec = e.recorder();
    assert!(qmatvec_gated(&xt, &tg, &other, Gate::Silu)
        .record(&mut rec)
        .is_err());
    assert!(qmatvec_gated(&xt, &tg, &short, Gate::Silu)
        .record(&mut rec)
        .is_err());
}

/// The stacked matvec ([W1; W2; W3] by rows, one output) against the f64 product of each part.
fn run_stacked(
    e: &Engine,
    format: GgmlType,
    rows: &[usize],
    m: usize,
    k: usize,
    seed: u64,
    pick: &dyn Fn(&[QMatvecConfig]) -> Vec<QMatvecConfig>,
) -> usize {
    let mut rnd = Rand::new(seed);
    let x = rnd.vec(m * k, -1.0, 1.0);
    let total: usize = rows.iter().sum();
    let mut want = vec![0.0f64; m * total];
    let mut mag: f64 = 0.0;
    let mut ts = Vec::new();
    let mut col = 0;
    for (i, &n) in rows.iter().enumerate() {
        let raw = quant::synth_blocks(format, n * k / format.block_elems(), seed + 10 * i as u64);
        let wf = quant::dequantize_vec(format, &raw).unwrap();
        let (y, mg) = dots(&x, &wf, m, n, k);
        mag = mag.max(mg);
        for r in 0..m {
            for j in 0..n {
                want[r * total + col + j] = y[r * n + j];
            }
        }
        col += n;
        ts.push(e.upload_quantized(format, [n, k], &raw).unwrap());
    }
    let parts: Vec<_> = ts.iter().collect();
    let xt = e.upload_f32(&[m, k], &x).unwrap();
    let spec = qmatvec_stacked(&xt, &parts).spec().unwrap();
    assert_eq!(spec.n, total as u64);
    let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max);
    let chosen = pick(&spec.space(e.profile()));
    for cfg in &chosen {
        let mut rec = e.recorder();
        let y = qmatvec_stacked(&xt, &parts)
            .config(cfg.clone())
            .record(&mut rec)
            .unwrap();
        rec.submit().unwrap();
        let got = e.read_f32(&y).unwrap();
        assert_close(
            &format!("{} m{m} rows{rows:?} k{k}", spec.key(cfg)),
            seed,
            &got,
            &want,
            if cfg.path == Path::F16 {
                4e-3 * mag
            } else {
                1e-5 * scale
            },
            if cfg.path == Path::F16 { 1e-2 } else { 1e-4 },
            if cfg.path == Path::F16 { 1e-5 } else { 1e-9 },
        );
    }
    chosen.len()
}

#[test]
fn stacked_qmatvec_every_config_and_sampled_formats() {
    let e = engine();
    let all = |s: &[QMatvecConfig]| s.to_vec();
    // Gemma 3 270M's q, k, v rows (scaled down), part sizes that no R divides.
    let mut total = run_stacked(e, GgmlType::Q5_0, &[37, 11, 11], 1, 640, 31, &all);
    total += run_stacked(e, GgmlType::Q5_0, &[21, 5], 2, 96, 32, &all);
    assert!(total >= 60, "only {total} configs ran");
    let sample = |s: &[QMatvecConfig]| -> Vec<QMatvecConfig> {
        let mut v = vec![s[0].clone(), s[s.len() - 1].clone()];
        if let Some(c) = s.iter().find(|c| c.reduce == Reduce::Subgroup && c.r == 8) {
            v.push(c.clone());
        }
        v
    };
    for (i, format) in GgmlType::ALL.into_iter().enumerate() {
        let k = 2 * format.block_elems().max(32) + if format.block_elems() == 1 { 4 } else { 0 };
        run_stacked(e, format, &[9, 3, 5], 1 + i % 3, k, 300 + i as u64, &sample);
    }
    // Mixed formats, K or segmented weights are refused.
    let a = e
        .upload_quantized(
            GgmlType::Q8_0,
            [4, 64],
            &quant::synth_blocks(GgmlType::Q8_0, 8, 1),
        )
        .unwrap();
    let b = e
        .upload_quantized(
            GgmlType::Q4_0,
            [4, 64],
            &quant::synth_blocks(GgmlType::Q4_0, 8, 2),
        )
        .unwrap();
    let x = e.upload_f32(&[1, 64], &[0.5; 64]).unwrap();
    let mut rec = e.recorder();
    assert!(qmatvec_stacked(&x, &[&a, &b]).record(&mut rec).is_err());
    assert!(qmatvec_stacked(&x, &[&a]).record(&mut rec).is_err());
    let small = small_binding_engine();
    let big = small
        .upload_quantized(
            GgmlType::Q8_0,
            [131, 1024],
            &quant::synth_blocks(GgmlType::Q8_0, 131 * 32, 3),
        )
        .unwrap();
    assert!(big.segments().len() >= 2);
    let xs = small.upload_f32(&[1, 1024], &[0.5; 1024]).unwrap();
    let mut rec = small.recorder();
    assert!(qmatvec_stacked(&xs, &[&big, &big])
        .record(&mut rec)
        .is_err());
}
