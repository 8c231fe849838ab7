//! The gated quantized matvec, `act(x Wg^T) * (x Wu^T)` in one pass (an FFN's gate, up and
//! activation), against the f64 composition over the same dequantized weights: every config
//! on Gemma's Q5_0 and on Q4_K, sampled configs on every format, both activations, segmented
//! weights, and mismatched operands refused. Then the norm prologue (the add_norm before a
//! decode matvec folded into it) on every config of each form, against the f64 add_norm.

use webjit_engine::ops::{qmatvec, qmatvec_gated, qmatvec_stacked, Call, NormIn, QMatvec};
use webjit_engine::{Engine, QTensor, Tensor};
use webjit_jit::kernels::qmatvec::{Form, Gate, Path, Prologue, QMatvecConfig, Reduce};
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
    // The lane decoder's configs (Q4_K and Q6_K, one activation row) of both stacked forms.
    let lanes = |s: &[QMatvecConfig]| -> Vec<QMatvecConfig> {
        s.iter()
            .filter(|c| c.path == Path::Lanes)
            .cloned()
            .collect()
    };
    let mut n = run_stacked(e, GgmlType::Q4K, &[37, 11, 11], 1, 512, 33, &lanes);
    n += run_stacked(e, GgmlType::Q6K, &[21, 5], 1, 768, 34, &lanes);
    assert!(n >= 2 * 12, "only {n} lane configs ran");
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

/// f64 `add_norm`: H = res + [rms_norm(f) * post | f], X = rms_norm(H) * pre.
fn add_norm64(
    f: &[f32],
    post: Option<&[f32]>,
    res: &[f32],
    pre: &[f32],
    eps: f64,
) -> (Vec<f64>, Vec<f64>) {
    let k = f.len() as f64;
    let rms = |v: &[f64]| 1.0 / (v.iter().map(|a| a * a).sum::<f64>() / k + eps).sqrt();
    let f64s: Vec<f64> = f.iter().map(|&v| v as f64).collect();
    let inv_f = rms(&f64s);
    let h: Vec<f64> = (0..f.len())
        .map(|i| res[i] as f64 + post.map_or(f64s[i], |p| f64s[i] * inv_f * p[i] as f64))
        .collect();
    let inv = rms(&h);
    let x = (0..f.len()).map(|i| h[i] * inv * pre[i] as f64).collect();
    (h, x)
}

/// Every config of `form` (plain: 1 weight, gated: 2, stacked: 3) with `prologue`, against
/// the f64 add_norm then the product; H written by the first workgroup only when asked.
fn run_prologue(
    e: &Engine,
    format: GgmlType,
    form: Form,
    prologue: Prologue,
    n: usize,
    k: usize,
    seed: u64,
) -> usize {
    let mut rnd = Rand::new(seed);
    let f = rnd.vec(k, -2.0, 2.0);
    let res = rnd.vec(k, -1.0, 1.0);
    let post = rnd.vec(k, 0.5, 1.5);
    let pre = rnd.vec(k, 0.5, 1.5);
    let eps = 1e-6f32;
    let with_post = prologue == Prologue::NormAddNorm;
    let (h, x) = add_norm64(&f, with_post.then_some(&post[..]), &res, &pre, eps as f64);
    let weights = match form {
        Form::Plain => 1,
        Form::Gated(_) => 2,
        Form::Stacked(s) => s as usize,
    };
    let (mut raws, mut ws) = (vec![], vec![]);
    for i in 0..weights {
        let raw = quant::synth_blocks(format, n * k / format.block_elems(), seed + 7 * i as u64);
        ws.push(quant::dequantize_vec(format, &raw).unwrap());
        raws.push(e.upload_quantized(format, [n, k], &raw).unwrap());
    }
    let dot = |w: &[f32], j: usize| -> (f64, f64) {
        (0..k).fold((0.0, 0.0), |(s, a), t| {
            let p = x[t] * w[j * k + t] as f64;
            (s + p, a + p.abs())
        })
    };
    let mut want = vec![];
    let mut mag: f64 = 0.0;
    match form {
        Form::Gated(g) => {
            for j in 0..n {
                let ((a, ma), (b, mb)) = (dot(&ws[0], j), dot(&ws[1], j));
                want.push(act(g, a) * b);
                mag = mag.max(ma * mb.max(1.0)).max(mb * ma.max(1.0));
            }
        }
        _ => {
            for w in &ws {
                for j in 0..n {
                    let (a, ma) = dot(w, j);
                    want.push(a);
                    mag = mag.max(ma);
                }
            }
        }
    }
    let ft = e.upload_f32(&[1, k], &f).unwrap();
    let (rt, postt, pret) = (
        e.upload_f32(&[k], &res).unwrap(),
        e.upload_f32(&[k], &post).unwrap(),
        e.upload_f32(&[k], &pre).unwrap(),
    );
    let sentinel = vec![7.0f32; k];
    let refs: Vec<&QTensor> = raws.iter().collect();
    let w_post = with_post.then_some(&postt);
    let probe = e.upload_f32(&[k], &sentinel).unwrap();
    let spec = product(form, &ft, &refs)
        .norm_prologue(NormIn {
            res: &rt,
            w_post,
            w_pre: &pret,
            eps,
            res_out: &probe,
            write_res: true,
        })
        .spec()
        .unwrap();
    assert_eq!(spec.prologue, prologue);
    if form == Form::Stacked(3) && prologue == Prologue::NormAddNorm {
        // 9 storage buffers: none of its configs on WebGPU's default limit of 8, so the
        // decoder keeps the add_norm dispatch there.
        let mut min = webjit_jit::DeviceProfile::swiftshader_like();
        min.limits = webjit_jit::ProfileLimits::webgpu_default();
        assert!(spec.space(&min).is_empty() && !spec.prologue_fits(&min));
        assert!(spec.prologue_fits(e.profile()));
    }
    let space = spec.space(e.profile());
    assert!(
        space.iter().all(|c| c.path != Path::Int8),
        "int8 configs in a prologue's space"
    );
    let hmax = h.iter().map(|v| v.abs()).fold(0.0, f64::max);
    for (i, cfg) in space.iter().enumerate() {
        let write = i % 2 == 0;
        let out = e.upload_f32(&[k], &sentinel).unwrap();
        let mut rec = e.recorder();
        let nrm = NormIn {
            res: &rt,
            w_post,
            w_pre: &pret,
            eps,
            res_out: &out,
            write_res: write,
        };
        let y = product(form, &ft, &refs)
            .norm_prologue(nrm)
            .config(cfg.clone())
            .record(&mut rec)
            .unwrap();
        rec.submit().unwrap();
        let what = format!("{} n{n} k{k}", spec.key(cfg));
        let tol = if cfg.path == Path::F16 { 4e-3 } else { 2e-5 };
        let nmse = if cfg.path == Path::F16 { 1e-5 } else { 1e-9 };
        assert_close(
            &what,
            seed,
            &e.read_f32(&y).unwrap(),
            &want,
            tol * mag,
            1e-3,
            nmse,
        );
        let got_h = e.read_f32(&out).unwrap();
        if write {
            assert_close(
                &format!("{what} H"),
                seed,
                &got_h,
                &h,
                1e-6 * hmax,
                1e-6,
                1e-12,
            );
        } else {
            assert_eq!(got_h, sentinel, "{what}: H written without write_res");
        }
    }
    space.len()
}

