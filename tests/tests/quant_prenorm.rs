//! The quantized matvec with a fused pre-norm (`PreNorm`): the kernel forms
//! `h = res + post(o)` and `x = rmsnorm(h) * nw` itself, then the plain, gated or stacked
//! product. Checked against the f64 composition over the same dequantized weights for every
//! config of Gemma's formats and shapes (scaled down), sampled configs of every format, both
//! pre-norm forms, segmented weights; the residual output against `h`; bad operands refused.

use webjit_engine::ops::{
    qmatvec_gated_pre, qmatvec_pre, qmatvec_spec, qmatvec_stacked_pre, PreNormArgs,
};
use webjit_engine::Engine;
use webjit_jit::kernels::qmatvec::{Gate, PreNorm, QMatvecConfig, Reduce};
use webjit_jit::quant::{self, GgmlType};
use webjit_jit::KernelSpec;
use webjit_tests::{assert_close, engine, small_binding_engine, Rand};

const EPS: f32 = 1e-6;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Plain,
    Gated(Gate),
    /// Row counts of the stacked weights.
    Stacked(&'static [usize]),
}

fn gelu_tanh(v: f64) -> f64 {
    0.5 * v * (1.0 + (0.7978845608028654 * (v + 0.044715 * v * v * v)).tanh())
}

fn silu(v: f64) -> f64 {
    v / (1.0 + (-v).exp())
}

/// `h = res + post(o)` and `x = rmsnorm(h) * nw` in f64.
fn prenorm_ref(o: &[f32], res: &[f32], pw: Option<&[f32]>, nw: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let k = o.len();
    let rms =
        |v: &[f64]| 1.0 / (v.iter().map(|a| a * a).sum::<f64>() / k as f64 + EPS as f64).sqrt();
    let o64: Vec<f64> = o.iter().map(|&v| v as f64).collect();
    let post: Vec<f64> = match pw {
        Some(pw) => {
            let r = rms(&o64);
            o64.iter().zip(pw).map(|(a, &w)| a * r * w as f64).collect()
        }
        None => o64,
    };
    let h: Vec<f64> = res.iter().zip(&post).map(|(&a, b)| a as f64 + b).collect();
    let r = rms(&h);
    let x = h.iter().zip(nw).map(|(a, &w)| a * r * w as f64).collect();
    (h, x)
}

/// Row dots of x with `w` [n, k], and the largest sum of |products| (the error scale).
fn dots(x: &[f64], w: &[f32], k: usize) -> (Vec<f64>, f64) {
    let mut mag: f64 = 0.0;
    let y = w
        .chunks(k)
        .map(|row| {
            let (mut s, mut a) = (0.0, 0.0);
            for (xv, &wv) in x.iter().zip(row) {
                s += xv * wv as f64;
                a += (xv * wv as f64).abs();
            }
            mag = mag.max(a);
            s
        })
        .collect();
    (y, mag)
}

struct Case {
    format: GgmlType,
    kind: Kind,
    n: usize,
    k: usize,
    post: bool,
    seed: u64,
}

