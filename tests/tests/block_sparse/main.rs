//! Block-sparse attention (MoBA / VMoBA / static masks) against the f64 oracle: per-query and
//! query-block top-k and threshold selection, global selection, 1-D / 2-D / 3-D partitions,
//! strided / fixed / user masks, causal and not; the returned selection equals the oracle's;
//! all blocks selected equals dense attention; reruns are bitwise equal; every config of every
//! space runs; bad arguments give typed errors. Per-query selections run both the gather path
//! (default) and the query-major union path.

use webjit_engine::jit::kernels::block_sparse::{BlockLayout, BsAttnSpec, BsStage, BsStageSpec};
use webjit_engine::jit::KernelSpec;
use webjit_engine::ops::{
    self, AttentionOptions, BlockMask, BlockSelect, Granularity, Partition, SparseConfigs,
    SparseOptions,
};
use webjit_engine::{Error, Tensor};
use webjit_tests::oracle_attention::{attention as dense_oracle, AttnProblem};
use webjit_tests::oracle_block_sparse::{fixed_mask, strided_mask, BsProblem, BsSelect};
use webjit_tests::{assert_close, engine, Rand, NMSE_ATTENTION};

mod sweeps;

#[derive(Clone, Debug)]
struct Case {
    batch: usize,
    heads: usize,
    kv_heads: usize,
    d: usize,
    grid: [usize; 3],
    block: [usize; 3],
    causal: bool,
    select: BlockSelect,
    granularity: Granularity,
    global: bool,
}

fn seq1d(seq: usize, block: usize, select: BlockSelect, causal: bool) -> Case {
    Case {
        batch: 1,
        heads: 2,
        kv_heads: 1,
        d: 32,
        grid: [1, 1, seq],
        block: [1, 1, block],
        causal,
        select,
        granularity: Granularity::Query,
        global: false,
    }
}

fn options(c: &Case) -> SparseOptions {
    let [t, h, w] = c.grid.map(|x| x as u32);
    SparseOptions {
        block: c.block.map(|x| x as u32),
        select: c.select.clone(),
        partition: if t > 1 {
            Partition::D3 { t, h, w }
        } else if h > 1 {
            Partition::D2 { h, w }
        } else {
            Partition::D1
        },
        causal: c.causal,
        global: c.global,
        granularity: c.granularity,
        scale: None,
        return_selection: true,
    }
}

fn problem(c: &Case) -> BsProblem {
    let mut p = BsProblem {
        batch: c.batch,
        n_heads: c.heads,
        n_kv_heads: c.kv_heads,
        head_dim: c.d,
        grid: c.grid,
        block: c.block,
        causal: c.causal,
        scale: (1.0 / (c.d as f32).sqrt()) as f64,
        select: BsSelect::TopK(0),
        per_query: c.granularity == Granularity::Query,
        global: c.global,
    };
    let nb = p.n_blocks();
    p.select = match &c.select {
        BlockSelect::TopK(k) => BsSelect::TopK(*k as usize),
        BlockSelect::Threshold(t) => BsSelect::Threshold(*t as f64),
        BlockSelect::Mask(m) => BsSelect::Static(m.data.iter().map(|&x| x == 1).collect()),
        BlockSelect::Strided { local, stride } => {
            BsSelect::Static(strided_mask(nb, *local as usize, *stride as usize))
        }
        BlockSelect::Fixed { chunk, summary } => {
            BsSelect::Static(fixed_mask(nb, *chunk as usize, *summary as usize))
        }
    };
    p
}

struct Inputs {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    qt: Tensor,
    kt: Tensor,
    vt: Tensor,
}

/// Random inputs whose top-k / threshold decisions are not near-ties (reseeds otherwise).
fn inputs(r: &mut Rand, c: &Case, p: &BsProblem) -> Inputs {
    let e = engine();
    let seq = p.seq();
    for _ in 0..50 {
        let q = r.vec(c.batch * seq * c.heads * c.d, -2.0, 2.0);
        let k = r.vec(c.batch * seq * c.kv_heads * c.d, -2.0, 2.0);
        let v = r.vec(c.batch * seq * c.kv_heads * c.d, -1.0, 1.0);
        if p.selection(&q, &k).min_gap <= 1e-3 {
            continue;
        }
        let qt = e.upload_f32(&[c.batch, seq, c.heads, c.d], &q).unwrap();
        let kt = e.upload_f32(&[c.batch, seq, c.kv_heads, c.d], &k).unwrap();
        let vt = e.upload_f32(&[c.batch, seq, c.kv_heads, c.d], &v).unwrap();
        return Inputs {
            q,
            k,
            v,
            qt,
            kt,
            vt,
        };
    }
    panic!("no well-separated inputs for {c:?} (seed {})", r.seed);
}

