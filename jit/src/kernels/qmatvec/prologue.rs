//! The norm prologue of the float and block paths (`Prologue`): the kernel's X binding becomes
//! the previous product F (`xin`), and a workgroup array named `x` takes its place, filled by
//! `norm_prologue` before the K loop, so the loops read X as they would read the binding.

use super::problem::{Prologue, QMatvecConfig, QMatvecSpec, Reduce};
use crate::error::JitError;
use crate::render::{render, section};
use crate::shaders::QMATVEC;
use crate::spec::BindingDecl;

const FILE: &str = "qmatvec.wgsl";
/// The X binding's line in the `matvec` and `matvec_blocks` sections.
const X_DECL: &str = "@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;";
const MAIN_OPEN: &str = "{{EXTRA_BUILTINS}}) {\n";

/// Workgroup bytes the prologue adds: X, and its reduction's tree.
pub(super) fn prologue_bytes(spec: &QMatvecSpec, wg: u32) -> u64 {
    match spec.prologue {
        Prologue::None => 0,
        _ => 4 * spec.k + 16 * wg as u64,
    }
}

/// The prologue's bindings (after the kernel's own).
pub(super) fn prologue_bindings(spec: &QMatvecSpec) -> Vec<BindingDecl> {
    match spec.prologue {
        Prologue::None => vec![],
        p => {
            let mut b = vec![BindingDecl::read(6, "res")];
            if p == Prologue::NormAddNorm {
                b.push(BindingDecl::read(7, "wpost"));
            }
            b.push(BindingDecl::read(8, "wpre"));
            b.push(BindingDecl::read_write(9, "res_out"));
            b
        }
    }
}

/// `template` (a matvec section, before rendering) with the prologue: X's binding renamed,
/// the prologue's declarations after it and its call at the top of `main`.
pub(super) fn with_prologue(
    spec: &QMatvecSpec,
    cfg: &QMatvecConfig,
    template: &str,
) -> Result<String, JitError> {
    if spec.prologue == Prologue::None {
        return Ok(template.to_string());
    }
    let sec = |name| section(FILE, QMATVEC, name);
    let post = spec.prologue == Prologue::NormAddNorm;
    let pick = |with: &'static str, without: &'static str| -> String {
        if post { with } else { without }.into()
    };
    // Subgroup configs have the subgroup builtins in main: their reduction uses them too.
    let sg = cfg.reduce == Reduce::Subgroup;
    let sg_pick = |t: &str| -> String {
        if sg {
            t.into()
        } else {
            String::new()
        }
    };
    let decls = render(
        FILE,
        sec("norm_prologue")?,
        &[
            ("H_IS", pick("rmsnorm(F) * w_post", "F")),
            (
                "WPOST_DECL",
                pick(
                    "@group(0) @binding(7) var<storage, read> wpost: array<vec4<f32>>;         // [K] the post-norm's weight",
                    "",
                ),
            ),
            ("K4", (spec.k / 4).to_string()),
            ("G_IS", pick(" * w_post", "")),
            ("C_IS", pick("F's norm factor", "1")),
            ("G", pick("f * wpost[i]", "f")),
            ("C", pick("inverseSqrt(t.x / n + eps)", "1.0")),
            ("F", pick("xin[i] * c * wpost[i]", "xin[i]")),
            (
                "NSUM",
                sec(if sg {
                    "norm_nsum_subgroup"
                } else {
                    "norm_nsum_tree"
                })?
                .into(),
            ),
            ("SG_PARAMS", sg_pick(", sg_lane: u32, sg_id: u32, n_sg: u32")),
            ("SG_ARGS", sg_pick(", sg_lane, sg_id, n_sg")),
        ],
    )?;
    let missing = |what: &str| JitError::MissingPlaceholder {
        template: FILE.into(),
        name: format!("{what} (for the norm prologue)"),
    };
    if !template.contains(X_DECL) {
        return Err(missing("X binding"));
    }
    if !template.contains(MAIN_OPEN) {
        return Err(missing("main"));
    }
    let xin = "@group(0) @binding(2) var<storage, read> xin: array<vec4<f32>>;";
    let t = template.replacen(X_DECL, &format!("{}\n{}", decls.trim_end(), xin), 1);
    // Every invocation runs it (it has barriers), before the K loop.
    let call = format!(
        "    norm_prologue(lid, wid.x == 0u && wid.y == 0u{});\n",
        sg_pick(", sg_lane, sg_id, n_sg")
    );
    Ok(t.replacen(MAIN_OPEN, &format!("{MAIN_OPEN}{call}"), 1))
}