fn run(e: &Engine, c: &Case, pick: &dyn Fn(&[QMatvecConfig]) -> Vec<QMatvecConfig>) -> usize {
    let (format, k) = (c.format, c.k);
    let rows: Vec<usize> = match c.kind {
        Kind::Plain => vec![c.n],
        Kind::Gated(_) => vec![c.n, c.n],
        Kind::Stacked(parts) => parts.to_vec(),
    };
    let raws: Vec<Vec<u8>> = rows
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            quant::synth_blocks(
                format,
                n * k / format.block_elems(),
                c.seed + 100 * i as u64,
            )
        })
        .collect();
    let deq: Vec<Vec<f32>> = raws
        .iter()
        .map(|r| quant::dequantize_vec(format, r).unwrap())
        .collect();
    let mut rnd = Rand::new(c.seed);
    // o spread wider than res, so the post-norm's scaling matters; weights around 1.
    let o = rnd.vec(k, -4.0, 4.0);
    let res = rnd.vec(k, -1.0, 1.0);
    let pw = rnd.vec(k, 0.5, 1.5);
    let nw = rnd.vec(k, 0.5, 1.5);
    let (h, x) = prenorm_ref(&o, &res, c.post.then_some(pw.as_slice()), &nw);
    let (want, mag, gated) = match c.kind {
        Kind::Gated(g) => {
            let (a, ma) = dots(&x, &deq[0], k);
            let (b, mb) = dots(&x, &deq[1], k);
            let act = |v: f64| match g {
                Gate::GeluTanh => gelu_tanh(v),
                Gate::Silu => silu(v),
            };
            let max_b = b.iter().map(|v| v.abs()).fold(0.0, f64::max);
            let max_a = a.iter().map(|&v| act(v).abs()).fold(0.0, f64::max);
            let want = a.iter().zip(&b).map(|(&p, &q)| act(p) * q).collect();
            // Each dot's error carried through act(a) * b (|act'| <= 1.2).
            (want, (ma, mb, max_a, max_b), true)
        }
        _ => {
            let mut want = Vec::new();
            let mut mag: f64 = 0.0;
            for d in &deq {
                let (y, m) = dots(&x, d, k);
                want.extend(y);
                mag = mag.max(m);
            }
            (want, (mag, 0.0, 0.0, 0.0), false)
        }
    };
    let ws: Vec<_> = rows
        .iter()
        .zip(&raws)
        .map(|(&n, r)| e.upload_quantized(format, [n, k], r).unwrap())
        .collect();
    let ot = e.upload_f32(&[1, k], &o).unwrap();
    let rt = e.upload_f32(&[1, k], &res).unwrap();
    let pwt = e.upload_f32(&[k], &pw).unwrap();
    let nwt = e.upload_f32(&[k], &nw).unwrap();
    let pre = PreNormArgs {
        residual: &rt,
        post_w: c.post.then_some(&pwt),
        norm_w: &nwt,
        eps: EPS,
    };
    let mut spec = qmatvec_spec(&ot, &ws[0]).unwrap();
    spec.prenorm = Some(if c.post {
        PreNorm::PostNormAdd
    } else {
        PreNorm::Add
    });
    match c.kind {
        Kind::Plain => {}
        Kind::Gated(g) => spec.gate = Some(g),
        Kind::Stacked(parts) => {
            spec.stacked = parts.len() as u32;
            spec.n = parts.iter().sum::<usize>() as u64;
            spec.rows = spec.n;
        }
    }
    let space = spec.space(e.profile());
    assert!(
        space.iter().all(|c| !c.int8),
        "int8 configs offered with a fused pre-norm"
    );
    let chosen = pick(&space);
    for cfg in &chosen {
        let mut rec = e.recorder();
        let cfgo = Some(cfg.clone());
        let out = match c.kind {
            Kind::Plain => qmatvec_pre(&mut rec, &ot, &pre, &ws[0], cfgo).unwrap(),
            Kind::Gated(g) => {
                qmatvec_gated_pre(&mut rec, &ot, &pre, &ws[0], &ws[1], g, cfgo).unwrap()
            }
            Kind::Stacked(_) => {
                let parts: Vec<_> = ws.iter().collect();
                qmatvec_stacked_pre(&mut rec, &ot, &pre, &parts, cfgo).unwrap()
            }
        };
        rec.submit().unwrap();
        let label = format!("{} n{} k{k} post {}", spec.key(cfg), c.n, c.post);
        let got_h = e.read_f32(&out.residual).unwrap();
        assert_close(
            &format!("{label}: residual"),
            c.seed,
            &got_h,
            &h,
            1e-5,
            1e-5,
            1e-12,
        );
        let got_x = e.read_f32(&out.normed).unwrap();
        assert_close(
            &format!("{label}: normed"),
            c.seed,
            &got_x,
            &x,
            1e-5,
            1e-5,
            1e-12,
        );
        let got = e.read_f32(&out.y).unwrap();
        let rel = if cfg.f16 { 4e-3 } else { 1e-5 };
        let atol = if gated {
            let (ma, mb, max_a, max_b) = mag;
            1.2 * rel * ma * max_b + rel * mb * max_a + 1e-6
        } else {
            rel * mag.0 + 1e-6
        };
        let nmse = match (cfg.f16, want.len() >= 16) {
            (false, _) => 1e-9,
            (true, true) => 1e-5,
            (true, false) => f64::INFINITY,
        };
        assert_close(
            &label,
            c.seed,
            &got,
            &want,
            atol,
            if cfg.f16 { 1e-2 } else { 1e-4 },
            nmse,
        );
    }
    chosen.len()
}

