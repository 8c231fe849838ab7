//! The GPU sampler against a host re-implementation in f64: greedy argmax with ties, top-k,
//! temperature, top-p and the repetition penalty, for every config of its space.

use webjit_engine::ops::{SampleResult, Sampler};
use webjit_jit::kernels::sample::{SampleSettings, SampleSpec, SampleStage, SAMPLE_KMAX};
use webjit_jit::KernelSpec;
use webjit_tests::{engine, Rand};

/// Host reference: (token, sorted top candidates) for logits after the penalty.
fn host_sample(logits: &[f32], s: &SampleSettings) -> (u32, Vec<(u32, f32)>) {
    // NaN counts as the lowest logit, as on the GPU.
    let clean: Vec<f32> = logits
        .iter()
        .map(|&v| if v.is_nan() { f32::MIN } else { v })
        .collect();
    let logits = &clean[..];
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    idx.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    let k = if s.temperature <= 0.0 {
        5
    } else if s.top_k == 0 {
        SAMPLE_KMAX
    } else {
        s.top_k
    } as usize;
    let top: Vec<(u32, f32)> = idx
        .iter()
        .take(k.min(logits.len()))
        .map(|&i| (i, logits[i as usize]))
        .collect();
    if s.temperature <= 0.0 || top.len() == 1 {
        return (top[0].0, top);
    }
    let t = s.temperature as f64;
    let w: Vec<f64> = top
        .iter()
        .map(|&(_, v)| ((v as f64 - top[0].1 as f64) / t).exp())
        .collect();
    let sum: f64 = w.iter().sum();
    let mut keep = w.len();
    let mut cum = 0.0;
    for (r, x) in w.iter().enumerate() {
        cum += x / sum;
        if cum >= s.top_p as f64 {
            keep = r + 1;
            break;
        }
    }
    let kept: f64 = w[..keep].iter().sum();
    let goal = s.u as f64 * kept;
    let mut acc = 0.0;
    for (r, x) in w[..keep].iter().enumerate() {
        acc += x;
        if goal < acc {
            return (top[r].0, top);
        }
    }
    (top[keep - 1].0, top)
}

/// Is the draw far enough from every cumulative boundary that f32 rounding cannot flip it?
fn draw_is_clear(logits: &[f32], s: &SampleSettings) -> bool {
    let (_, top) = host_sample(logits, s);
    let t = s.temperature as f64;
    let w: Vec<f64> = top
        .iter()
        .map(|&(_, v)| ((v as f64 - top[0].1 as f64) / t).exp())
        .collect();
    let sum: f64 = w.iter().sum();
    let mut cum = 0.0;
    for x in &w {
        cum += x / sum;
        if (cum - s.top_p as f64).abs() < 1e-4 {
            return false;
        }
    }
    let mut acc = 0.0;
    let total: f64 = w.iter().sum();
    for x in &w {
        acc += x;
        // Boundaries relative to any kept mass: stay clear of all of them.
        if ((s.u as f64) * total - acc).abs() < 1e-4 * total {
            return false;
        }
    }
    true
}

fn run(sampler: &Sampler, logits: &[f32], s: &SampleSettings, recent: &[u32]) -> SampleResult {
    let e = engine();
    let t = e.upload_f32(&[1, logits.len()], logits).unwrap();
    let mut rec = e.recorder();
    sampler.record(&mut rec, &t, s, recent).unwrap();
    rec.submit().unwrap();
    sampler.read(e).unwrap()
}

fn random_logits(r: &mut Rand, n: usize) -> Vec<f32> {
    let mut v: Vec<f32> = r.vec(n, -8.0, 8.0);
    if n > 10 {
        // Ties at the top: the lower id must win.
        let m = v.iter().cloned().fold(f32::MIN, f32::max) + 1.0;
        v[n / 3] = m;
        v[n / 2] = m;
        v[n - 1] = m;
        v[7] = f32::NAN; // NaN counts as -inf
    }
    v
}

