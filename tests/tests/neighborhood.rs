//! Fused neighborhood attention against the f64 oracle (explicit NATTEN neighbour mask + dense
//! masked softmax): 1-D, 2-D and 3-D, dilations 1/2/3, per-axis causal mixes, relative
//! positional bias on and off, axis lengths 1 and primes, every config of each rank's space;
//! plus invariants (full window = dense attention, dilation groups independent, bit-identical
//! reruns), random problems with random configs, and the argument errors.

use webjit_engine::jit::kernels::neighborhood::{NeighborhoodConfig, NeighborhoodSpec};
use webjit_engine::jit::KernelSpec;
use webjit_engine::ops::{self, NaOptions};
use webjit_engine::{Engine, Error, Tensor};
use webjit_tests::oracle_attention::{attention as dense_oracle, AttnProblem};
use webjit_tests::oracle_neighborhood::{neighborhood as oracle, NaProblem};
use webjit_tests::{assert_close, engine, small_binding_engine, Rand, NMSE_ATTENTION};

#[derive(Clone, Debug)]
struct Case {
    batch: usize,
    heads: usize,
    dims: Vec<usize>,
    d: usize,
    kernel: Vec<usize>,
    dilation: Vec<usize>,
    causal: Vec<bool>,
    rpb: bool,
    /// None = the default 1/sqrt(d).
    scale: Option<f32>,
}

fn case(dims: &[usize], kernel: &[usize], dilation: &[usize], causal: &[bool], rpb: bool) -> Case {
    Case {
        batch: 1,
        heads: 2,
        dims: dims.to_vec(),
        d: 32,
        kernel: kernel.to_vec(),
        dilation: dilation.to_vec(),
        causal: causal.to_vec(),
        rpb,
        scale: None,
    }
}

/// Random q, k, v [batch, heads, dims.., d] and rpb [heads, 2k-1 ..] of a case.
struct Inputs {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    rpb: Option<Vec<f32>>,
}

impl Case {
    fn shape(&self) -> Vec<usize> {
        let mut s = vec![self.batch, self.heads];
        s.extend(&self.dims);
        s.push(self.d);
        s
    }
    fn numel(&self) -> usize {
        self.shape().iter().product()
    }
    fn problem(&self) -> NaProblem {
        NaProblem {
            batch: self.batch,
            heads: self.heads,
            dims: self.dims.clone(),
            head_dim: self.d,
            kernel: self.kernel.clone(),
            dilation: self.dilation.clone(),
            causal: self.causal.clone(),
            scale: self
                .scale
                .map_or(1.0 / (self.d as f64).sqrt(), |x| x as f64),
        }
    }
    fn inputs(&self, r: &mut Rand) -> Inputs {
        let n = self.numel();
        Inputs {
            q: r.vec(n, -2.0, 2.0),
            k: r.vec(n, -2.0, 2.0),
            v: r.vec(n, -1.0, 1.0),
            rpb: self.rpb.then(|| r.vec(self.problem().rpb_len(), -1.0, 1.0)),
        }
    }
    fn spec(&self) -> NeighborhoodSpec {
        let u = |x: &[usize]| x.iter().map(|&v| v as u32).collect::<Vec<_>>();
        let dims: Vec<u64> = self.dims.iter().map(|&v| v as u64).collect();
        NeighborhoodSpec::new(
            self.batch as u64,
            self.heads as u64,
            &dims,
            self.d as u64,
            &u(&self.kernel),
            &u(&self.dilation),
            &self.causal,
            self.rpb,
        )
    }
    /// The default config, and the same with two queries per invocation where legal.
    fn default_and_rows2(&self) -> Vec<Option<NeighborhoodConfig>> {
        let p = engine().profile();
        let spec = self.spec();
        let d = spec.default_config(p);
        let r2 = NeighborhoodConfig {
            rows: 2,
            ..d.clone()
        };
        let mut out = vec![None];
        if spec.check(p, &r2).is_ok() {
            out.push(Some(r2));
        }
        out
    }
    fn rpb_shape(&self) -> Vec<usize> {
        let mut s = vec![self.heads];
        s.extend(self.kernel.iter().map(|&k| 2 * k - 1));
        s
    }
    fn options(&self, e: &Engine, rpb: Option<&[f32]>) -> NaOptions {
        NaOptions {
            kernel: self.kernel.iter().map(|&k| k as u32).collect(),
            dilation: self.dilation.iter().map(|&k| k as u32).collect(),
            causal: self.causal.clone(),
            rpb: rpb.map(|r| e.upload_f32(&self.rpb_shape(), r).unwrap()),
            scale: self.scale,
        }
    }
}

