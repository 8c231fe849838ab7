//! RoPE and the embedding gathers against the f64 oracle, over segmented tables.

use super::*;

#[test]
fn rope_matches_oracle() {
    let e = engine();
    let mut r = Rand::new(31);
    for layout in [RopeLayout::Neox, RopeLayout::Normal] {
        for &(tokens, heads, head_dim, rot) in &[
            (1, 1, 2, 2),
            (3, 4, 64, 64),
            (7, 8, 128, 128),
            (5, 3, 256, 256),
            (4, 2, 64, 32),
            (13, 1, 80, 80),
        ] {
            for base in [10_000.0, 1_000_000.0, 500.0] {
                let x = r.vec(tokens * heads * head_dim, -2.0, 2.0);
                let positions: Vec<u32> = (0..tokens).map(|_| r.range(0, 40_000) as u32).collect();
                let xt = e.upload_f32(&[tokens, heads, head_dim], &x).unwrap();
                let want = oracle::rope(
                    &x,
                    heads,
                    head_dim,
                    rot,
                    &positions,
                    base,
                    layout == RopeLayout::Neox,
                );
                let opts = ops::RopeOptions {
                    layout,
                    base,
                    rot_dims: Some(rot),
                };
                let spec = RopeSpec {
                    layout,
                    tokens: tokens as u64,
                    heads: heads as u64,
                    head_dim: head_dim as u64,
                    rot: rot as u64,
                };
                let mut configs = vec![None];
                configs.extend(spec.space(e.profile()).into_iter().map(Some));
                for cfg in configs {
                    let label = format!("rope {layout:?} t{tokens} h{heads} d{head_dim} rot{rot} base{base} {cfg:?}");
                    let got = run(e, |rec| {
                        ops::rope(&xt, &positions, &opts)
                            .config_opt(cfg.clone())
                            .record(rec)
                    });
                    assert_close(&label, r.seed, &got, &want, 1e-6, 1e-5, NMSE_ELEMENTWISE);
                }
            }
        }
    }
}

#[test]
fn embedding_gathers_from_every_segment() {
    let mut r = Rand::new(41);
    for (e, vocab, dim) in [
        (engine(), 1000, 64),
        (engine(), 37, 13),
        (small_binding_engine(), 1000, 64),
        (small_binding_engine(), 2001, 13),
    ] {
        let table = r.vec(vocab * dim, -1.0, 1.0);
        let tt = e.upload_f32(&[vocab, dim], &table).unwrap();
        let mut ids = r.ids(50, vocab as u32);
        ids.extend([0, vocab as u32 - 1]);
        let want = oracle::embedding(&table, dim, &ids, 1.5);
        let spec = EmbeddingSpec {
            n: ids.len() as u64,
            dim: dim as u64,
            add_rows: 0,
        };
        let mut configs = vec![None];
        configs.extend(spec.space(e.profile()).into_iter().map(Some));
        for cfg in configs {
            let got = run(e, |rec| {
                ops::embedding(&tt, &ids, 1.5)
                    .config_opt(cfg.clone())
                    .record(rec)
            });
            assert_close(
                &format!(
                    "embedding v{vocab} d{dim} segs {} {cfg:?}",
                    tt.segments().len()
                ),
                r.seed,
                &got,
                &want,
                0.0,
                1e-7,
                NMSE_ELEMENTWISE,
            );
        }
    }
    assert!(
        small_binding_engine()
            .upload_f32(&[1000, 64], &vec![1.0; 64000])
            .unwrap()
            .segments()
            .len()
            >= 3
    );
}

/// `ops::embedding_add`: the gather plus row `i % period` of a second table, on every config,
/// from one buffer and from a table split over segments; and its refusals.
#[test]
fn embedding_add_matches_oracle_on_every_config() {
    let mut r = Rand::new(42);
    for (e, vocab, dim) in [
        (engine(), 1000, 64),
        (engine(), 37, 13),
        (small_binding_engine(), 2001, 13),
    ] {
        let (rows, period) = (11usize, 7usize);
        let table = r.vec(vocab * dim, -1.0, 1.0);
        let add = r.vec(rows * dim, -1.0, 1.0);
        let tt = e.upload_f32(&[vocab, dim], &table).unwrap();
        let at = e.upload_f32(&[rows, dim], &add).unwrap();
        let mut ids = r.ids(40, vocab as u32);
        ids.extend([0, vocab as u32 - 1]);
        let want: Vec<f64> = oracle::embedding(&table, dim, &ids, 0.5)
            .iter()
            .enumerate()
            .map(|(i, &v)| v + add[((i / dim) % period) * dim + i % dim] as f64)
            .collect();
        let spec = EmbeddingSpec {
            n: ids.len() as u64,
            dim: dim as u64,
            add_rows: period as u64,
        };
        let mut configs = vec![None];
        configs.extend(spec.space(e.profile()).into_iter().map(Some));
        for cfg in configs {
            let got = run(e, |rec| {
                ops::embedding_add(&tt, &ids, 0.5, &at, period)
                    .config_opt(cfg.clone())
                    .record(rec)
            });
            let label = format!(
                "embedding_add v{vocab} d{dim} segs {} {cfg:?}",
                tt.segments().len()
            );
            assert_close(&label, r.seed, &got, &want, 1e-6, 1e-6, NMSE_ELEMENTWISE);
        }
    }
    let e = engine();
    let table = e.upload_f32(&[4, 3], &[1.0; 12]).unwrap();
    let add = e.upload_f32(&[2, 3], &[1.0; 6]).unwrap();
    let narrow = e.upload_f32(&[2, 2], &[1.0; 4]).unwrap();
    let mut rec = e.recorder();
    for (what, t, period) in [
        ("period past the added rows", &add, 3),
        ("period 0", &add, 0),
        ("added table of another width", &narrow, 2),
    ] {
        let err = ops::embedding_add(&table, &[1, 2], 1.0, t, period)
            .record(&mut rec)
            .expect_err(what);
        assert_eq!(err.code(), "SHAPE", "{what}: {err}");
    }
    let err = ops::embedding_add(&table, &[4], 1.0, &add, 2)
        .record(&mut rec)
        .unwrap_err();
    assert_eq!(err.code(), "INVALID_ARGUMENT", "{err}");
    assert_eq!(rec.stats.dispatches, 0);
}
