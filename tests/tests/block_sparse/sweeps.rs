//! Every config of the attend, gather and stage kernels against the oracle, split rows,
//! and typed errors for bad arguments.

use super::*;

/// Per-query top-k with a partial last block, tile edges +-1 around 16 and 32 queries; the
/// layout of its spaces.
fn sweep_case() -> (Case, BlockLayout) {
    let mut c = seq1d(49, 16, BlockSelect::TopK(2), true);
    c.d = 16;
    let layout = BlockLayout {
        batch: 1,
        seq: 49,
        n_heads: 2,
        n_kv_heads: 1,
        head_dim: 16,
        grid: [1, 1, 49],
        block: [1, 1, 16],
    };
    (c, layout)
}

// The two kernels' spaces run in separate tests, so their compiles use both cores.
#[test]
fn every_attend_config_matches_oracle() {
    let mut r = Rand::new(68);
    let (c, layout) = sweep_case();
    let space = BsAttnSpec {
        layout,
        gather: false,
    }
    .space(engine().profile());
    assert!(space.len() >= 6, "attend space: {}", space.len());
    let cfgs: Vec<SparseConfigs> = space
        .into_iter()
        .map(|a| SparseConfigs {
            attend: Some(a),
            union_per_query: true,
            ..Default::default()
        })
        .collect();
    check(&mut r, &c, &cfgs);
}

#[test]
fn every_gather_and_stage_config_matches_oracle() {
    let e = engine();
    let mut r = Rand::new(69);
    let (c, layout) = sweep_case();
    let prof = e.profile();
    let gather = BsAttnSpec {
        layout: layout.clone(),
        gather: true,
    }
    .space(prof);
    assert!(gather.len() >= 6, "gather space: {}", gather.len());
    let mut cfgs: Vec<SparseConfigs> = gather
        .into_iter()
        .map(|g| SparseConfigs {
            gather: Some(g),
            ..Default::default()
        })
        .collect();
    let stage = |stage| {
        BsStageSpec {
            stage,
            layout: layout.clone(),
            rows: layout.seq,
            src_heads: 1,
        }
        .space(prof)
    };
    let stages = [
        BsStage::Means,
        BsStage::Gate,
        BsStage::Select,
        BsStage::Merge,
    ]
    .map(stage);
    assert!(stages.iter().all(|s| s.len() >= 4));
    let [means, gates, selects, merges] = &stages;
    for (((m, g), s), mg) in means.iter().zip(gates).zip(selects).zip(merges) {
        cfgs.push(SparseConfigs {
            means: Some(m.clone()),
            gate: Some(g.clone()),
            select: Some(s.clone()),
            merge: Some(mg.clone()),
            ..Default::default()
        });
    }
    check(&mut r, &c, &cfgs);
    // The query-block means kernel runs on q only for query-block rows.
    let mut c = seq1d(40, 8, BlockSelect::TopK(2), false);
    c.granularity = Granularity::QueryBlock;
    let means: Vec<SparseConfigs> = stages[0]
        .iter()
        .map(|m| SparseConfigs {
            means: Some(m.clone()),
            ..Default::default()
        })
        .collect();
    check(&mut r, &c, &means);
}

#[test]
fn split_rows_match_oracle() {
    // Threads per row > 1 (wide heads) only enter the spaces from head dim 64.
    let mut r = Rand::new(71);
    let mut c = seq1d(45, 16, BlockSelect::TopK(2), true);
    c.d = 64;
    let layout = BlockLayout {
        batch: 1,
        seq: 45,
        n_heads: 2,
        n_kv_heads: 1,
        head_dim: 64,
        grid: [1, 1, 45],
        block: [1, 1, 16],
    };
    let split = |gather| {
        BsAttnSpec {
            layout: layout.clone(),
            gather,
        }
        .space(engine().profile())
        .into_iter()
        .filter(|g| g.tpr > 1)
    };
    let cfgs: Vec<SparseConfigs> = split(true)
        .map(|g| SparseConfigs {
            gather: Some(g),
            ..Default::default()
        })
        .chain(split(false).map(|a| SparseConfigs {
            attend: Some(a),
            union_per_query: true,
            ..Default::default()
        }))
        .collect();
    assert!(cfgs.len() >= 6, "split-row configs: {}", cfgs.len());
    check(&mut r, &c, &cfgs);
}

fn err_of(c: &Case, seq_override: Option<usize>) -> Error {
    let e = engine();
    let seq = seq_override.unwrap_or(c.grid.iter().product());
    let t = e
        .upload_f32(&[1, seq, 2, 32], &vec![0.5; seq * 64])
        .unwrap();
    let kt = e
        .upload_f32(&[1, seq, 1, 32], &vec![0.5; seq * 32])
        .unwrap();
    let mut rec = e.recorder();
    ops::block_sparse_attention(&t, &kt, &kt, &options(c))
        .record(&mut rec)
        .unwrap_err()
}

#[test]
fn bad_arguments_give_typed_errors() {
    let msg = |err: Error, want: &str| {
        let s = err.to_string();
        assert!(s.contains(want), "want `{want}` in: {s}");
        err
    };
    let base = seq1d(64, 8, BlockSelect::TopK(2), true);
    let invalid = |e: &Error| matches!(e, Error::InvalidArgument { .. });
    let shape = |e: &Error| matches!(e, Error::Shape { .. });
    let e = msg(
        err_of(&seq1d(64, 0, BlockSelect::TopK(2), true), None),
        "zero extent",
    );
    assert!(invalid(&e));
    let mut big = base.clone();
    big.block = [1, 1, 65];
    assert!(invalid(&msg(err_of(&big, None), "larger than the grid")));
    assert!(invalid(&msg(
        err_of(&seq1d(64, 8, BlockSelect::TopK(0), true), None),
        "top_k must be >= 1"
    )));
    for t in [0.0, -0.5, 1.5, f32::NAN] {
        assert!(invalid(&msg(
            err_of(&seq1d(64, 8, BlockSelect::Threshold(t), true), None),
            "threshold must be in (0, 1]"
        )));
    }
    let mask = BlockMask {
        q_blocks: 8,
        k_blocks: 7,
        data: vec![1; 56],
    };
    assert!(shape(&msg(
        err_of(&seq1d(64, 8, BlockSelect::Mask(mask), true), None),
        "block mask is [8, 7]"
    )));
    let mask = BlockMask {
        q_blocks: 8,
        k_blocks: 8,
        data: vec![2; 64],
    };
    assert!(invalid(&msg(
        err_of(&seq1d(64, 8, BlockSelect::Mask(mask), true), None),
        "must be 0 or 1"
    )));
    let grid = Case {
        grid: [1, 8, 9],
        block: [1, 2, 2],
        ..base.clone()
    };
    assert!(shape(&msg(err_of(&grid, Some(64)), "holds 72 tokens")));
    let mut global = base.clone();
    global.global = true;
    assert!(invalid(&msg(
        err_of(&global, None),
        "Granularity::QueryBlock"
    )));
    let too_many = seq1d(2048, 1, BlockSelect::TopK(2), true);
    assert!(matches!(
        msg(err_of(&too_many, None), "blocks exceed"),
        Error::Jit(_)
    ));
}