/// Runs `c` with each config set and checks the output and the returned selection.
fn check(r: &mut Rand, c: &Case, cfgs: &[SparseConfigs]) {
    let e = engine();
    let p = problem(c);
    let x = inputs(r, c, &p);
    let sel = p.selection(&x.q, &x.k);
    let want = p.attention(&sel, &x.q, &x.k, &x.v);
    let want_lists = sel.lists(p.n_blocks());
    for cfg in cfgs {
        let mut rec = e.recorder();
        let res = ops::block_sparse_attention(&x.qt, &x.kt, &x.vt, &options(c))
            .config(cfg.clone())
            .record(&mut rec)
            .unwrap();
        rec.submit().unwrap();
        let label = format!("block_sparse {c:?} cfg={cfg:?}");
        let got = e.read_f32(&res.out).unwrap();
        assert_close(&label, r.seed, &got, &want, 2e-5, 1e-4, NMSE_ATTENTION);
        let lists = res.selection.expect("selection requested").read(e).unwrap();
        assert_eq!(lists, want_lists, "{label}: selection (seed {})", r.seed);
    }
}

/// The defaults, and for per-query selections also the query-major (union) path.
fn default_cfg() -> Vec<SparseConfigs> {
    vec![
        SparseConfigs::default(),
        SparseConfigs {
            union_per_query: true,
            ..Default::default()
        },
    ]
}

#[test]
fn moba_top_k_per_query_matches_oracle() {
    let mut r = Rand::new(61);
    for causal in [true, false] {
        for (seq, block, k) in [(1, 1, 1), (37, 8, 2), (64, 16, 2), (50, 7, 3), (33, 32, 1)] {
            let mut c = seq1d(seq, block, BlockSelect::TopK(k), causal);
            if seq == 50 {
                (c.batch, c.heads, c.kv_heads) = (2, 4, 2);
            }
            check(&mut r, &c, &default_cfg());
        }
    }
}

#[test]
fn threshold_and_query_block_selection_match_oracle() {
    let mut r = Rand::new(62);
    for causal in [true, false] {
        for (gran, thr) in [
            (Granularity::Query, 0.5),
            (Granularity::Query, 0.9),
            (Granularity::QueryBlock, 0.6),
        ] {
            let mut c = seq1d(61, 8, BlockSelect::Threshold(thr), causal);
            c.granularity = gran;
            check(&mut r, &c, &default_cfg());
        }
        let mut c = seq1d(47, 6, BlockSelect::TopK(3), causal);
        c.granularity = Granularity::QueryBlock;
        check(&mut r, &c, &default_cfg());
    }
}

#[test]
fn global_selection_matches_oracle() {
    let mut r = Rand::new(63);
    for causal in [true, false] {
        for select in [BlockSelect::TopK(2), BlockSelect::Threshold(0.7)] {
            let mut c = seq1d(53, 8, select, causal);
            c.granularity = Granularity::QueryBlock;
            c.global = true;
            check(&mut r, &c, &default_cfg());
        }
    }
}

#[test]
fn grid_partitions_2d_3d_match_oracle() {
    let mut r = Rand::new(64);
    let grids: [([usize; 3], [usize; 3]); 3] = [
        ([1, 7, 9], [1, 3, 4]),
        ([1, 8, 8], [1, 4, 2]),
        ([3, 5, 6], [2, 2, 3]),
    ];
    for causal in [false, true] {
        for (grid, block) in grids {
            for (select, gran, global) in [
                (BlockSelect::TopK(2), Granularity::Query, false),
                (BlockSelect::Threshold(0.8), Granularity::QueryBlock, true),
            ] {
                let c = Case {
                    grid,
                    block,
                    granularity: gran,
                    global,
                    ..seq1d(1, 1, select, causal)
                };
                check(&mut r, &c, &default_cfg());
            }
        }
    }
}

#[test]
fn static_masks_match_oracle() {
    let mut r = Rand::new(65);
    let nb = 9; // 67 tokens in blocks of 8
    let user: Vec<u32> = (0..nb * nb)
        .map(|i| ((i * 7 + i / nb) % 3 == 0) as u32)
        .collect();
    for causal in [true, false] {
        for select in [
            BlockSelect::Strided {
                local: 2,
                stride: 3,
            },
            BlockSelect::Fixed {
                chunk: 3,
                summary: 1,
            },
            BlockSelect::Mask(BlockMask {
                q_blocks: nb,
                k_blocks: nb,
                data: user.clone(),
            }),
        ] {
            check(&mut r, &seq1d(67, 8, select, causal), &default_cfg());
        }
    }
    // A 2-D grid with a strided mask.
    let c = Case {
        grid: [1, 6, 10],
        block: [1, 3, 3],
        ..seq1d(
            1,
            1,
            BlockSelect::Strided {
                local: 1,
                stride: 2,
            },
            true,
        )
    };
    check(&mut r, &c, &default_cfg());
}

