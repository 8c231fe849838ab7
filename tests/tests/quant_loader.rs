//! The low-bit GGUF types (IQ4_NL 20, IQ4_XS 23, TQ1_0 34, TQ2_0 35, MXFP4 39, and the
//! codebook types IQ2_XXS 16, IQ2_XS 17, IQ2_S 22, IQ3_XXS 18, IQ3_S 21, IQ1_S 19, IQ1_M 29)
//! through the loader: streamed in odd-sized chunks across buffer segments, repacked, and dequantized on
//! the GPU bit-exactly like the CPU reference of the file's bytes; a block whose scale is not a
//! number stops the load with an error naming the tensor.

use webjit_engine::loader::{Format, GpuSink, LoadOptions, Loader, LoaderError, TensorType};
use webjit_engine::ops;
use webjit_jit::quant::{self, GgmlType};
use webjit_tests::loader_fixtures::{GgufBuilder, GgufTensor};
use webjit_tests::{small_binding_engine, Rand};

/// (name, ggml id, [K, rows]) of the test file.
const SPECS: [(&str, u32, [u64; 2]); 12] = [
    ("blk.0.iq4_nl", 20, [1024, 8]),
    ("blk.0.iq4_xs", 23, [512, 9]),
    ("blk.1.tq1_0", 34, [2560, 300]),
    ("blk.1.tq2_0", 35, [256, 5]),
    ("blk.2.mxfp4", 39, [96, 7]),
    ("blk.3.iq2_xxs", 16, [512, 3]),
    ("blk.3.iq2_xs", 17, [256, 7]),
    ("blk.3.iq2_s", 22, [2048, 300]),
    ("blk.4.iq3_xxs", 18, [768, 5]),
    ("blk.4.iq3_s", 21, [256, 4]),
    ("blk.5.iq1_s", 19, [1024, 3]),
    ("blk.5.iq1_m", 29, [512, 6]),
];

fn build(hostile: Option<usize>) -> (Vec<u8>, Vec<GgufTensor>) {
    let mut b = GgufBuilder::new(3);
    for (i, (name, ty, ne)) in SPECS.into_iter().enumerate() {
        let format = GgmlType::from_id(ty).expect("a supported id");
        let blocks = (ne[0] * ne[1]) as usize / format.block_elems();
        let mut data = quant::synth_blocks(format, blocks, 40 + i as u64);
        if hostile == Some(i) {
            // The last block's scale: f16 NaN, or the E8M0 NaN 0xff.
            let at = (blocks - 1) * format.block_bytes();
            match quant::scale_offsets(format).first() {
                Some(&off) => data[at + off..at + off + 2].copy_from_slice(&[0x01, 0x7e]),
                // IQ1_M: f16 0x7e01's nibbles in the top of the scale words' bytes 49..55.
                None if format == GgmlType::IQ1M => {
                    for (k, nib) in [1u8, 0, 0xe, 7].into_iter().enumerate() {
                        let b = &mut data[at + 49 + 2 * k];
                        *b = (*b & 0x0f) | (nib << 4);
                    }
                }
                None => data[at] = 0xff,
            }
        }
        b.tensors.push(GgufTensor {
            name: name.into(),
            ne: ne.to_vec(),
            ggml_type: ty,
            data,
        });
    }
    let (file, _) = b.build();
    (file, b.tensors)
}

fn load(file: &[u8], rng: &mut Rand) -> Result<GpuSink, LoaderError> {
    let mut sink = GpuSink::new(small_binding_engine());
    let mut loader = Loader::new(Format::Gguf, LoadOptions::default());
    let mut off = 0;
    while off < file.len() {
        let n = rng.range(1, 1500).min(file.len() - off);
        loader.push(&file[off..off + n], &mut sink)?;
        off += n;
    }
    loader.finish(&mut sink)?;
    Ok(sink)
}

#[test]
fn low_bit_tensors_stream_repack_and_dequantize_exactly() {
    let e = small_binding_engine();
    let mut rng = Rand::new(0x1b17);
    let (file, tensors) = build(None);
    let sink = load(&file, &mut rng).expect("load");
    assert!(
        sink.qtensors["blk.1.tq1_0"].segments().len() > 1,
        "the test must cross segments"
    );
    for t in &tensors {
        let ty = TensorType::from_ggml(t.ggml_type).expect("known id");
        let format = GgmlType::from_id(t.ggml_type).unwrap();
        assert_eq!(ty.name(), format.name());
        assert_eq!(ty.block_bytes() as usize, format.block_bytes());
        assert_eq!(ty.block_elems() as usize, format.block_elems());
        let q = &sink.qtensors[&t.name];
        let (rows, k) = (t.ne[1] as usize, t.ne[0] as usize);
        if q.segments().len() > 1 {
            // Too large for qdequant's one output binding here: the same matvec over the
            // streamed weight and the weight uploaded whole must agree bit for bit.
            let whole = e.upload_quantized(format, [rows, k], &t.data).unwrap();
            let x = e.upload_f32(&[1, k], &rng.vec(k, -1.0, 1.0)).unwrap();
            let mut rec = e.recorder();
            let a = ops::qmatvec(&x, q).record(&mut rec).unwrap();
            let b = ops::qmatvec(&x, &whole).record(&mut rec).unwrap();
            rec.submit().unwrap();
            let (a, b) = (e.read_f32(&a).unwrap(), e.read_f32(&b).unwrap());
            assert!(a.iter().all(|v| v.is_finite()));
            assert!(
                a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{}: streamed repack differs from whole upload",
                t.name
            );
            continue;
        }
        let mut rec = e.recorder();
        let out = ops::qdequant(q).record(&mut rec).expect("dequant");
        rec.submit().expect("submit");
        let got = e.read_f32(&out).expect("read");
        let want = quant::dequantize_vec(format, &t.data).unwrap();
        assert!(
            got.iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{}: GPU dequantization of the streamed tensor differs from the CPU reference",
            t.name
        );
    }
}

#[test]
fn a_nan_scale_stops_the_load_naming_the_tensor() {
    for (i, (name, ..)) in SPECS.into_iter().enumerate() {
        let (file, _) = build(Some(i));
        match load(&file, &mut Rand::new(7)) {
            Err(LoaderError::Sink {
                tensor,
                code,
                detail,
            }) => {
                assert_eq!(tensor, name);
                assert_eq!(code, "QUANT");
                assert!(detail.contains("NaN"), "{detail}");
            }
            Err(e) => panic!("{name}: {e}"),
            Ok(_) => panic!("{name}: a NaN scale loaded"),
        }
    }
}
