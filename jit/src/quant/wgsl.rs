//! The WGSL dequantization snippets of each block format (`shaders/quant.wgsl`), composed for
//! the kernels that read quantized weights.

use super::{grids, GgmlType};
use crate::error::JitError;
use crate::render::{render, section};
use crate::shaders::QUANT;
use crate::spec::BindingDecl;

const FILE: &str = "quant.wgsl";

/// The helpers every dequantization needs (`half_to_f32`, `bytes_shr`); they read no weight.
pub fn common_wgsl() -> Result<String, JitError> {
    Ok(section(FILE, QUANT, "common")?.to_string())
}

/// The binding of the codebook grid table (`grid`, read-only storage) in every kernel that
/// dequantizes a codebook format: one fixed, high index so no kernel's other bindings move. The
/// engine binds its one grid buffer there (`Recorder::dispatch` adds it when a kernel declares
/// it).
pub const GRID_BINDING: u32 = 15;

/// The grid table's words: every grid byte-expanded, then the sign masks of the int8 matvec
/// (`codebook::gpu_grid_table`): 35 KiB.
pub fn grid_table() -> Vec<u32> {
    super::gpu_grid_table()
}

/// The word offset of `format`'s grid among the packed grids (`grids.rs`), for the codebook
/// formats (IQ1_S and IQ1_M share one).
pub fn grid_offset(format: GgmlType) -> Option<usize> {
    Some(match format {
        GgmlType::IQ2XXS => grids::IQ2XXS_OFFSET,
        GgmlType::IQ2XS => grids::IQ2XS_OFFSET,
        GgmlType::IQ2S => grids::IQ2S_OFFSET,
        GgmlType::IQ3XXS => grids::IQ3XXS_OFFSET,
        GgmlType::IQ3S => grids::IQ3S_OFFSET,
        GgmlType::IQ1S | GgmlType::IQ1M => grids::IQ1S_OFFSET,
        _ => return None,
    })
}

/// The grid binding a kernel reading weights of `format` must declare (last), if any.
pub fn grid_binding(format: GgmlType) -> Option<BindingDecl> {
    grid_offset(format).map(|_| BindingDecl::read(GRID_BINDING, "grid"))
}

/// The WGSL declaration of the grid binding for `format` (empty for the other formats); once
/// per kernel, however many weights it reads.
pub fn grid_decl_wgsl(format: GgmlType) -> String {
    match grid_offset(format) {
        Some(_) => format!(
            "@group(0) @binding({GRID_BINDING}) var<storage, read> grid: array<u32>; // codebook grids\n"
        ),
        None => String::new(),
    }
}

/// The grid declaration and lookups (`grid_entry`, `ksigns`, ...) of quant.wgsl's `grid`
/// section without a suffix, for kernels that decode codebook blocks their own way (the int8
/// matvec); empty for the other formats.
pub fn grid_helpers_wgsl(format: GgmlType) -> Result<String, JitError> {
    if grid_offset(format).is_none() {
        return Ok(String::new());
    }
    let t = section(FILE, QUANT, "grid")?;
    let values = [("S", String::new()), ("T", "grid".to_string())];
    Ok(grid_decl_wgsl(format) + &render(FILE, t, &values)?)
}

/// `fn deq4{suffix}(base, k4) -> vec4<f32>` (and the helpers it calls, with the same suffix)
/// for a weight of `format` bound as the storage array `array`. Kernels reading one weight use
/// `dequant_wgsl(format, "w", "")` after `common_wgsl()`.
pub fn dequant_wgsl(format: GgmlType, array: &str, suffix: &str) -> Result<String, JitError> {
    dequant_wgsl_in(format, array, suffix, &GridTable::Storage)
}

