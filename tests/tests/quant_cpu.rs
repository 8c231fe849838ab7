//! CPU reference dequantization of every GGUF block format is bit-exact against the vectors
//! recorded from the `gguf` package (no GPU needed).

use webjit_jit::quant::{self, GgmlType};
use webjit_tests::quant_vectors::{self, load};

#[test]
fn cpu_dequant_is_bit_exact_against_gguf_vectors() {
    for format in GgmlType::ALL {
        let v = load(format);
        assert_eq!(v.raw.len() % format.block_bytes(), 0, "{format:?}");
        let got = quant::dequantize_vec(format, &v.raw).unwrap();
        assert_eq!(got.len(), v.want.len(), "{format:?}");
        let mut bad = 0;
        for (i, (g, w)) in got.iter().zip(&v.want).enumerate() {
            if g.to_bits() != w.to_bits() {
                if bad < 5 {
                    eprintln!(
                        "{}: element {i} (block {}): got {g:e} ({:#x}) want {w:e} ({:#x})",
                        format.name(),
                        i / format.block_elems(),
                        g.to_bits(),
                        w.to_bits()
                    );
                }
                bad += 1;
            }
        }
        assert_eq!(bad, 0, "{}: {bad} elements differ", format.name());
        // Vectors of (almost) only zeros would prove little. A third of ternary codes are 0,
        // and quantized ternary blocks of Gaussian data are mostly 0.
        let nonzero = v.want.iter().filter(|x| **x != 0.0).count();
        let ternary = matches!(format, GgmlType::TQ1_0 | GgmlType::TQ2_0);
        assert!(
            nonzero * if ternary { 3 } else { 2 } > v.want.len(),
            "{}: too many zeros",
            format.name()
        );
    }
}

#[test]
fn partial_blocks_are_typed_errors() {
    let v = load(GgmlType::Q6K);
    let r = quant::dequantize_vec(GgmlType::Q6K, &v.raw[..v.raw.len() - 1]);
    assert!(
        matches!(r, Err(quant::QuantError::PartialBlock { .. })),
        "{r:?}"
    );
    let mut out = vec![0.0; 3];
    let r = quant::dequantize(GgmlType::Q8_0, &load(GgmlType::Q8_0).raw, &mut out);
    assert!(
        matches!(r, Err(quant::QuantError::OutputLength { .. })),
        "{r:?}"
    );
}

/// The formats whose repacking validates scales (ggml's `ggml_validate_row_data`).
const VALIDATED: [GgmlType; 12] = [
    GgmlType::IQ4NL,
    GgmlType::IQ4XS,
    GgmlType::TQ1_0,
    GgmlType::TQ2_0,
    GgmlType::MXFP4,
    GgmlType::IQ2XXS,
    GgmlType::IQ2XS,
    GgmlType::IQ2S,
    GgmlType::IQ3XXS,
    GgmlType::IQ3S,
    GgmlType::IQ1S,
    GgmlType::IQ1M,
];

#[test]
fn hostile_scales_decode_as_ggml_and_are_refused_by_repack() {
    for format in VALIDATED {
        let v = quant_vectors::load_hostile(format);
        let bb = format.block_bytes();
        let got = quant::dequantize_vec(format, &v.raw).unwrap();
        assert_eq!(got.len(), v.want.len(), "{format:?}");
        // Bit-exact where finite or infinite; NaN payloads are the CPU's business.
        for (i, (g, w)) in got.iter().zip(&v.want).enumerate() {
            let same = g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan());
            assert!(same, "{}: element {i}: got {g:e} want {w:e}", format.name());
        }
        assert!(
            v.want.iter().any(|w| !w.is_finite()),
            "{}: the hostile vector decodes to finite values only",
            format.name()
        );
        // Every hostile block is refused on its own, and named in a longer chunk.
        let good = quant::synth_blocks(format, 3, 1);
        for (i, b) in v.raw.chunks_exact(bb).enumerate() {
            let mut chunk = good.clone();
            chunk.extend_from_slice(b);
            let mut out = Vec::new();
            let r = quant::repack(format, &chunk, &mut out);
            match r {
                Err(quant::QuantError::NonFiniteScale { block: 3, .. }) => {}
                r => panic!("{}: hostile block {i}: {r:?}", format.name()),
            }
            let msg = r.unwrap_err().to_string();
            assert!(msg.contains(format.name()), "{msg}");
        }
        let mut out = Vec::new();
        quant::repack(format, &good, &mut out).unwrap();
    }
}

#[test]
fn mxfp4_vectors_reach_subnormal_and_overflowing_scales() {
    // E8M0 0 and 1 give subnormal half-scales, 253 and 254 overflow the largest codes to Inf
    // (ggml does the same); both are in the recorded vector and decoded bit-exactly above.
    let v = load(GgmlType::MXFP4);
    assert!(v.want.iter().any(|w| w.is_infinite()));
    assert!(v.want.iter().any(|w| w.is_subnormal()));
    assert!(v.raw.chunks_exact(17).all(|b| b[0] != 0xff));
}
