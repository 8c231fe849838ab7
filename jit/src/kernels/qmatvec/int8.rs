//! The WGSL and the legality rules of the int8 path (`Path::Int8`): activations quantized to 8
//! bits per block of 32 (`QuantizeQ8Spec`, ggml's q8_1 layout split into codes and scales),
//! weights unpacked to signed bytes, four products per `dot4I8Packed`. Integer sums are exact;
//! the result differs from the f32 path only by the activations' rounding (about 0.4% of each
//! block's largest value), so it is an alternative the tuner may pick where it is faster, never
//! the default. Formats: `Path::int8_supports`.

use super::problem::{QMatvecConfig, QMatvecParams, QMatvecSpec, Reduce};
use super::quantize::check_k32;
use crate::error::JitError;
use crate::kernels::illegal;
use crate::profile::DeviceProfile;
use crate::quant::wgsl::{common_wgsl, grid_helpers_wgsl, grid_offset};
use crate::quant::GgmlType;
use crate::render::{render, section};
use crate::shaders::QMATVEC_I8;
use crate::spec::UniformStruct;

const FILE: &str = "qmatvec_i8.wgsl";

fn sec(name: &str) -> Result<&'static str, JitError> {
    section(FILE, QMATVEC_I8, name)
}

/// Blocks of 32 one step of the K loop takes: Q4_K's neighbouring sub-blocks are the low and
/// high nibbles of the same bytes, so one step unpacks both (K is a multiple of 256).
fn blocks_per_step(format: GgmlType) -> u32 {
    if format == GgmlType::Q4K {
        2
    } else {
        1
    }
}

/// Most subgroups a workgroup can hold (WG / the smallest subgroup size WebGPU allows).
fn max_subgroups(cfg: &QMatvecConfig) -> u32 {
    cfg.wg.div_ceil(4)
}

/// The block decoders of `format` (`wblocks`: the W8 blocks of one step of the K loop) and
/// what they need, once per weight array: `arrays` holds (array name, function suffix) pairs,
/// the first normally ("w", ""). The shared helpers (W8, tables, grids) come once.
pub(super) fn wblocks_wgsl(format: GgmlType, arrays: &[(&str, &str)]) -> Result<String, JitError> {
    let mut deq = common_wgsl()?;
    deq.push_str(sec("w8")?);
    if matches!(format, GgmlType::IQ4NL | GgmlType::IQ4XS | GgmlType::MXFP4) {
        deq.push_str(sec("lut_bytes")?);
    }
    let grid = grid_offset(format);
    if grid.is_some() {
        deq.push_str(&grid_helpers_wgsl(format)?);
    }
    let wblock = sec(format.name())?;
    let mut per_array = match grid {
        Some(g) => {
            let b = crate::quant::expanded_offset(g).unwrap_or(0).to_string();
            let m = crate::quant::sign_mask_offset().to_string();
            let bytes = render(FILE, sec("codebook_bytes")?, &[("B", b.clone()), ("M", m)])?;
            deq.push_str(&bytes);
            // IQ1's sections read the expanded grid through `grid8_iq1` only.
            let values = if wblock.contains("{{B}}") {
                vec![("B", b)]
            } else {
                vec![]
            };
            render(FILE, wblock, &values)?
        }
        None => wblock.to_string(),
    };
    if blocks_per_step(format) == 1 {
        per_array.push_str(sec("wblocks_one")?);
    }
    for (array, suffix) in arrays {
        deq.push_str(&rename_for(&per_array, array, suffix));
    }
    Ok(deq)
}

