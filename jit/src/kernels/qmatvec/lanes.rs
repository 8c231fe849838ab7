//! The WGSL of the lane path (`Path::Lanes`): K-quant super-blocks spread over 8 lanes each, so
//! that neighbouring lanes read neighbouring words of W and X, the lane's X loaded once for all
//! of the workgroup's rows, codes made f32 by exponent tricks instead of conversions. Exact like
//! the f32 path (the order of the sums differs). One activation row (decode).

use super::float::reduce_parts;
use super::int8::rename_for;
use super::problem::{Form, Path, QMatvecConfig, QMatvecParams, QMatvecSpec, Reduce};
use super::prologue::with_prologue;
use crate::error::JitError;
use crate::kernels::enables;
use crate::quant::wgsl::common_wgsl;
use crate::quant::GgmlType;
use crate::render::{render, section};
use crate::shaders::QMATVEC_LANES;
use crate::spec::UniformStruct;

const FILE: &str = "qmatvec_lanes.wgsl";

fn sec(name: &str) -> Result<&'static str, JitError> {
    section(FILE, QMATVEC_LANES, name)
}

impl Path {
    /// Whether `format` has a lane decoder (the K-quants of Q4_K_M files).
    pub fn lanes_supports(format: GgmlType) -> bool {
        matches!(format, GgmlType::Q4K | GgmlType::Q6K)
    }
}

/// Words of a repacked super-block of 256 weights.
fn super_block_words(format: GgmlType) -> Result<u32, JitError> {
    match format {
        GgmlType::Q4K => Ok(36),
        GgmlType::Q6K => Ok(53),
        other => Err(JitError::UnsupportedProblem {
            family: "qmatvec".into(),
            reason: format!("no lane decoder for {}", other.name()),
        }),
    }
}

pub(super) fn render_lanes(
    spec: &QMatvecSpec,
    cfg: &QMatvecConfig,
    key: String,
) -> Result<String, JitError> {
    let words = super_block_words(spec.format)?;
    let (x_sec, dot_sec) = match spec.format {
        GgmlType::Q4K => ("q4_k_x", "q4_k_dot"),
        _ => ("q6_k_x", "q6_k_dot"),
    };
    let dot = sec(dot_sec)?;
    let mut deq = common_wgsl()?;
    deq.push_str(sec(x_sec)?);
    deq.push_str(dot);
    // The helpers come once; only lane_dot is repeated per weight.
    let lane_dot = dot
        .find("fn lane_dot(")
        .map(|at| &dot[at..])
        .ok_or_else(|| JitError::MissingPlaceholder {
            template: FILE.into(),
            name: format!("lane_dot in {dot_sec}"),
        })?;
    for i in 2..=spec.weights() {
        deq.push('\n');
        deq.push_str(&rename_for(lane_dot, &format!("w{i}"), &format!("_{i}")));
    }
    let decl = |b: u32, name: &str, what: &str| {
        format!("@group(0) @binding({b}) var<storage, read> {name}: array<u32>;  // {what}\n")
    };
    let (w2_decl, acc, epilogue) = match spec.form {
        Form::Plain => (String::new(), sec("acc_plain")?, ""),
        Form::Gated(_) => (
            decl(4, "w2", "[rows, row_words] W2's segment"),
            sec("acc_gated")?,
            crate::render::section("qmatvec.wgsl", crate::shaders::QMATVEC, "gate_epilogue")?,
        ),
        Form::Stacked(n) => {
            let mut d = decl(4, "w2", "the second stacked weight");
            if n == 3 {
                d.push_str(&decl(5, "w3", "the third stacked weight"));
            }
            let acc = if n == 2 {
                sec("acc_stacked2")?
            } else {
                sec("acc_stacked3")?
            };
            (d, acc, "")
        }
    };
    let rp = reduce_parts(spec.form, cfg)?;
    let split_note = match cfg.reduce {
        Reduce::Subgroup => "Partial sums meet by subgroupAdd, then in workgroup memory.",
        _ => "Partial sums meet in workgroup memory.",
    };
    debug_assert_eq!(cfg.path, Path::Lanes);
    render(
        FILE,
        &with_prologue(spec, cfg, sec("matvec_lanes")?)?,
        &[
            ("KEY", key),
            ("SPLIT_NOTE", split_note.into()),
            ("ENABLES", enables(false, rp.sg_note)),
            ("PARAMS", QMatvecParams::wgsl_decl()),
            ("W2_DECL", w2_decl),
            ("WG", cfg.wg.to_string()),
            ("R", cfg.r.to_string()),
            ("G", spec.accumulators().to_string()),
            ("SBW", words.to_string()),
            ("DEQ", deq),
            ("EPILOGUE", epilogue.into()),
            ("REDUCE_DECL", rp.decl),
            ("EXTRA_BUILTINS", rp.builtins.into()),
            ("LANE_ACC", acc.into()),
            ("REDUCE", rp.body),
        ],
    )
}