/// Runs the op on uploaded inputs with one config (None = default) and reads the output.
fn run(c: &Case, x: &Inputs, cfg: Option<NeighborhoodConfig>) -> Vec<f32> {
    let e = engine();
    let shape = c.shape();
    let q = e.upload_f32(&shape, &x.q).unwrap();
    let k = e.upload_f32(&shape, &x.k).unwrap();
    let v = e.upload_f32(&shape, &x.v).unwrap();
    let opts = c.options(e, x.rpb.as_deref());
    let mut rec = e.recorder();
    let out = ops::neighborhood_attention(&q, &k, &v, &opts)
        .config_opt(cfg)
        .record(&mut rec)
        .unwrap();
    rec.submit().unwrap();
    e.read_f32(&out).unwrap()
}

fn check(r: &mut Rand, c: &Case, configs: &[Option<NeighborhoodConfig>]) {
    let x = c.inputs(r);
    let want = oracle(&c.problem(), &x.q, &x.k, &x.v, x.rpb.as_deref());
    for cfg in configs {
        let got = run(c, &x, cfg.clone());
        let label = format!("neighborhood {c:?} cfg={cfg:?}");
        assert_close(&label, r.seed, &got, &want, 2e-5, 1e-4, NMSE_ATTENTION);
    }
}

#[test]
fn one_d_matches_oracle() {
    let mut r = Rand::new(61);
    let (f, t) = (false, true);
    for c in [
        case(&[1], &[1], &[1], &[f], f),
        case(&[1], &[1], &[1], &[t], t),
        case(&[13], &[5], &[2], &[f], f),
        case(&[31], &[7], &[3], &[t], f),
        case(&[67], &[9], &[1], &[f], t),
        case(&[17], &[3], &[5], &[t], t),
        case(&[97], &[11], &[3], &[f], t),
    ] {
        check(&mut r, &c, &[None]);
    }
    // Smallest and larger head dims, and an explicit scale.
    for (d, scale) in [(4, None), (128, Some(0.3)), (64, Some(0.05))] {
        let c = Case {
            d,
            scale,
            ..case(&[29], &[9], &[2], &[false], true)
        };
        check(&mut r, &c, &[None]);
    }
}

#[test]
fn two_d_matches_oracle() {
    let mut r = Rand::new(62);
    let (f, t) = (false, true);
    for c in [
        case(&[1, 7], &[1, 3], &[1, 2], &[f, f], t),
        case(&[13, 11], &[5, 3], &[2, 1], &[f, f], t),
        case(&[9, 16], &[3, 5], &[3, 3], &[f, f], f),
        case(&[16, 17], &[7, 7], &[1, 1], &[t, f], f),
        case(&[5, 23], &[5, 7], &[1, 3], &[f, t], t),
        case(&[11, 9], &[3, 3], &[2, 2], &[t, t], t),
    ] {
        check(&mut r, &c, &c.default_and_rows2());
    }
    // Batch > 1, one head, a wider head dim.
    let c = Case {
        batch: 3,
        heads: 1,
        d: 64,
        ..case(&[7, 9], &[3, 5], &[2, 1], &[f, f], t)
    };
    check(&mut r, &c, &c.default_and_rows2());
}

#[test]
fn three_d_matches_oracle() {
    let mut r = Rand::new(63);
    let (f, t) = (false, true);
    for c in [
        case(&[5, 6, 7], &[3, 3, 5], &[1, 1, 1], &[f, f, f], f),
        case(&[4, 9, 8], &[3, 3, 3], &[1, 2, 2], &[t, f, f], t),
        case(&[3, 5, 11], &[1, 5, 3], &[3, 1, 3], &[f, t, t], t),
        case(&[1, 1, 13], &[1, 1, 5], &[1, 1, 2], &[f, f, f], f),
        case(&[7, 2, 5], &[3, 1, 5], &[2, 2, 1], &[t, t, f], t),
    ] {
        check(&mut r, &c, &c.default_and_rows2());
    }
}

#[test]
fn every_config_of_each_space_matches_oracle() {
    let e = engine();
    let mut r = Rand::new(64);
    let (f, t) = (false, true);
    // Lengths straddle the tile edges (8, 16, 32, 64 +-1 in group indices).
    for c in [
        case(&[131], &[7], &[2], &[f], t),
        case(&[17, 33], &[5, 3], &[1, 2], &[f, t], t),
        case(&[9, 9, 17], &[3, 3, 5], &[1, 2, 1], &[f, f, t], t),
    ] {
        let spec = c.spec();
        let space = spec.space(e.profile());
        assert!(space.len() >= 6, "{c:?}: only {} configs", space.len());
        let cfgs: Vec<_> = space.into_iter().map(Some).collect();
        check(&mut r, &c, &cfgs);
    }
}

