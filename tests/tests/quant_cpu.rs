//! CPU reference dequantization of every GGUF block format is bit-exact against the vectors
//! recorded from the `gguf` package (no GPU needed).

use webjit_jit::quant::{self, GgmlType};
use webjit_tests::quant_vectors::load;

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
        // Vectors of (almost) only zeros would prove little.
        let nonzero = v.want.iter().filter(|x| **x != 0.0).count();
        assert!(
            nonzero * 2 > v.want.len(),
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