fn all(s: &[QMatvecConfig]) -> Vec<QMatvecConfig> {
    s.to_vec()
}

fn sample(s: &[QMatvecConfig]) -> Vec<QMatvecConfig> {
    let mut v = vec![s[0].clone(), s[s.len() - 1].clone()];
    for red in [Reduce::Subgroup, Reduce::None] {
        if let Some(c) = s.iter().find(|c| c.reduce == red && c.r == 2) {
            v.push(c.clone());
        }
    }
    v
}

#[test]
fn prenorm_every_config_on_gemma_shapes() {
    let e = engine();
    let mut total = 0;
    // Gemma 3 270M (K = 640): its gated Q5_0 FFN after the attention block and its stacked
    // Q5_0 q/k/v after the FFN (rows scaled down, none a multiple of 8), with Gemma's
    // post-norms; plain Q4_K and stacked Q6_K; llama's plain residual add on Q8_0 and its
    // SiLU-gated FFN on Q4_K.
    let cases = [
        Case {
            format: GgmlType::Q5_0,
            kind: Kind::Gated(Gate::GeluTanh),
            n: 37,
            k: 640,
            post: true,
            seed: 1,
        },
        Case {
            format: GgmlType::Q5_0,
            kind: Kind::Stacked(&[37, 11, 11]),
            n: 59,
            k: 640,
            post: true,
            seed: 2,
        },
        Case {
            format: GgmlType::Q4K,
            kind: Kind::Plain,
            n: 29,
            k: 512,
            post: true,
            seed: 3,
        },
        Case {
            format: GgmlType::Q6K,
            kind: Kind::Stacked(&[21, 7]),
            n: 28,
            k: 512,
            post: true,
            seed: 4,
        },
        Case {
            format: GgmlType::Q8_0,
            kind: Kind::Plain,
            n: 19,
            k: 640,
            post: false,
            seed: 5,
        },
        Case {
            format: GgmlType::Q4K,
            kind: Kind::Gated(Gate::Silu),
            n: 13,
            k: 256,
            post: false,
            seed: 6,
        },
    ];
    // Every config of each variant (gated, stacked, plain) and both pre-norm forms; the
    // other formats' kernels differ only in dequantization (covered by the other tests), so
    // sampled configs there.
    for (i, c) in cases.iter().enumerate() {
        total += match i {
            0 | 1 | 4 => run(e, c, &all),
            _ => run(e, c, &sample),
        };
    }
    assert!(total >= 150, "only {total} configs ran");
}

#[test]
fn prenorm_every_format_sampled_configs() {
    let e = engine();
    for (i, format) in GgmlType::ALL.into_iter().enumerate() {
        let k = 3 * format.block_elems().max(32) + if format.block_elems() == 1 { 4 } else { 0 };
        let kind = match i % 3 {
            0 => Kind::Plain,
            1 => Kind::Gated(Gate::GeluTanh),
            _ => Kind::Stacked(&[9, 3, 5]),
        };
        let c = Case {
            format,
            kind,
            n: 17,
            k,
            post: i % 2 == 0,
            seed: 100 + i as u64,
        };
        assert!(run(e, &c, &sample) >= 3, "{}", format.name());
    }
}

