//! No GPU needed: every config of every kernel's space renders and passes naga validation with
//! binding reflection, for the three synthetic device profiles.

use webjit_jit::kernels::elementwise::{ElementwiseSpec, EwOp};
use webjit_jit::kernels::embedding::EmbeddingSpec;
use webjit_jit::kernels::matmul::MatmulSpec;
use webjit_jit::kernels::probe::ProbeSpec;
use webjit_jit::kernels::rope::{RopeLayout, RopeSpec};
use webjit_jit::kernels::rowwise::{RowOp, RowwiseSpec};
use webjit_jit::{compile, DeviceProfile, KernelSpec};

mod more;

fn sweep<S: KernelSpec>(spec: &S, min_configs: usize) -> usize {
    let mut total = 0;
    for profile in DeviceProfile::synthetic_profiles() {
        let space = spec.space(&profile);
        assert!(
            space.len() >= min_configs,
            "{}: only {} configs on {} (want >= {min_configs})",
            spec.family(),
            space.len(),
            profile.name
        );
        let default = spec.default_config(&profile);
        assert!(
            space.contains(&default),
            "{}: default {:?} not in space on {}",
            spec.family(),
            default,
            profile.name
        );
        let mut keys = std::collections::HashSet::new();
        for cfg in &space {
            let k = compile(spec, &profile, cfg)
                .unwrap_or_else(|e| panic!("{} on {}: {e}", spec.key(cfg), profile.name));
            assert!(
                k.wgsl.starts_with("// ") && k.wgsl.contains(&k.key),
                "header comment must carry the key"
            );
            assert!(keys.insert(k.key.clone()), "duplicate key {}", k.key);
            assert_eq!(spec.config_by_key(&profile, &k.key).as_ref(), Ok(cfg));
            total += 1;
        }
    }
    total
}

#[test]
fn elementwise_space_validates() {
    for op in [
        EwOp::Add,
        EwOp::Mul,
        EwOp::Scale,
        EwOp::GeluTanh,
        EwOp::GeluErf,
        EwOp::Silu,
        EwOp::GeluTanhMul,
        EwOp::SiluMul,
    ] {
        sweep(
            &ElementwiseSpec {
                op,
                len: 4096,
                b_len: 64,
            },
            8,
        );
        sweep(
            &ElementwiseSpec {
                op,
                len: 4099,
                b_len: 4099,
            },
            4,
        );
    }
}

#[test]
fn rowwise_space_validates() {
    for op in [RowOp::RmsNorm, RowOp::LayerNorm, RowOp::Softmax] {
        sweep(
            &RowwiseSpec {
                op,
                rows: 7,
                cols: 640,
            },
            8,
        );
        sweep(
            &RowwiseSpec {
                op,
                rows: 7,
                cols: 641,
            },
            4,
        );
    }
}

#[test]
fn rope_space_validates() {
    for layout in [RopeLayout::Neox, RopeLayout::Normal] {
        sweep(
            &RopeSpec {
                layout,
                tokens: 5,
                heads: 4,
                head_dim: 64,
                rot: 64,
            },
            4,
        );
    }
}

#[test]
fn embedding_space_validates() {
    sweep(
        &EmbeddingSpec {
            n: 9,
            dim: 640,
            add_rows: 0,
        },
        8,
    );
    sweep(
        &EmbeddingSpec {
            n: 9,
            dim: 384,
            add_rows: 7,
        },
        8,
    );
    sweep(
        &EmbeddingSpec {
            n: 9,
            dim: 13,
            add_rows: 0,
        },
        4,
    );
}