/// q, k, v [batch, heads, n, d] -> [batch, n, heads, d], the layout of the dense oracle.
fn to_seq_major(x: &[f32], batch: usize, heads: usize, n: usize, d: usize) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    for b in 0..batch {
        for h in 0..heads {
            for t in 0..n {
                let src = ((b * heads + h) * n + t) * d;
                let dst = ((b * n + t) * heads + h) * d;
                out[dst..dst + d].copy_from_slice(&x[src..src + d]);
            }
        }
    }
    out
}

#[test]
fn full_window_equals_dense_attention() {
    let mut r = Rand::new(65);
    let (f, t) = (false, true);
    for (c, causal) in [
        (case(&[31], &[31], &[1], &[f], f), false),
        (case(&[23], &[23], &[1], &[t], f), true),
        (case(&[7, 9], &[7, 9], &[1, 1], &[f, f], f), false),
        (
            case(&[3, 5, 3], &[3, 5, 3], &[1, 1, 1], &[f, f, f], f),
            false,
        ),
    ] {
        let x = c.inputs(&mut r);
        let n: usize = c.dims.iter().product();
        let p = AttnProblem {
            batch: c.batch,
            seq_q: n,
            seq_kv: n,
            n_heads: c.heads,
            n_kv_heads: c.heads,
            head_dim: c.d,
            causal,
            window: None,
            scale: 1.0 / (c.d as f64).sqrt(),
            softcap: None,
            kv_lens: vec![n; c.batch],
            q_pos0: 0,
        };
        let sm = |x: &[f32]| to_seq_major(x, c.batch, c.heads, n, c.d);
        let dense = dense_oracle(&p, &sm(&x.q), &sm(&x.k), &sm(&x.v));
        let got = sm(&run(&c, &x, None));
        let label = format!("full window = dense {c:?}");
        assert_close(&label, r.seed, &got, &dense, 2e-5, 1e-4, NMSE_ATTENTION);
    }
}

#[test]
fn dilation_groups_are_independent() {
    let mut r = Rand::new(66);
    let c = case(&[12, 10], &[3, 3], &[2, 2], &[false, false], true);
    let x = c.inputs(&mut r);
    let before = run(&c, &x, None);
    // Perturb the keys and values of dilation group (0, 1): rows even, columns odd.
    let in_group = |t: usize| (t / 10).is_multiple_of(2) && !(t % 10).is_multiple_of(2);
    let mut y = Inputs {
        q: x.q.clone(),
        k: x.k.clone(),
        v: x.v.clone(),
        rpb: x.rpb.clone(),
    };
    let n = 120;
    for bh in 0..c.batch * c.heads {
        for t in (0..n).filter(|&t| in_group(t)) {
            for i in 0..c.d {
                let o = (bh * n + t) * c.d + i;
                y.k[o] = -y.k[o] * 1.5 + 0.25;
                y.v[o] = y.v[o] * 0.5 - 0.75;
            }
        }
    }
    let after = run(&c, &y, None);
    let mut changed = 0;
    for bh in 0..c.batch * c.heads {
        for t in 0..n {
            let s = (bh * n + t) * c.d;
            let (a, b) = (&before[s..s + c.d], &after[s..s + c.d]);
            if in_group(t) {
                changed += (a != b) as usize;
            } else {
                assert_eq!(
                    a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    b.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    "query {t} of head {bh} is outside the perturbed group but changed"
                );
            }
        }
    }
    // 30 queries per head in the group; every one of them must see the perturbation.
    assert_eq!(
        changed,
        30 * c.batch * c.heads,
        "perturbed group outputs unchanged"
    );
    // And the perturbed run is still right.
    let want = oracle(&c.problem(), &y.q, &y.k, &y.v, y.rpb.as_deref());
    assert_close(
        "perturbed",
        r.seed,
        &after,
        &want,
        2e-5,
        1e-4,
        NMSE_ATTENTION,
    );
}

#[test]
fn reruns_are_bit_identical() {
    let mut r = Rand::new(67);
    let c = case(
        &[6, 7, 9],
        &[3, 5, 3],
        &[2, 1, 3],
        &[false, true, false],
        true,
    );
    let x = c.inputs(&mut r);
    let a = run(&c, &x, None);
    let b = run(&c, &x, None);
    assert!(
        a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
        "reruns differ"
    );
}

