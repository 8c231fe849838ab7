//! The WGSL dequantization snippets of each block format (`shaders/quant.wgsl`), composed for
//! the kernels that read quantized weights.

use super::GgmlType;
use crate::error::JitError;
use crate::render::{render, section};
use crate::shaders::QUANT;

const FILE: &str = "quant.wgsl";

/// The helpers every dequantization needs (`half_to_f32`, `bytes_shr`); they read no weight.
pub fn common_wgsl() -> Result<String, JitError> {
    Ok(section(FILE, QUANT, "common")?.to_string())
}

/// `fn deq4{suffix}(base, k4) -> vec4<f32>` (and the helpers it calls, with the same suffix)
/// for a weight of `format` bound as the storage array `array`. Kernels reading one weight use
/// `dequant_wgsl(format, "w", "")` after `common_wgsl()`.
pub fn dequant_wgsl(format: GgmlType, array: &str, suffix: &str) -> Result<String, JitError> {
    let mut parts = vec!["byte_at"];
    if matches!(format, GgmlType::Q4K | GgmlType::Q5K) {
        parts.push("kscale");
    }
    if matches!(format, GgmlType::IQ4NL | GgmlType::IQ4XS | GgmlType::MXFP4) {
        parts.push("lut16");
    }
    parts.push(format.name());
    let mut s = String::new();
    for p in parts {
        let t = section(FILE, QUANT, p)?;
        // Each section names the placeholders it reads (`kscale` reads no array).
        let values: Vec<(&str, String)> = [("W", array), ("S", suffix)]
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
    s.push_str(&dequant_wgsl(format, "w", "")?);
    Ok(s)
}
