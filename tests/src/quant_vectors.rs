//! Reference test vectors for the GGUF block formats, recorded by `scripts/gen_quant_vectors.py`
//! with the `gguf` package's reference dequantizers: `<name>.raw` (whole blocks) and `<name>.f32`.

use webjit_jit::quant::GgmlType;

pub struct QuantVector {
    pub format: GgmlType,
    /// [blocks * block_bytes] raw GGUF bytes
    pub raw: Vec<u8>,
    /// [blocks * block_elems] reference dequantization
    pub want: Vec<f32>,
}

/// Loads the vector of `format` (panics with the regeneration command when it is missing).
pub fn load(format: GgmlType) -> QuantVector {
    load_file(format, format.name())
}

/// The hostile vector of `format` (`<name>.hostile.*`): blocks with an Inf or NaN scale, which
/// ggml's validation rejects; recorded for the formats whose repacking refuses them.
pub fn load_hostile(format: GgmlType) -> QuantVector {
    load_file(format, &format!("{}.hostile", format.name()))
}

fn load_file(format: GgmlType, stem: &str) -> QuantVector {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/data/quant");
    let read = |ext: &str| {
        let p = format!("{dir}/{stem}.{ext}");
        std::fs::read(&p).unwrap_or_else(|e| {
            panic!("{p}: {e}; regenerate with `python3 scripts/gen_quant_vectors.py`")
        })
    };
    let raw = read("raw");
    let want = read("f32")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    QuantVector { format, raw, want }
}