#[test]
fn prenorm_on_segmented_weights() {
    // 64 KiB bindings: a 300 x 640 Q8_0 weight (204 KB) is four segments; every segment's
    // dispatch forms the same input and writes the same residual.
    let e = small_binding_engine();
    let c = Case {
        format: GgmlType::Q8_0,
        kind: Kind::Plain,
        n: 300,
        k: 640,
        post: true,
        seed: 7,
    };
    let n = run(e, &c, &|s: &[QMatvecConfig]| {
        vec![s[0].clone(), s[s.len() - 1].clone()]
    });
    assert_eq!(n, 2);
    let c = Case {
        format: GgmlType::Q5_0,
        kind: Kind::Gated(Gate::GeluTanh),
        n: 300,
        k: 640,
        post: false,
        seed: 8,
    };
    run(e, &c, &|s: &[QMatvecConfig]| vec![s[0].clone()]);
}

#[test]
fn prenorm_refuses_bad_operands() {
    let e = engine();
    let k = 64;
    let w = e
        .upload_quantized(
            GgmlType::Q8_0,
            [4, k],
            &quant::synth_blocks(GgmlType::Q8_0, 8, 1),
        )
        .unwrap();
    let o = e.upload_f32(&[1, k], &[0.5; 64]).unwrap();
    let res = e.upload_f32(&[1, k], &[0.25; 64]).unwrap();
    let nw = e.upload_f32(&[k], &[1.0; 64]).unwrap();
    let short = e.upload_f32(&[k - 4], &[1.0; 60]).unwrap();
    let two = e.upload_f32(&[2, k], &[0.5; 128]).unwrap();
    let mut rec = e.recorder();
    let ok = PreNormArgs {
        residual: &res,
        post_w: None,
        norm_w: &nw,
        eps: EPS,
    };
    // Two activation rows: the fused pre-norm is for decode.
    let two_res = e.upload_f32(&[2, k], &[0.5; 128]).unwrap();
    let two_args = PreNormArgs {
        residual: &two_res,
        ..ok
    };
    let err = qmatvec_pre(&mut rec, &two, &two_args, &w, None).unwrap_err();
    assert!(err.to_string().contains("one row"), "{err}");
    // A norm weight of the wrong length, a residual of the wrong shape.
    let bad_w = PreNormArgs {
        norm_w: &short,
        ..ok
    };
    let err = qmatvec_pre(&mut rec, &o, &bad_w, &w, None).unwrap_err();
    assert!(err.to_string().contains("norm_w"), "{err}");
    let bad_post = PreNormArgs {
        post_w: Some(&short),
        ..ok
    };
    let err = qmatvec_pre(&mut rec, &o, &bad_post, &w, None).unwrap_err();
    assert!(err.to_string().contains("post_w"), "{err}");
    let bad_res = PreNormArgs {
        residual: &two,
        ..ok
    };
    let err = qmatvec_pre(&mut rec, &o, &bad_res, &w, None).unwrap_err();
    assert!(err.to_string().contains("residual"), "{err}");
    // K above what workgroup memory holds.
    let kbig = 8192;
    let wb = e
        .upload_quantized(
            GgmlType::Q8_0,
            [1, kbig],
            &quant::synth_blocks(GgmlType::Q8_0, kbig / 32, 2),
        )
        .unwrap();
    let ob = e.upload_f32(&[1, kbig], &vec![0.5; kbig]).unwrap();
    let rb = e.upload_f32(&[1, kbig], &vec![0.5; kbig]).unwrap();
    let nb = e.upload_f32(&[kbig], &vec![1.0; kbig]).unwrap();
    let big = PreNormArgs {
        residual: &rb,
        post_w: None,
        norm_w: &nb,
        eps: EPS,
    };
    let err = qmatvec_pre(&mut rec, &ob, &big, &wb, None).unwrap_err();
    assert!(err.to_string().contains("pre-norm"), "{err}");
}