/// `src` reading array `array` instead of `w`, its functions renamed with `suffix` (so one
/// shader can hold the decoders of W, W2 and W3).
pub(super) fn rename_for(src: &str, array: &str, suffix: &str) -> String {
    if array == "w" && suffix.is_empty() {
        return src.to_string();
    }
    let names: Vec<&str> = src
        .lines()
        .filter_map(|l| l.strip_prefix("fn ")?.split('(').next())
        .collect();
    let mut out = String::with_capacity(src.len() + 64);
    let mut rest = src;
    while let Some(c) = rest.chars().next() {
        if c.is_ascii_alphanumeric() || c == '_' {
            let end = rest
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                .unwrap_or(rest.len());
            let (tok, tail) = rest.split_at(end);
            if tok == "w" && tail.starts_with('[') {
                out.push_str(array);
            } else if tail.starts_with('(') && names.contains(&tok) {
                out.push_str(tok);
                out.push_str(suffix);
            } else {
                out.push_str(tok);
            }
            rest = tail;
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// Blocks of 32 per step of the K loop (2 for Q4_K, whose neighbouring sub-blocks share bytes).
pub(super) fn bps(format: GgmlType) -> u32 {
    blocks_per_step(format)
}

pub(super) fn render_int8(
    spec: &QMatvecSpec,
    cfg: &QMatvecConfig,
    key: String,
) -> Result<String, JitError> {
    let deq = wblocks_wgsl(spec.format, &[("w", "")])?;
    let (note, decl, body, builtins, split_note) = match cfg.reduce {
        Reduce::Subgroup => (
            "// subgroup builtins: naga accepts them with Capabilities::SUBGROUP",
            render(
                FILE,
                sec("reduce_subgroup")?,
                &[("MAX_SG", max_subgroups(cfg).to_string())],
            )?,
            sec("reduce_subgroup_body")?,
            sec("subgroup_builtins")?.trim_end(),
            "Partial sums meet by subgroupAdd, then in workgroup memory.",
        ),
        _ => (
            "",
            sec("reduce_workgroup")?.to_string(),
            sec("reduce_workgroup_body")?,
            "",
            "Partial sums meet in a workgroup-memory tree.",
        ),
    };
    // Q4_K reads its weights as vec4<u32> (a super-block is 9 of them) and decodes its scales
    // in place.
    let wtype = if spec.format == GgmlType::Q4K {
        "vec4<u32>"
    } else {
        "u32"
    };
    render(
        FILE,
        sec("matvec")?,
        &[
            ("KEY", key),
            ("SPLIT_NOTE", split_note.into()),
            ("ENABLES", note.into()),
            ("PARAMS", QMatvecParams::wgsl_decl()),
            ("WG", cfg.wg.to_string()),
            ("R", cfg.r.to_string()),
            ("M", spec.m.to_string()),
            ("BPS", blocks_per_step(spec.format).to_string()),
            ("WTYPE", wtype.into()),
            ("DEQ", deq),
            ("REDUCE_DECL", decl),
            ("EXTRA_BUILTINS", builtins.into()),
            ("REDUCE", body.into()),
        ],
    )
}

/// The int8 path's own rules (the shared ones are in `spec`).
pub(super) fn check_int8(
    spec: &QMatvecSpec,
    profile: &DeviceProfile,
    cfg: &QMatvecConfig,
    key: &str,
) -> Result<(), JitError> {
    let fam = "qmatvec";
    check_k32(fam, spec.k)?;
    if cfg.r > cfg.wg {
        return Err(illegal(
            fam,
            key,
            "more rows than invocations per workgroup",
        ));
    }
    match cfg.reduce {
        Reduce::Subgroup => match &profile.subgroups {
            Some(sg) if cfg.wg / cfg.r >= sg.max_size => {}
            Some(sg) => {
                return Err(illegal(
                    fam,
                    key,
                    format!(
                        "{} invocations per row, fewer than a subgroup of up to {}",
                        cfg.wg / cfg.r,
                        sg.max_size
                    ),
                ))
            }
            None => {
                return Err(illegal(
                    fam,
                    key,
                    "subgroup reduction needs subgroup support",
                ))
            }
        },
        Reduce::Workgroup => {}
        Reduce::None => return Err(illegal(fam, key, "the int8 path needs a reduction")),
    }
    let per = match cfg.reduce {
        Reduce::Subgroup => max_subgroups(cfg),
        _ => cfg.wg,
    };
    let bytes = 4 * (spec.m * per) as u64;
    let max = profile.limits.max_compute_workgroup_storage_size as u64;
    if bytes > max {
        return Err(illegal(
            fam,
            key,
            format!("needs {bytes} bytes of workgroup memory, the device has {max}"),
        ));
    }
    Ok(())
}