#[test]
fn matmul_space_validates() {
    let mut n = 0;
    for trans_b in [false, true] {
        n += sweep(
            &MatmulSpec {
                m: 1024,
                n: 1024,
                k: 1024,
                batch: 1,
                trans_b,
                epilogue: Default::default(),
            },
            24,
        );
        n += sweep(
            &MatmulSpec {
                m: 37,
                n: 61,
                k: 53,
                batch: 2,
                trans_b,
                epilogue: Default::default(),
            },
            12,
        );
    }
    // A LayerNorm of A (`ops::linear_norm`), with a split output or GELU, in every config.
    for (split, gelu) in [(3, false), (0, true)] {
        n += sweep(
            &MatmulSpec {
                m: 12,
                n: 1152,
                k: 384,
                batch: 1,
                trans_b: true,
                epilogue: webjit_engine::jit::kernels::matmul::Epilogue {
                    bias: true,
                    gelu,
                    residual: false,
                    split,
                    norm: true,
                },
            },
            12,
        );
    }
    // The fused epilogue of `ops::linear` (bias, erf GELU, residual) in every config.
    n += sweep(
        &MatmulSpec {
            m: 16,
            n: 1536,
            k: 384,
            batch: 1,
            trans_b: true,
            epilogue: webjit_engine::jit::kernels::matmul::Epilogue {
                bias: true,
                gelu: true,
                residual: true,
                split: 0,
                norm: false,
            },
        },
        12,
    );
    assert!(n > 100);
}

#[test]
fn pool_space_validates() {
    use webjit_jit::kernels::pool::PoolSpec;
    sweep(
        &PoolSpec {
            batch: 3,
            seq: 17,
            dim: 384,
            norm: false,
            l2: false,
        },
        8,
    );
    sweep(
        &PoolSpec {
            batch: 3,
            seq: 17,
            dim: 13,
            norm: false,
            l2: false,
        },
        4,
    );
    sweep(
        &RowwiseSpec {
            op: RowOp::L2Normalize,
            rows: 3,
            cols: 384,
        },
        8,
    );
}

#[test]
fn probe_validates() {
    sweep(&ProbeSpec { groups: 4 }, 1);
}

#[test]
fn illegal_configs_are_rejected_with_reasons() {
    let sw = DeviceProfile::swiftshader_like();
    let spec = MatmulSpec {
        m: 64,
        n: 64,
        k: 63,
        batch: 1,
        trans_b: false,
        epilogue: Default::default(),
    };
    let mut cfg = spec.default_config(&sw);
    cfg.load_vec = 4;
    let err = spec.check(&sw, &cfg).unwrap_err().to_string();
    assert!(err.contains("divisible by 4"), "{err}");
    let big = webjit_jit::kernels::matmul::MatmulConfig {
        bm: 128,
        bn: 128,
        bk: 32,
        tm: 8,
        tn: 8,
        vec: 4,
        load_vec: 4,
        form: webjit_jit::kernels::matmul::MatmulForm::Tiled,
    };
    let spec = MatmulSpec {
        m: 64,
        n: 64,
        k: 64,
        batch: 1,
        trans_b: false,
        epilogue: Default::default(),
    };
    let err = spec.check(&sw, &big).unwrap_err().to_string();
    assert!(err.contains("workgroup memory"), "{err}");
    let rs = RowwiseSpec {
        op: RowOp::Softmax,
        rows: 1,
        cols: 10,
    };
    let err = rs
        .check(
            &sw,
            &webjit_jit::kernels::rowwise::RowwiseConfig {
                wg: 1024,
                vec: 1,
                subgroup: false,
            },
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("exceeds the device limit"), "{err}");
}

#[test]
fn attention_space_validates() {
    use webjit_jit::kernels::attention::{AttentionSpec, COMMON_HEAD_DIMS};
    for head_dim in COMMON_HEAD_DIMS {
        let n = sweep(
            &AttentionSpec {
                batch: 2,
                seq_q: 77,
                seq_kv: 77,
                n_heads: 8,
                n_kv_heads: 2,
                head_dim,
            },
            4,
        );
        assert!(n >= 12, "attention d{head_dim}: only {n} configs in all");
    }
    let bad = AttentionSpec {
        batch: 1,
        seq_q: 4,
        seq_kv: 4,
        n_heads: 4,
        n_kv_heads: 4,
        head_dim: 66,
    };
    let p = DeviceProfile::lavapipe_like();
    let err = bad.check(&p, &bad.default_config(&p)).unwrap_err();
    assert!(err.to_string().contains("multiple of 4"), "{err}");
    let bad_gqa = AttentionSpec {
        n_heads: 6,
        n_kv_heads: 4,
        head_dim: 64,
        ..bad
    };
    assert!(bad_gqa.check(&p, &bad_gqa.default_config(&p)).is_err());
}

