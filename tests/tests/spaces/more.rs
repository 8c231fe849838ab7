//! The spaces of the read probe, the quantized matmul, the sampler, neighborhood and
//! block-sparse attention: every config renders and validates.

use super::*;

#[test]
fn read_probe_space_validates() {
    use webjit_jit::kernels::bandwidth::ReadProbeSpec;
    sweep(
        &ReadProbeSpec {
            bytes: 1 << 20,
            groups: 1024,
        },
        2,
    );
}

#[test]
fn qmatmul_space_validates() {
    use webjit_jit::kernels::qmatmul::QMatmulSpec;
    use webjit_jit::quant::GgmlType;
    for format in GgmlType::ALL {
        sweep(
            &QMatmulSpec {
                format,
                m: 512,
                n: 4096,
                k: 512,
                rows: 4096,
            },
            20,
        );
    }
}

#[test]
fn sample_spaces_validate() {
    use webjit_jit::kernels::sample::{SampleSpec, SampleStage};
    for stage in [
        SampleStage::Penalize,
        SampleStage::Partial,
        SampleStage::Final,
    ] {
        let min = if stage == SampleStage::Penalize { 2 } else { 8 };
        sweep(&SampleSpec { stage, n: 262144 }, min);
    }
}

#[test]
fn neighborhood_space_validates() {
    use webjit_jit::kernels::neighborhood::NeighborhoodSpec;
    let cases = [
        NeighborhoodSpec::new(1, 4, &[300], 64, &[7], &[2], &[false], true),
        NeighborhoodSpec::new(2, 4, &[64, 64], 32, &[7, 7], &[1, 2], &[false, true], false),
        NeighborhoodSpec::new(
            1,
            2,
            &[16, 16, 16],
            64,
            &[3, 5, 3],
            &[1, 1, 2],
            &[true, false, false],
            true,
        ),
        NeighborhoodSpec::new(
            1,
            4,
            &[128, 128],
            128,
            &[13, 13],
            &[1, 1],
            &[false, false],
            false,
        ),
    ];
    for spec in &cases {
        let n = sweep(spec, 3);
        assert!(n >= 12, "{spec:?}: only {n} configs in all");
    }
    let p = DeviceProfile::lavapipe_like();
    for bad in [
        NeighborhoodSpec::new(1, 1, &[10], 64, &[4], &[1], &[false], false),
        NeighborhoodSpec::new(1, 1, &[10], 64, &[5], &[3], &[false], false),
        NeighborhoodSpec::new(1, 1, &[10], 66, &[5], &[1], &[false], false),
        NeighborhoodSpec::new(1, 1, &[10, 10], 64, &[5], &[1], &[false], false),
    ] {
        let err = bad.check(&p, &bad.default_config(&p)).unwrap_err();
        assert!(err.to_string().contains("unsupported problem"), "{err}");
    }
}

#[test]
fn block_sparse_spaces_validate() {
    use webjit_jit::kernels::block_sparse::{BlockLayout, BsAttnSpec, BsStage, BsStageSpec};
    for (head_dim, grid, block) in [
        (64, [1, 1, 4096], [1, 1, 64]),
        (128, [1, 32, 32], [1, 8, 8]),
        (32, [4, 6, 10], [2, 3, 4]),
        (256, [1, 1, 100], [1, 1, 7]),
    ] {
        let layout = BlockLayout {
            batch: 2,
            seq: grid.iter().product(),
            n_heads: 8,
            n_kv_heads: 2,
            head_dim,
            grid,
            block,
        };
        for gather in [false, true] {
            let n = sweep(
                &BsAttnSpec {
                    layout: layout.clone(),
                    gather,
                },
                3,
            );
            assert!(
                n >= 9,
                "block_sparse d{head_dim} gather={gather}: only {n} configs"
            );
        }
        for stage in [
            BsStage::Means,
            BsStage::Gate,
            BsStage::Select,
            BsStage::Merge,
        ] {
            sweep(
                &BsStageSpec {
                    stage,
                    layout: layout.clone(),
                    rows: layout.seq,
                    src_heads: 2,
                },
                4,
            );
        }
    }
    let p = DeviceProfile::lavapipe_like();
    let bad = BsAttnSpec {
        layout: BlockLayout {
            batch: 1,
            seq: 4096,
            n_heads: 1,
            n_kv_heads: 1,
            head_dim: 64,
            grid: [1, 1, 4096],
            block: [1, 1, 2],
        },
        gather: false,
    };
    let err = bad.check(&p, &bad.default_config(&p)).unwrap_err();
    assert!(err.to_string().contains("blocks exceed"), "{err}");
}