/// Where a kernel's dequantization reads a codebook format's grid.
pub enum GridTable {
    /// The `grid` storage binding (every grid, at the format's offset).
    Storage,
    /// A workgroup array of this name holding only the format's expanded grid (offset 0),
    /// filled by the kernel itself (`grid_copy_wgsl`).
    Workgroup(&'static str),
}

impl GridTable {
    /// The table's array name and the word offset of `format`'s grid in it.
    fn at(&self, format: GgmlType) -> (&'static str, usize) {
        match self {
            GridTable::Storage => (
                "grid",
                grid_offset(format)
                    .and_then(super::expanded_offset)
                    .unwrap_or(0),
            ),
            GridTable::Workgroup(name) => (name, 0),
        }
    }
}

/// Words of `format`'s expanded grid (0 for the other formats).
pub fn grid_words(format: GgmlType) -> usize {
    grid_offset(format)
        .and_then(super::expanded_words)
        .unwrap_or(0)
}

/// A workgroup copy of `format`'s expanded grid named `name`: its declaration, and the loop
/// (for the top of `main`, in uniform control flow) in which the WG invocations fill it from
/// the `grid` binding, ending with a barrier.
pub fn grid_copy_wgsl(format: GgmlType, name: &str) -> (String, String) {
    let n = grid_words(format);
    let from = grid_offset(format)
        .and_then(super::expanded_offset)
        .unwrap_or(0);
    (
        format!(
            "var<workgroup> {name}: array<u32, {n}>; // this format's grid, copied from `grid`
"
        ),
        format!(
            "    for (var i = lid; i < {n}u; i += WG) {{
        {name}[i] = grid[{from}u + i];
    }}
    workgroupBarrier();
"
        ),
    )
}

/// `dequant_wgsl` reading a codebook grid from `table`.
pub fn dequant_wgsl_in(
    format: GgmlType,
    array: &str,
    suffix: &str,
    table: &GridTable,
) -> Result<String, JitError> {
    let mut parts = vec!["byte_at"];
    if matches!(format, GgmlType::Q4K | GgmlType::Q5K) {
        parts.push("kscale");
    }
    if matches!(format, GgmlType::IQ4NL | GgmlType::IQ4XS | GgmlType::MXFP4) {
        parts.push("lut16");
    }
    let grid = grid_offset(format);
    if grid.is_some() {
        parts.push("grid");
    }
    parts.push(format.name());
    let mut s = String::new();
    let (tname, e) = table.at(format);
    for p in parts {
        let t = section(FILE, QUANT, p)?;
        // Each section names the placeholders it reads (`kscale` reads no array).
        let g = e.to_string();
        let values: Vec<(&str, String)> =
            [("W", array), ("S", suffix), ("E", g.as_str()), ("T", tname)]
                .into_iter()
                .filter(|(name, _)| t.contains(&format!("{{{{{name}}}}}")))
                .map(|(name, v)| (name, v.to_string()))
                .collect();
        s.push_str(&render(FILE, t, &values)?);
    }
    Ok(s)
}

/// `common_wgsl()` and `dequant_wgsl(format, "w", "")`: the whole dequantization of a kernel
/// that reads one weight bound as `w`.
pub fn deq_wgsl(format: GgmlType) -> Result<String, JitError> {
    let mut s = common_wgsl()?;
    s.push_str(&grid_decl_wgsl(format));
    s.push_str(&dequant_wgsl(format, "w", "")?);
    Ok(s)
}

/// Vec4s of weights one `deqv` call returns: 2 for the codebook formats (8 weights sharing one
/// grid entry or two, one scale and one sign byte) and TQ1_0 (two words sharing the block's
/// scale and power of 3), whose decoding costs more than their bytes; 1 for the others (TQ2_0
/// shares too little: 15% slower on lavapipe with 2).
pub fn deqv_width(format: GgmlType) -> u32 {
    if grid_offset(format).is_some() || format == GgmlType::TQ1_0 {
        2
    } else {
        1
    }
}

/// `fn deqv{suffix}(base, kv) -> array<vec4<f32>, deqv_width(format)>`: elements
/// `4 U kv .. 4 U kv + 4 U - 1` of the row at `base`, for the matvec. The codebook formats have
/// their own 8-wide sections (`<format>_8` in quant.wgsl); the others wrap deq4. Goes after
/// `dequant_wgsl(format, array, suffix)`, whose helpers it calls.
pub fn deqv_wgsl(
    format: GgmlType,
    array: &str,
    suffix: &str,
    table: &GridTable,
) -> Result<String, JitError> {
    if deqv_width(format) == 1 {
        return Ok(format!(
            "fn deqv{suffix}(base: u32, kv: u32) -> array<vec4<f32>, 1> {{\n    \
             return array<vec4<f32>, 1>(deq4{suffix}(base, kv));\n}}\n"
        ));
    }
    let t = section(FILE, QUANT, &format!("{}_8", format.name()))?;
    let g = table.at(format).1.to_string();
    let values: Vec<(&str, String)> = [("W", array), ("S", suffix), ("E", g.as_str())]
        .into_iter()
        .filter(|(name, _)| t.contains(&format!("{{{{{name}}}}}")))
        .map(|(name, v)| (name, v.to_string()))
        .collect();
    render(FILE, t, &values)
}