#[test]
fn attention_decode_spaces_validate() {
    use webjit_jit::kernels::attention_decode::{
        DecodeReduceSpec, DecodeSpec, KvAppendSpec, KvDType,
    };
    for kv_dtype in KvDType::ALL {
        // 96: an odd number of quantized blocks per row.
        for head_dim in [64, 80, 96, 128, 256] {
            if kv_dtype.check_head_dim(head_dim).is_err() {
                continue;
            }
            sweep(
                &DecodeSpec {
                    batch: 1,
                    n_heads: 8,
                    n_kv_heads: 1,
                    head_dim,
                    kv_dtype,
                    kv_len: 4096,
                },
                12,
            );
        }
        for head_dim in [96, 128] {
            sweep(
                &KvAppendSpec {
                    batch: 1,
                    n_new: 7,
                    n_kv_heads: 2,
                    head_dim,
                    kv_dtype,
                },
                3,
            );
        }
    }
    sweep(
        &DecodeReduceSpec {
            batch: 1,
            n_heads: 8,
            head_dim: 128,
        },
        3,
    );
}

#[test]
fn kivi_flush_space_validates() {
    use webjit_jit::kernels::kivi::KiviFlushSpec;
    // 96: one short value group; 320: two full ones and a short one.
    for head_dim in [64, 96, 128, 256, 320] {
        sweep(
            &KiviFlushSpec {
                batch: 2,
                n_kv_heads: 2,
                head_dim,
                n_groups: 3,
            },
            2,
        );
    }
}

#[test]
fn qk_rope_space_validates() {
    use webjit_jit::kernels::attention_decode::KvDType;
    use webjit_jit::kernels::qk_rope::QkRopeSpec;
    use webjit_jit::kernels::rope::RopeLayout;
    for kv_dtype in KvDType::ALL {
        for layout in [RopeLayout::Neox, RopeLayout::Normal] {
            for norm in [true, false] {
                for (head_dim, rot) in [(64, 64), (128, 64), (256, 256)] {
                    sweep(
                        &QkRopeSpec {
                            layout,
                            tokens: 1,
                            n_heads: 8,
                            n_kv_heads: 2,
                            head_dim,
                            rot,
                            norm,
                            kv_dtype,
                            hadamard: kv_dtype.key_rotation(head_dim).unwrap_or(0),
                        },
                        3,
                    );
                }
            }
        }
    }
}

#[test]
fn quant_spaces_validate() {
    use webjit_jit::kernels::qmatvec::{
        Form, Gate, Prologue, QDequantSpec, QMatvecSpec, QuantizeQ8Spec,
    };
    use webjit_jit::quant::GgmlType;
    sweep(&QuantizeQ8Spec { m: 3, k: 512 }, 2);
    for format in GgmlType::ALL {
        sweep(
            &QDequantSpec {
                format,
                rows: 7,
                k: 512,
            },
            1,
        );
        sweep(
            &webjit_jit::kernels::embedding::QEmbeddingSpec {
                format,
                n: 3,
                dim: 512,
            },
            2,
        );
        for m in [1, 8] {
            for form in [
                Form::Plain,
                Form::Gated(Gate::GeluTanh),
                Form::Gated(Gate::Silu),
                Form::Stacked(2),
                Form::Stacked(3),
            ] {
                // The norm prologue is the same text for every format: a few formats (a
                // classic, a K-quant, a codebook one with its grid binding) cover it.
                let with_prologue =
                    m == 1 && matches!(format, GgmlType::Q5_0 | GgmlType::Q4K | GgmlType::IQ2XS);
                let prologues: &[Prologue] = match with_prologue {
                    true => &[Prologue::None, Prologue::AddNorm, Prologue::NormAddNorm],
                    false => &[Prologue::None],
                };
                for &prologue in prologues {
                    let n = sweep(
                        &QMatvecSpec {
                            format,
                            m,
                            n: 4096,
                            k: 512,
                            rows: 4096,
                            form,
                            prologue,
                        },
                        8,
                    );
                    assert!(n >= 30, "{} {form:?} {prologue:?}: {n}", format.name());
                }
            }
        }
    }
}