#[test]
fn greedy_and_top5_match_the_host_for_every_config() {
    let e = engine();
    for n in [1usize, 3, 7, 1000, 70001] {
        let spec = SampleSpec {
            stage: SampleStage::Partial,
            n: n as u64,
        };
        for cfg in spec.space(e.profile()) {
            let sampler = Sampler::with_config(e, n, Some(cfg.clone())).unwrap();
            let mut r = Rand::new(n as u64 * 31 + cfg.wg as u64 + cfg.groups as u64);
            let logits = random_logits(&mut r, n);
            let s = SampleSettings {
                temperature: 0.0,
                top_k: 40,
                top_p: 1.0,
                u: 0.5,
                penalty: 1.0,
            };
            let got = run(&sampler, &logits, &s, &[]);
            let (tok, top) = host_sample(&logits, &s);
            assert_eq!(got.token, tok, "n {n} {cfg:?}");
            let want: Vec<_> = top.into_iter().take(5).collect();
            assert_eq!(got.top, want, "n {n} {cfg:?}");
        }
    }
}

#[test]
fn temperature_top_k_top_p_draws_match_the_host() {
    let e = engine();
    let n = 50_000;
    let sampler = Sampler::new(e, n).unwrap();
    let mut r = Rand::new(7);
    let mut checked = 0;
    let mut distinct = std::collections::HashSet::new();
    for trial in 0..80 {
        // Peaked logits so top-p cuts inside the candidate list.
        let logits: Vec<f32> = r.vec(n, -2.0, 2.0);
        let mut logits = logits;
        for j in 0..80 {
            logits[(j * 613 + trial) % n] = 6.0 + r.vec(1, 0.0, 3.0)[0];
        }
        let s = SampleSettings {
            temperature: [0.5, 0.8, 1.0, 1.5][trial % 4],
            top_k: [0, 1, 5, 40, 64][trial % 5],
            top_p: [1.0, 0.9, 0.5][trial % 3],
            u: r.vec(1, 0.0, 1.0)[0],
            penalty: 1.0,
        };
        if !draw_is_clear(&logits, &s) {
            continue;
        }
        let got = run(&sampler, &logits, &s, &[]);
        let (tok, _) = host_sample(&logits, &s);
        assert_eq!(got.token, tok, "trial {trial}: {s:?}");
        distinct.insert(got.token);
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} clear draws");
    assert!(distinct.len() > 5, "draws should vary: {distinct:?}");
}

#[test]
fn repetition_penalty_matches_llama_cpp_rule() {
    let e = engine();
    let n = 4099;
    let sampler = Sampler::new(e, n).unwrap();
    let mut r = Rand::new(11);
    let mut logits: Vec<f32> = r.vec(n, -4.0, 4.0);
    // Penalized tokens at the top, positive and negative, one repeated in the history.
    logits[10] = 9.0;
    logits[20] = 8.5;
    logits[30] = -0.1;
    let recent = [10u32, 20, 10, 30, 10];
    let s = SampleSettings {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        u: 0.0,
        penalty: 1.5,
    };
    let mut want = logits.clone();
    for id in [10usize, 20, 30] {
        let v = want[id];
        want[id] = if v > 0.0 { v / 1.5 } else { v * 1.5 };
    }
    let got = run(&sampler, &logits, &s, &recent);
    let (tok, top) = host_sample(&want, &s);
    assert_eq!(got.token, tok);
    assert_eq!(got.top, top[..5].to_vec());
}

#[test]
fn bad_settings_are_refused() {
    let e = engine();
    let sampler = Sampler::new(e, 100).unwrap();
    let t = e.upload_f32(&[100], &[0.0; 100]).unwrap();
    let ok = SampleSettings {
        temperature: 1.0,
        top_k: 10,
        top_p: 0.9,
        u: 0.5,
        penalty: 1.0,
    };
    for bad in [
        SampleSettings { top_k: 65, ..ok },
        SampleSettings { top_p: 0.0, ..ok },
        SampleSettings { top_p: 1.5, ..ok },
        SampleSettings { penalty: 0.0, ..ok },
        SampleSettings {
            temperature: f32::NAN,
            ..ok
        },
        SampleSettings { u: 1.0, ..ok },
    ] {
        let mut rec = e.recorder();
        let err = sampler.record(&mut rec, &t, &bad, &[]).unwrap_err();
        assert_eq!(err.code(), "INVALID_ARGUMENT", "{bad:?}");
    }
    let wrong = e.upload_f32(&[99], &[0.0; 99]).unwrap();
    let mut rec = e.recorder();
    let err = sampler.record(&mut rec, &wrong, &ok, &[]).unwrap_err();
    assert_eq!(err.code(), "SHAPE");
}
