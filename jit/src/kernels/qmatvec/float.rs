//! The WGSL of the float paths (`Path::F32`, `Path::F16`): each invocation dequantizes 4
//! weights at a time to a vec4 and multiplies it with X in f32 (or f16), sums in f32.

use super::problem::{Form, Path, QMatvecConfig, QMatvecParams, QMatvecSpec, Reduce};
use super::prologue::with_prologue;
use crate::error::JitError;
use crate::kernels::{enables, vec_type};
use crate::quant::wgsl::{
    common_wgsl, dequant_wgsl_in, deqv_wgsl, deqv_width, grid_copy_wgsl, grid_decl_wgsl,
    grid_words, GridTable,
};
use crate::render::{render, section};
use crate::shaders::QMATVEC;
use crate::spec::UniformStruct;

const FILE: &str = "qmatvec.wgsl";

fn sec(name: &str) -> Result<&'static str, JitError> {
    section(FILE, QMATVEC, name)
}

/// Bound on subgroups per workgroup baked into the shader: WG / 4, the smallest subgroup size
/// WebGPU allows, so the shader is correct for any size the driver picks.
pub(super) fn max_subgroups(cfg: &QMatvecConfig) -> u32 {
    cfg.wg.div_ceil(4)
}

/// Largest codebook grid copied into workgroup memory (IQ2_S's 8 KiB; IQ1's 16 KiB grid would
/// leave no room under WebGPU's default 16 KiB limit).
const GRID_WG_MAX_WORDS: usize = 2048;

/// Whether a config reads its codebook grid from a workgroup copy instead of the `grid`
/// binding: with 4 or more rows per workgroup, where the copy (one word per invocation or a
/// few) is spread over enough weights. Random per-lane lookups in a storage table cost an L1
/// transaction each; in workgroup memory they cost bank conflicts at most.
pub(super) fn grid_in_workgroup(spec: &QMatvecSpec, cfg: &QMatvecConfig) -> bool {
    let words = grid_words(spec.format);
    !matches!(cfg.path, Path::Blocks | Path::BlocksX | Path::Lanes)
        && words > 0
        && words <= GRID_WG_MAX_WORDS
        && cfg.r >= 4
}

/// Bytes of workgroup memory a float config needs.
pub(super) fn shared_bytes(spec: &QMatvecSpec, cfg: &QMatvecConfig) -> u64 {
    let per = match cfg.reduce {
        Reduce::Workgroup => cfg.wg,
        Reduce::Subgroup => max_subgroups(cfg),
        Reduce::None => 0,
    };
    let grid = if grid_in_workgroup(spec, cfg) {
        4 * grid_words(spec.format) as u64
    } else {
        0
    };
    4 * (cfg.r * spec.m * per * spec.accumulators()) as u64
        + grid
        + super::prologue::prologue_bytes(spec, cfg.wg)
}

/// The output expressions of the reductions (each invocation's own sums, the workgroup
/// tree's, the subgroup pass's) and the subgroup pass's second sum, by form.
struct Outputs {
    none: String,
    workgroup: String,
    subgroup_t2: String,
    subgroup: String,
}

fn outputs(form: Form) -> Result<Outputs, JitError> {
    Ok(match form {
        Form::Gated(g) => {
            let act = g.name();
            Outputs {
                none: format!("{act}(acc[i]) * acc[R * M + i]"),
                workgroup: format!("{act}(red[lid * WG]) * red[(R * M + lid) * WG]"),
                subgroup_t2: sec("gate_t2_subgroup")?.to_string(),
                subgroup: format!("{act}(t) * t2"),
            }
        }
        _ => Outputs {
            none: "acc[i]".into(),
            workgroup: "red[lid * WG]".into(),
            subgroup_t2: String::new(),
            subgroup: "t".into(),
        },
    })
}