/// The matvec of `form` over `ws` (1, 2 or 3 weights).
fn product<'a>(form: Form, x: &'a Tensor, ws: &[&'a QTensor]) -> Call<'a, QMatvec<'a>> {
    match form {
        Form::Plain => qmatvec(x, ws[0]),
        Form::Gated(g) => qmatvec_gated(x, ws[0], ws[1], g),
        Form::Stacked(_) => qmatvec_stacked(x, ws),
    }
}

#[test]
fn norm_prologue_every_config_of_each_form() {
    let e = engine();
    let mut total = 0;
    total += run_prologue(
        e,
        GgmlType::Q5_0,
        Form::Gated(Gate::GeluTanh),
        Prologue::NormAddNorm,
        37,
        640,
        41,
    );
    total += run_prologue(
        e,
        GgmlType::Q4K,
        Form::Gated(Gate::Silu),
        Prologue::AddNorm,
        13,
        512,
        42,
    );
    total += run_prologue(
        e,
        GgmlType::Q5_0,
        Form::Stacked(3),
        Prologue::NormAddNorm,
        11,
        640,
        43,
    );
    total += run_prologue(e, GgmlType::Q6K, Form::Plain, Prologue::AddNorm, 9, 256, 44);
    assert!(total >= 100, "only {total} configs ran");
    // The int8 path and several activation rows are refused.
    let w = e
        .upload_quantized(
            GgmlType::Q8_0,
            [4, 64],
            &quant::synth_blocks(GgmlType::Q8_0, 8, 1),
        )
        .unwrap();
    let x2 = e.upload_f32(&[2, 64], &[0.5; 128]).unwrap();
    let v = e.upload_f32(&[64], &[1.0; 64]).unwrap();
    let nrm = NormIn {
        res: &v,
        w_post: None,
        w_pre: &v,
        eps: 1e-6,
        res_out: &v,
        write_res: true,
    };
    let mut rec = e.recorder();
    assert!(qmatvec(&x2, &w)
        .norm_prologue(nrm)
        .record(&mut rec)
        .is_err());
    let x1 = e.upload_f32(&[1, 64], &[0.5; 64]).unwrap();
    let int8 = QMatvecConfig {
        path: Path::Int8,
        wg: 64,
        r: 1,
        reduce: Reduce::Workgroup,
    };
    assert!(qmatvec(&x1, &w)
        .norm_prologue(nrm)
        .config(int8)
        .record(&mut rec)
        .is_err());
    // A weight of the wrong K for the norm's operands.
    let short = e.upload_f32(&[32], &[1.0; 32]).unwrap();
    let bad = NormIn { res: &short, ..nrm };
    assert!(qmatvec(&x1, &w)
        .norm_prologue(bad)
        .record(&mut rec)
        .is_err());
}