fn expect_err(
    shape: &[usize],
    k_shape: Option<&[usize]>,
    opts: NaOptions,
    want_shape_err: bool,
    needle: &str,
) {
    let e = engine();
    let n: usize = shape.iter().product();
    let q = e.upload_f32(shape, &vec![0.5; n]).unwrap();
    let ks = k_shape.unwrap_or(shape);
    let k: Tensor = e.upload_f32(ks, &vec![0.5; ks.iter().product()]).unwrap();
    let mut rec = e.recorder();
    let err = ops::neighborhood_attention(&q, &k, &q, &opts)
        .record(&mut rec)
        .err()
        .unwrap_or_else(|| panic!("{needle}: bad arguments accepted"));
    let kind_ok = match err {
        Error::Shape { .. } => want_shape_err,
        Error::InvalidArgument { .. } => !want_shape_err,
        _ => false,
    };
    assert!(kind_ok, "{needle}: wrong error kind: {err}");
    assert!(err.to_string().contains(needle), "{needle}: {err}");
}

#[test]
fn bad_arguments_give_typed_errors() {
    let e = engine();
    let na = |kernel: &[u32], dilation: &[u32]| NaOptions {
        kernel: kernel.to_vec(),
        dilation: dilation.to_vec(),
        ..Default::default()
    };
    let s2 = [1, 2, 9, 10, 8];
    expect_err(&s2, None, na(&[3, 4], &[]), false, "must be odd");
    expect_err(
        &s2,
        None,
        na(&[11, 3], &[]),
        false,
        "larger than the axis length 9",
    );
    expect_err(
        &s2,
        None,
        na(&[3, 3], &[1, 4]),
        false,
        "dilation 4 of axis 1",
    );
    expect_err(&s2, None, na(&[3, 3], &[0, 1]), false, "dilation of axis 0");
    expect_err(&s2, None, na(&[3], &[]), true, "kernel has 1 entries");
    expect_err(&s2, None, na(&[3, 3], &[1]), true, "dilation has 1 entries");
    expect_err(
        &s2,
        Some(&[1, 2, 9, 9, 8]),
        na(&[3, 3], &[]),
        true,
        "same shape",
    );
    expect_err(&[1, 2, 8], None, na(&[], &[]), true, "1 to 3 token axes");
    expect_err(&[1, 2, 9, 6], None, na(&[3], &[]), true, "head dim 6");
    let bad_rpb = NaOptions {
        rpb: Some(e.upload_f32(&[2, 5, 4], &[0.1; 40]).unwrap()),
        ..na(&[3, 3], &[])
    };
    expect_err(
        &s2,
        None,
        bad_rpb,
        true,
        "rpb must be [heads, 2k-1 per axis] = [2, 5, 5]",
    );
    let nan_scale = NaOptions {
        scale: Some(f32::NAN),
        ..na(&[3, 3], &[])
    };
    expect_err(&s2, None, nan_scale, false, "scale must be finite");
    let causal_len = NaOptions {
        causal: vec![true],
        ..na(&[3, 3], &[])
    };
    expect_err(&s2, None, causal_len, true, "causal has 1 entries");
}

#[test]
fn split_tensors_are_rejected() {
    // 64 KiB bindings split this 128 KiB q into segments; the kernel needs one binding each.
    let e = small_binding_engine();
    let shape = [1, 2, 64, 64, 4];
    let x = vec![0.5f32; 64 * 64 * 8];
    let q = e.upload_f32(&shape, &x).unwrap();
    assert!(q.is_segmented(), "test premise: q must be segmented");
    let opts = NaOptions {
        kernel: vec![3, 3],
        ..Default::default()
    };
    let mut rec = e.recorder();
    let Err(err) = ops::neighborhood_attention(&q, &q, &q, &opts).record(&mut rec) else {
        panic!("segmented q accepted");
    };
    assert!(
        matches!(err, Error::InvalidArgument { .. }) && err.to_string().contains("split over"),
        "{err}"
    );
}

#[test]
fn random_problems_match_oracle() {
    // Random ranks, lengths, kernels, dilations, causal flags and bias, each run with a random
    // config of its space.
    let mut r = Rand::new(68);
    let p = engine().profile();
    for _ in 0..12 {
        let rank = r.range(1, 4);
        let max_len = [0, 60, 14, 7][rank];
        let mut c = case(&[], &[], &[], &[], r.range(0, 2) == 1);
        c.heads = r.range(1, 3);
        c.d = 4 * r.range(1, 17);
        for _ in 0..rank {
            let len = r.range(1, max_len + 1);
            let dil = r.range(1, len.min(4) + 1);
            let max_k = len / dil; // >= 1
            let k = 2 * r.range(0, max_k.div_ceil(2)) + 1;
            c.dims.push(len);
            c.dilation.push(dil);
            c.kernel.push(k);
            c.causal.push(r.range(0, 3) == 0);
        }
        let space = c.spec().space(p);
        assert!(!space.is_empty(), "{c:?}: empty space");
        let cfg = space[r.range(0, space.len())].clone();
        check(&mut r, &c, &[Some(cfg)]);
    }
}
