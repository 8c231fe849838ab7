//! The engine-side sink: tensors streamed in odd-sized chunks are uploaded piece by piece
//! (across buffer segments) and read back equal to the file: F32 as is, F16/BF16 widened to
//! f32 (checked against reference decoders), quantized blocks as raw u32 words.

use webjit_engine::loader::source::{load_from, read_tensor};
use webjit_engine::loader::{FileSource, Format, GpuSink, LoadOptions, Loader, TensorType};
use webjit_engine::{DType, Engine};
use webjit_tests::loader_fixtures::{ggml_block, model_file, safetensors, GgufBuilder, MINILM};
use webjit_tests::oracle_loader::{bf16_bits_to_f64, f16_bits_to_f64};
use webjit_tests::{assert_close, small_binding_engine, Rand};

/// Random finite 16-bit floats: exponent field never all ones.
fn half_bits(rng: &mut Rand, n: usize, exp_bits: u32) -> Vec<u8> {
    let mant = 15 - exp_bits;
    (0..n)
        .flat_map(|_| {
            let mut h = rng.range(0, 1 << 16) as u16;
            let all_ones = ((1u16 << exp_bits) - 1) << mant;
            if h & all_ones == all_ones {
                h &= !(1 << mant);
            }
            if h & 0x7fff == 0 {
                h |= 1 << mant; // never zero
            }
            h.to_le_bytes()
        })
        .collect()
}