pub(super) fn render_float(
    spec: &QMatvecSpec,
    cfg: &QMatvecConfig,
    key: String,
) -> Result<String, JitError> {
    // One dequantization per weight, reading its own array with its own function names.
    let wg_grid = grid_in_workgroup(spec, cfg);
    let table = if wg_grid {
        GridTable::Workgroup("gridw")
    } else {
        GridTable::Storage
    };
    let (grid_wg_decl, grid_fill) = if wg_grid {
        grid_copy_wgsl(spec.format, "gridw")
    } else {
        (String::new(), String::new())
    };
    let mut deq = common_wgsl()?;
    deq.push_str(&grid_decl_wgsl(spec.format));
    deq.push_str(&grid_wg_decl);
    deq.push_str(&dequant_wgsl_in(spec.format, "w", "", &table)?);
    deq.push_str(&deqv_wgsl(spec.format, "w", "", &table)?);
    for i in 2..=spec.weights() {
        let (array, suffix) = (format!("w{i}"), format!("_{i}"));
        deq.push_str(&dequant_wgsl_in(spec.format, &array, &suffix, &table)?);
        deq.push_str(&deqv_wgsl(spec.format, &array, &suffix, &table)?);
    }
    let (w2_decl, load_w, epilogue, acc2) = match spec.form {
        Form::Plain => (String::new(), sec("load_w")?, "", ""),
        Form::Gated(_) => (
            sec("w2_gated")?.to_string(),
            sec("load_w")?,
            sec("gate_epilogue")?,
            sec("gate_acc")?,
        ),
        Form::Stacked(2) => (
            sec("w2_stacked")?.to_string(),
            sec("load_w_stacked2")?,
            "",
            "",
        ),
        Form::Stacked(_) => (
            format!("{}{}", sec("w2_stacked")?, sec("w3_stacked")?),
            sec("load_w_stacked3")?,
            "",
            "",
        ),
    };
    let rp = reduce_parts(spec.form, cfg)?;
    let where_sums_meet = match cfg.reduce {
        Reduce::Subgroup => "subgroupAdd and workgroup memory",
        _ => "workgroup memory",
    };
    let split_note = match cfg.reduce {
        Reduce::None => {
            "Each invocation owns R consecutive rows and walks all of K (no reduction).".into()
        }
        _ => format!(
            "A workgroup owns R consecutive rows; its invocations split K in steps of 4 U \
             elements, so\n// neighbours read neighbouring words of the same blocks; partial \
             sums meet in {where_sums_meet}."
        ),
    };
    let f16 = cfg.path == Path::F16;
    render(
        FILE,
        &with_prologue(spec, cfg, sec("matvec")?)?,
        &[
            ("KEY", key),
            ("SPLIT_NOTE", split_note),
            ("ROW0", rp.row0.into()),
            ("K0", rp.k0.into()),
            ("KSTEP", rp.kstep.into()),
            ("ENABLES", enables(f16, rp.sg_note)),
            ("V", vec_type(f16).into()),
            ("PARAMS", QMatvecParams::wgsl_decl()),
            ("WG", cfg.wg.to_string()),
            ("R", cfg.r.to_string()),
            ("M", spec.m.to_string()),
            ("G", spec.accumulators().to_string()),
            ("U", deqv_width(spec.format).to_string()),
            ("GRID_FILL", grid_fill),
            ("DEQ", deq),
            ("W2_DECL", w2_decl),
            ("EPILOGUE", epilogue.into()),
            ("ACC2", acc2.into()),
            ("LOAD_W", load_w.into()),
            ("REDUCE_DECL", rp.decl),
            ("EXTRA_BUILTINS", rp.builtins.into()),
            ("REDUCE", rp.body),
        ],
    )
}

/// What a reduction puts in the float and block paths' shaders (both take the sections of
/// qmatvec.wgsl): the subgroup note, declarations, the body with `form`'s outputs filled in,
/// extra builtins, and where the K loop starts and strides.
pub(super) struct ReduceParts {
    pub sg_note: &'static str,
    pub decl: String,
    pub body: String,
    pub builtins: &'static str,
    pub row0: &'static str,
    pub k0: &'static str,
    pub kstep: &'static str,
}

pub(super) fn reduce_parts(form: Form, cfg: &QMatvecConfig) -> Result<ReduceParts, JitError> {
    let (sg_note, decl, body, builtins) = match cfg.reduce {
        Reduce::None => ("", String::new(), sec("reduce_none_body")?, ""),
        Reduce::Workgroup => (
            "",
            sec("reduce_workgroup")?.to_string(),
            sec("reduce_workgroup_body")?,
            "",
        ),
        Reduce::Subgroup => (
            // naga 30 rejects `enable subgroups;` (not yet implemented) and accepts the
            // builtins under Capabilities::SUBGROUP; browsers would need the enable.
            "// subgroup builtins: naga accepts them with Capabilities::SUBGROUP",
            render(
                FILE,
                sec("reduce_subgroup")?,
                &[("MAX_SG", max_subgroups(cfg).to_string())],
            )?,
            sec("reduce_subgroup_body")?,
            sec("subgroup_builtins")?.trim_end(),
        ),
    };
    let (row0, k0, kstep) = match cfg.reduce {
        Reduce::None => ("((wid.x + wid.y * nwg.x) * WG + lid) * R", "0u", "1u"),
        _ => ("(wid.x + wid.y * nwg.x) * R", "lid", "WG"),
    };
    Ok(ReduceParts {
        sg_note,
        decl,
        body: fill_outputs(body, &outputs(form)?)?,
        builtins,
        row0,
        k0,
        kstep,
    })
}

/// Fills the output expressions a reduce body names.
fn fill_outputs(body: &str, out: &Outputs) -> Result<String, JitError> {
    let values: Vec<(&str, String)> = [
        ("OUT_NONE", &out.none),
        ("OUT_WG", &out.workgroup),
        ("T2_SG", &out.subgroup_t2),
        ("OUT_SG", &out.subgroup),
    ]
    .into_iter()
    .filter(|(name, _)| body.contains(&format!("{{{{{name}}}}}")))
    .map(|(name, v)| (name, v.clone()))
    .collect();
    render(FILE, body, &values)
}