/// Dense attention through the existing fused op and its oracle.
fn dense(x: &Inputs, c: &Case) -> (Vec<f32>, Vec<f64>) {
    let e = engine();
    let seq: usize = c.grid.iter().product();
    let mut rec = e.recorder();
    let opts = AttentionOptions {
        causal: c.causal,
        ..Default::default()
    };
    let out = ops::attention(&x.qt, &x.kt, &x.vt, &opts)
        .record(&mut rec)
        .unwrap();
    rec.submit().unwrap();
    let p = AttnProblem {
        batch: c.batch,
        seq_q: seq,
        seq_kv: seq,
        n_heads: c.heads,
        n_kv_heads: c.kv_heads,
        head_dim: c.d,
        causal: c.causal,
        window: None,
        scale: (1.0 / (c.d as f32).sqrt()) as f64,
        softcap: None,
        kv_lens: vec![seq; c.batch],
        q_pos0: 0,
    };
    (
        e.read_f32(&out).unwrap(),
        dense_oracle(&p, &x.q, &x.k, &x.v),
    )
}

#[test]
fn all_blocks_selected_equals_dense_attention() {
    let e = engine();
    let mut r = Rand::new(66);
    for causal in [false, true] {
        for (select, gran, global) in [
            (BlockSelect::TopK(100), Granularity::Query, false),
            (BlockSelect::Threshold(1.0), Granularity::Query, false),
            (BlockSelect::TopK(100), Granularity::QueryBlock, true),
            (BlockSelect::Threshold(1.0), Granularity::QueryBlock, false),
        ] {
            let mut c = seq1d(45, 8, select, causal);
            (c.heads, c.kv_heads, c.granularity, c.global) = (4, 2, gran, global);
            let x = inputs(&mut r, &c, &problem(&c));
            let mut rec = e.recorder();
            let res = ops::block_sparse_attention(&x.qt, &x.kt, &x.vt, &options(&c))
                .record(&mut rec)
                .unwrap();
            rec.submit().unwrap();
            let got = e.read_f32(&res.out).unwrap();
            let (fused, want) = dense(&x, &c);
            let label = format!("all blocks {c:?}");
            assert_close(&label, r.seed, &got, &want, 2e-5, 1e-4, NMSE_ATTENTION);
            let fused64: Vec<f64> = fused.iter().map(|&x| x as f64).collect();
            assert_close(&label, r.seed, &got, &fused64, 2e-5, 1e-4, NMSE_ATTENTION);
        }
    }
}

#[test]
fn reruns_are_bitwise_deterministic() {
    let e = engine();
    let mut r = Rand::new(67);
    let mut c = seq1d(70, 8, BlockSelect::Threshold(0.6), true);
    c.batch = 2;
    let x = inputs(&mut r, &c, &problem(&c));
    let run = || {
        let mut rec = e.recorder();
        let res = ops::block_sparse_attention(&x.qt, &x.kt, &x.vt, &options(&c))
            .record(&mut rec)
            .unwrap();
        rec.submit().unwrap();
        let sel = res.selection.unwrap().read(e).unwrap();
        (e.read_f32(&res.out).unwrap(), sel)
    };
    let (a, sa) = run();
    let (b, sb) = run();
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    assert_eq!(sa, sb);
}

#[test]
fn reused_buffers_match_oracle_on_new_inputs() {
    // The bench and any decoding loop record into one SparseBuffers many times: per-block
    // query counts must start from zero on every call.
    let e = engine();
    let mut r = Rand::new(70);
    for (select, gran) in [
        (BlockSelect::TopK(3), Granularity::Query),
        (BlockSelect::Threshold(0.7), Granularity::Query),
        (BlockSelect::TopK(2), Granularity::QueryBlock),
    ] {
        let mut c = seq1d(58, 8, select, true);
        c.granularity = gran;
        let p = problem(&c);
        let first = inputs(&mut r, &c, &p);
        let l = ops::block_sparse_attention(&first.qt, &first.kt, &first.vt, &options(&c))
            .spec()
            .unwrap();
        let bufs = ops::SparseBuffers::new(e, &l, &options(&c), false).unwrap();
        assert_eq!(bufs.gathers(), gran == Granularity::Query);
        for x in [first, inputs(&mut r, &c, &p)] {
            let mut rec = e.recorder();
            ops::block_sparse_attention(&x.qt, &x.kt, &x.vt, &options(&c))
                .buffers(&bufs)
                .config(SparseConfigs::default().clone())
                .record(&mut rec)
                .map(|_| ())
                .unwrap();
            rec.submit().unwrap();
            let sel = p.selection(&x.q, &x.k);
            let want = p.attention(&sel, &x.q, &x.k, &x.v);
            let got = e.read_f32(&bufs.out).unwrap();
            let label = format!("reused buffers {c:?}");
            assert_close(&label, r.seed, &got, &want, 2e-5, 1e-4, NMSE_ATTENTION);
        }
    }
}
