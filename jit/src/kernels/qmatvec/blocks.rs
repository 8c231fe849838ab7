//! The WGSL of the block path (`Path::Blocks`): the int8 path's block decoders (integer codes,
//! a scale per half block, an offset) against X in f32. Exact like the f32 path (only the
//! order of the f32 sums differs), with the scales applied once per half block instead of
//! once per weight: on GPUs whose f32 path is bound by instructions (an H100 at 4096-14336
//! rows), this is the float path that reaches the memory bandwidth.

use super::float::reduce_parts;
use super::int8::{bps, wblocks_wgsl};
use super::problem::{Form, Path, QMatvecConfig, QMatvecParams, QMatvecSpec, Reduce};
use super::prologue::with_prologue;
use crate::error::JitError;
use crate::kernels::enables;
use crate::quant::GgmlType;
use crate::render::{render, section};
use crate::shaders::QMATVEC;
use crate::spec::UniformStruct;

const FILE: &str = "qmatvec.wgsl";

fn sec(name: &str) -> Result<&'static str, JitError> {
    section(FILE, QMATVEC, name)
}

/// Whether the format's blocks carry an offset (K-quant mins), which needs X's block sums.
fn has_mins(format: GgmlType) -> bool {
    format == GgmlType::Q4K
}

pub(super) fn render_blocks(
    spec: &QMatvecSpec,
    cfg: &QMatvecConfig,
    key: String,
) -> Result<String, JitError> {
    let names: &[(&str, &str)] = match spec.form {
        Form::Plain => &[("w", "")],
        Form::Gated(_) | Form::Stacked(2) => &[("w", ""), ("w2", "_2")],
        Form::Stacked(_) => &[("w", ""), ("w2", "_2"), ("w3", "_3")],
    };
    let deq = wblocks_wgsl(spec.format, names)?;
    // Q4_K's decoder reads vec4s of words (a super-block is 9 of them).
    let wtype = if spec.format == GgmlType::Q4K {
        "vec4<u32>"
    } else {
        "u32"
    };
    let decl = |b: u32, name: &str, what: &str| {
        format!("@group(0) @binding({b}) var<storage, read> {name}: array<{wtype}>;  // {what}\n")
    };
    let (w2_decl, load, acc, epilogue) = match spec.form {
        Form::Plain => (
            String::new(),
            sec("blocks_load_plain")?,
            sec("blocks_acc_plain")?,
            "",
        ),
        Form::Gated(_) => (
            decl(4, "w2", "[rows, row_words] W2's segment"),
            sec("blocks_load_gated")?,
            sec("blocks_acc_gated")?,
            sec("gate_epilogue")?,
        ),
        Form::Stacked(n) => {
            let mut d = decl(4, "w2", "the second stacked weight");
            if n == 3 {
                d.push_str(&decl(5, "w3", "the third stacked weight"));
            }
            let load = if n == 2 {
                sec("blocks_load_stacked2")?
            } else {
                sec("blocks_load_stacked3")?
            };
            (d, load, sec("blocks_acc_plain")?, "")
        }
    };
    let mins = has_mins(spec.format);
    let (xsum, mn, mn2) = if mins {
        (
            sec("blocks_xsum")?.trim_end().to_string(),
            " + wb.mn * (xs.x + xs.y + xs.z + xs.w)".to_string(),
            " + wb2.mn * (xs.x + xs.y + xs.z + xs.w)".to_string(),
        )
    } else {
        (String::new(), String::new(), String::new())
    };
    let rp = reduce_parts(spec.form, cfg)?;
    let (k0, kstep) = (rp.k0, rp.kstep);
    let split_note = match cfg.reduce {
        Reduce::None => {
            "Each invocation owns R consecutive rows and walks all of K (no reduction)."
        }
        _ => {
            "A workgroup owns R consecutive rows; its invocations split K in steps of BPS blocks \
             of 32 and sum\n// their parts together at the end."
        }
    };
    let shared_x = cfg.path == Path::BlocksX;
    let gated = matches!(spec.form, Form::Gated(_));
    let (loop_, x_fns) = if shared_x {
        (sec("blocks_loop_x")?, sec("blocks_x_fns")?)
    } else {
        (sec("blocks_loop")?, "")
    };
    let values: Vec<(&str, String)> = vec![
        ("K0", k0.into()),
        ("KSTEP", kstep.into()),
        ("LOAD_WB", load.into()),
        ("ACC_B", acc.into()),
        (
            "WR2_DECL",
            if gated {
                "        var wr2: array<array<W8, BPS>, R>;"
            } else {
                ""
            }
            .into(),
        ),
        (
            "WR2_SET",
            if gated {
                "            wr2[r] = wbs2;"
            } else {
                ""
            }
            .into(),
        ),
        (
            "XSUM_X",
            if mins {
                sec("blocks_xsum_x")?.trim_end()
            } else {
                ""
            }
            .into(),
        ),
        (
            "MN_X",
            if mins { " + wr[r][u].mn * xsum" } else { "" }.into(),
        ),
        (
            "ACC2_X",
            if gated {
                format!(
                    "                    acc[(R + r) * M + m] += block_dot_x(wr2[r][u], xa){};",
                    if mins { " + wr2[r][u].mn * xsum" } else { "" }
                )
            } else {
                String::new()
            },
        ),
    ];
    // Each loop names only some of these.
    let values: Vec<(&str, String)> = values
        .into_iter()
        .filter(|(k, _)| loop_.contains(&format!("{{{{{k}}}}}")))
        .collect();
    let loop_ = render(FILE, loop_, &values)?;
    render(
        FILE,
        &with_prologue(spec, cfg, sec("matvec_blocks")?)?,
        &[
            ("KEY", key),
            ("SPLIT_NOTE", split_note.into()),
            ("ENABLES", enables(false, rp.sg_note)),
            ("PARAMS", QMatvecParams::wgsl_decl()),
            ("WTYPE", wtype.into()),
            ("W2_DECL", w2_decl),
            ("WG", cfg.wg.to_string()),
            ("R", cfg.r.to_string()),
            ("M", spec.m.to_string()),
            ("G", spec.accumulators().to_string()),
            ("BPS", bps(spec.format).to_string()),
            ("DEQ", deq),
            ("XSUM", xsum),
            ("MN", mn),
            ("MN2", mn2),
            ("EPILOGUE", epilogue.into()),
            ("REDUCE_DECL", rp.decl),
            ("EXTRA_BUILTINS", rp.builtins.into()),
            ("LOOP", loop_),
            ("X_FNS", x_fns.into()),
            ("ROW0", rp.row0.into()),
            ("REDUCE", rp.body),
        ],
    )
}