fn f32_bytes(rng: &mut Rand, n: usize) -> Vec<u8> {
    rng.vec(n, -2.0, 2.0)
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

/// Decodes file bytes the reference way, per type.
fn expect_f64(ty: TensorType, bytes: &[u8]) -> Vec<f64> {
    match ty {
        TensorType::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect(),
        TensorType::F16 => bytes
            .chunks_exact(2)
            .map(|c| f16_bits_to_f64(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        TensorType::BF16 => bytes
            .chunks_exact(2)
            .map(|c| bf16_bits_to_f64(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        _ => unreachable!("float types only"),
    }
}

fn check_uploaded(
    engine: &Engine,
    sink: &GpuSink,
    name: &str,
    ty: TensorType,
    bytes: &[u8],
    seed: u64,
) {
    let t = &sink
        .tensors
        .get(name)
        .unwrap_or_else(|| panic!("{name} not uploaded"))
        .tensor;
    if ty.is_quantized() {
        assert_eq!(t.dtype(), DType::U32);
        let words = engine.read_u32(t).expect("read");
        let mut want = bytes.to_vec();
        want.resize(bytes.len().div_ceil(4) * 4, 0);
        let got: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert!(
            got == want,
            "{name} ({}): raw blocks differ (seed {seed})",
            ty.name()
        );
    } else {
        let got = engine.read_f32(t).expect("read");
        // Widening f16/bf16 to f32 is exact.
        assert_close(name, seed, &got, &expect_f64(ty, bytes), 0.0, 0.0, 0.0);
    }
}

#[test]
fn gguf_and_safetensors_upload_piecewise_across_segments() {
    let engine = small_binding_engine();
    let mut rng = Rand::new(0x9e0);
    let seed = rng.seed;
    let mut b = GgufBuilder::new(3);
    // [rows, row] sizes chosen so f32 results exceed the 64 KiB test binding (segmented),
    // rows are 1 and primes, and quantized rows are and are not whole u32 words.
    let specs: [(&str, u32, [u64; 2]); 8] = [
        ("blk.0.f32", 0, [64, 300]),
        ("blk.0.f16", 1, [96, 211]),
        ("blk.1.bf16", 30, [13, 1]),
        ("blk.1.q8_0", 8, [2048, 37]),
        ("blk.1.q4_0", 2, [32, 3]),
        ("blk.2.q6_k", 14, [256, 3]),
        ("blk.2.q4_k", 12, [512, 1]),
        ("blk.2.q5_1", 7, [96, 7]),
    ];
    for (name, ty, ne) in specs {
        let n = ne[0] * ne[1];
        let data = match ty {
            0 => f32_bytes(&mut rng, n as usize),
            1 => half_bits(&mut rng, n as usize, 5),
            30 => half_bits(&mut rng, n as usize, 8),
            _ => (0..n / ggml_block(ty).1 * ggml_block(ty).0)
                .map(|_| rng.range(0, 256) as u8)
                .collect(),
        };
        b.tensors.push(webjit_tests::loader_fixtures::GgufTensor {
            name: name.into(),
            ne: ne.to_vec(),
            ggml_type: ty,
            data,
        });
    }
    let (file, _) = b.build();
    let mut sink = GpuSink::new(engine);
    // Raw words first (repacking is checked in `quantized_tensors_stream_into_repacked_weights`).
    sink.repack_quantized = false;
    let mut loader = Loader::new(Format::Gguf, LoadOptions::default());
    let mut off = 0;
    while off < file.len() {
        let n = rng.range(1, 700).min(file.len() - off);
        loader.push(&file[off..off + n], &mut sink).expect("push");
        off += n;
    }
    loader.finish(&mut sink).expect("finish");
    for t in &b.tensors {
        let ty = TensorType::from_ggml(t.ggml_type).expect("type");
        check_uploaded(engine, &sink, &t.name, ty, &t.data, seed);
    }
    assert!(
        sink.tensors["blk.0.f32"].tensor.is_segmented(),
        "the test must cross segments"
    );
    assert!(
        sink.tensors["blk.1.q8_0"].tensor.is_segmented(),
        "the test must cross segments"
    );

    // Safetensors: f32, f16, bf16.
    let ts = vec![
        (
            "embeddings.word_embeddings.weight",
            "F32",
            vec![211u64, 97],
            f32_bytes(&mut rng, 211 * 97),
        ),
        (
            "encoder.layer.0.w",
            "F16",
            vec![1, 17],
            half_bits(&mut rng, 17, 5),
        ),
        (
            "encoder.layer.0.b",
            "BF16",
            vec![173, 101],
            half_bits(&mut rng, 173 * 101, 8),
        ),
    ];
    let file = safetensors(&ts, None);
    let mut sink = GpuSink::new(engine);
    let mut loader = Loader::new(Format::Safetensors, LoadOptions::default());
    for c in file.chunks(333) {
        loader.push(c, &mut sink).expect("push");
    }
    loader.finish(&mut sink).expect("finish");
    for (name, dtype, shape, data) in &ts {
        let ty = TensorType::from_safetensors(dtype).expect("dtype");
        check_uploaded(engine, &sink, name, ty, data, seed);
        let got: Vec<u64> = sink.tensors[*name]
            .tensor
            .shape()
            .iter()
            .map(|&d| d as u64)
            .collect();
        assert_eq!(&got, shape);
    }
}

#[test]
fn minilm_uploads_and_matches_random_access_reads() {
    let engine = webjit_tests::engine();
    let path = model_file(MINILM);
    let mut src = FileSource::open(&path).expect("open");
    let mut sink = GpuSink::new(engine);
    let opts = LoadOptions {
        skip_unsupported: true,
        ..Default::default()
    };
    let (header, summary) = load_from(
        &mut src,
        Some(Format::Safetensors),
        opts,
        64 << 10,
        &mut sink,
    )
    .expect("load");
    assert_eq!(sink.tensors.len(), summary.tensors);
    for name in [
        "embeddings.word_embeddings.weight",
        "encoder.layer.5.output.dense.weight",
        "pooler.dense.bias",
    ] {
        let info = header
            .tensor(name)
            .unwrap_or_else(|| panic!("{name} missing"));
        let bytes = read_tensor(&mut src, info).expect("read_tensor");
        check_uploaded(engine, &sink, name, info.dtype, &bytes, 0);
    }
}

#[test]
fn quantized_tensors_stream_into_repacked_weights() {
    use webjit_engine::jit::quant::GgmlType;
    use webjit_engine::ops;
    // Streamed in odd-sized chunks, repacked row by row across buffer segments, the weights
    // must dequantize exactly like the same bytes uploaded whole.
    let engine = small_binding_engine();
    let mut rng = Rand::new(0x9e1);
    let mut b = GgufBuilder::new(3);
    let specs: [(&str, u32, [u64; 2]); 5] = [
        ("blk.0.q8_0", 8, [2048, 37]),
        ("blk.0.q4_0", 2, [32, 3]),
        ("blk.1.q6_k", 14, [256, 400]),
        ("blk.1.q4_k", 12, [512, 1]),
        ("blk.2.q5_0", 6, [96, 7]),
    ];
    for (name, ty, ne) in specs {
        let (bb, be) = ggml_block(ty); // (bytes, elements) per block
        let data: Vec<u8> = (0..ne[0] * ne[1] / be * bb)
            .map(|_| rng.range(0, 256) as u8)
            .collect();
        b.tensors.push(webjit_tests::loader_fixtures::GgufTensor {
            name: name.into(),
            ne: ne.to_vec(),
            ggml_type: ty,
            data,
        });
    }
    let (file, _) = b.build();
    let mut sink = GpuSink::new(engine);
    let mut loader = Loader::new(Format::Gguf, LoadOptions::default());
    let mut off = 0;
    while off < file.len() {
        let n = rng.range(1, 1500).min(file.len() - off);
        loader.push(&file[off..off + n], &mut sink).expect("push");
        off += n;
    }
    loader.finish(&mut sink).expect("finish");
    assert!(
        sink.qtensors["blk.1.q6_k"].segments().len() > 1,
        "the test must cross segments"
    );
    for t in &b.tensors {
        let q = &sink.qtensors[&t.name];
        let format = GgmlType::from_id(t.ggml_type).expect("type");
        let whole = engine
            .upload_quantized(format, [t.ne[1] as usize, t.ne[0] as usize], &t.data)
            .expect("upload");
        assert_eq!(q.shape(), whole.shape());
        // The same matvec over both weights (outputs are small enough for one binding).
        let k = t.ne[0] as usize;
        let x = engine
            .upload_f32(&[2, k], &rng.vec(2 * k, -1.0, 1.0))
            .expect("x");
        let mut rec = engine.recorder();
        let a = ops::qmatvec(&x, q)
            .record(&mut rec)
            .expect("matvec streamed");
        let bb = ops::qmatvec(&x, &whole)
            .record(&mut rec)
            .expect("matvec whole");
        rec.submit().expect("submit");
        let (a, bb) = (
            engine.read_f32(&a).expect("read"),
            engine.read_f32(&bb).expect("read"),
        );
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert!(
            bits(&a) == bits(&bb),
            "{}: streamed repack differs from whole upload (seed {})",
            t.name,
            rng.seed
        );
    }
}
