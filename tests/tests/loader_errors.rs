//! The mutation corpus: truncations at every offset, corrupted fields and absurd values each
//! give the right typed error (never a panic), naming the field and its offset.

use webjit_engine::loader::{parse_sha256, Format, LoadOptions, LoaderError};
use webjit_tests::loader_fixtures::{
    digests_chunked, gguf_every_type, gguf_str, safetensors, safetensors_small, GgufBuilder, Kv,
};
use webjit_tests::Rand;

fn load(file: &[u8], format: Format, known_len: bool) -> Result<(), LoaderError> {
    let opts = LoadOptions {
        expected_len: known_len.then_some(file.len() as u64),
        ..Default::default()
    };
    // Pushed in 3-byte chunks so every field is split.
    digests_chunked(file, format, opts, |_| 3).map(|_| ())
}

fn err(file: &[u8], format: Format, known_len: bool) -> LoaderError {
    match load(file, format, known_len) {
        Ok(()) => panic!("a corrupt file loaded"),
        Err(e) => e,
    }
}

fn put_u64(f: &mut [u8], at: u64, v: u64) {
    f[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(f: &mut [u8], at: u64, v: u32) {
    f[at as usize..at as usize + 4].copy_from_slice(&v.to_le_bytes());
}

fn base() -> (
    Vec<u8>,
    webjit_tests::loader_fixtures::GgufLayout,
    GgufBuilder,
) {
    let mut rng = Rand::new(81);
    let b = gguf_every_type(&mut rng, 3);
    let (f, l) = b.build();
    (f, l, b)
}

#[test]
fn gguf_truncated_at_every_offset() {
    let (file, l, _) = base();
    for len in 0..file.len() {
        let e = err(&file[..len], Format::Gguf, false);
        match &e {
            LoaderError::Truncated { got, offset, .. } => {
                assert_eq!(*got, len as u64, "{e}");
                // A tensor may start after `len` (truncated in the alignment padding).
                assert!(*offset <= len as u64 || len as u64 >= l.header_end, "{e}");
            }
            _ => panic!("truncated at {len}: {e}"),
        }
        if let LoaderError::Truncated { field, .. } = &e {
            // Inside the header the error names a header field, past it the tensor.
            let in_data = field.starts_with("tensor `");
            assert_eq!(
                in_data,
                len as u64 >= l.header_end,
                "truncated at {len}: {e}"
            );
        }
        // With the real length known, truncation is still typed (bounds checks may fire first).
        let e2 = err(&file[..len], Format::Gguf, true);
        assert!(
            matches!(
                e2,
                LoaderError::Truncated { .. }
                    | LoaderError::TooLarge { .. }
                    | LoaderError::OutOfBounds { .. }
            ),
            "known-length truncation at {len}: {e2}"
        );
    }
}

#[test]
fn gguf_corrupt_fields_give_typed_errors() {
    let (file, l, b) = base();
    let code = |f: &[u8]| err(f, Format::Gguf, true).code();
    let mut f = file.clone();
    f[0] = b'X';
    assert!(matches!(
        err(&f, Format::Gguf, true),
        LoaderError::BadMagic { .. }
    ));
    for v in [0u32, 1, 4, 0x0300_0000] {
        let mut f = file.clone();
        put_u32(&mut f, 4, v);
        assert_eq!(
            err(&f, Format::Gguf, true),
            LoaderError::UnsupportedVersion { version: v }
        );
    }
    // 2^60 tensors / metadata entries, with and without the file length known.
    for (at, field) in [(8u64, "tensor count"), (16, "metadata count")] {
        let mut f = file.clone();
        put_u64(&mut f, at, 1 << 60);
        for known in [true, false] {
            match err(&f, Format::Gguf, known) {
                LoaderError::TooLarge {
                    field: fld,
                    offset,
                    value,
                    ..
                } => {
                    assert_eq!((fld.as_str(), offset, value), (field, at, 1 << 60));
                }
                e => panic!("{field}: {e}"),
            }
        }
    }
    // A 2^40-byte string: a key, a string value, a tensor name.
    for at in [l.kv_key_len[0], l.kv_payload[0], l.t_name_len[0]] {
        let mut f = file.clone();
        put_u64(&mut f, at, 1 << 40);
        for known in [true, false] {
            match err(&f, Format::Gguf, known) {
                LoaderError::TooLarge { offset, value, .. } => {
                    assert_eq!((offset, value), (at, 1 << 40))
                }
                e => panic!("string at {at}: {e}"),
            }
        }
    }
    // Array of 2^60 strings ("tokens" is kv 12: payload = elem type u32 then count u64).
    let mut f = file.clone();
    put_u64(&mut f, l.kv_payload[12] + 4, 1 << 60);
    assert_eq!(code(&f), "LOAD_TOO_LARGE");
    // Unknown metadata value type, unknown array element type.
    let mut f = file.clone();
    put_u32(&mut f, l.kv_type[2], 13);
    assert!(
        matches!(err(&f, Format::Gguf, true), LoaderError::UnknownValueType { value_type: 13, offset, .. } if offset == l.kv_type[2])
    );
    let mut f = file.clone();
    put_u32(&mut f, l.kv_payload[12], 77);
    assert_eq!(code(&f), "LOAD_UNKNOWN_VALUE_TYPE");
    // A bool that is neither 0 nor 1 (kv 8 is "bool").
    let mut f = file.clone();
    f[l.kv_payload[8] as usize] = 2;
    assert_eq!(code(&f), "LOAD_INVALID_VALUE");
    // Invalid UTF-8 in a key.
    let mut f = file.clone();
    f[l.kv_key_len[0] as usize + 8] = 0xff;
    assert_eq!(code(&f), "LOAD_BAD_UTF8");
    // Unknown tensor types, including the ggml ids the loader does not support (4, 5, 9, and
    // 28, F64; 29 is IQ1_M since the codebook formats).
    for ty in [4u32, 5, 9, 15, 28, 31, 1000] {
        let mut f = file.clone();
        put_u32(&mut f, l.t_type[0], ty);
        match err(&f, Format::Gguf, true) {
            LoaderError::UnknownTensorType {
                ggml_type,
                tensor,
                offset,
            } => {
                assert_eq!((ggml_type, offset), (ty, l.t_type[0]));
                assert_eq!(tensor, b.tensors[0].name);
            }
            e => panic!("type {ty}: {e}"),
        }
    }
    // n_dims 0 and 5.
    for nd in [0u32, 5] {
        let mut f = file.clone();
        put_u32(&mut f, l.t_ndims[0], nd);
        assert_eq!(code(&f), "LOAD_INVALID_VALUE", "n_dims {nd}");
    }
    // Dimension product overflow: dims 2^40 x 2^40 (tensor 1 has 2 dims).
    let mut f = file.clone();
    put_u64(&mut f, l.t_dims[1], 1 << 40);
    put_u64(&mut f, l.t_dims[1] + 8, 1 << 40);
    assert!(
        matches!(err(&f, Format::Gguf, true), LoaderError::DimOverflow { offset, .. } if offset == l.t_name_len[1])
    );
    // A row length that is not whole blocks (tensor 3 is Q4_0).
    let mut f = file.clone();
    put_u64(&mut f, l.t_dims[3], 33);
    assert_eq!(code(&f), "LOAD_INVALID_VALUE");
    // Misaligned data offset (alignment 64).
    let mut f = file.clone();
    put_u64(&mut f, l.t_offset[2], 64 * 3 + 8);
    assert!(matches!(
        err(&f, Format::Gguf, true),
        LoaderError::Misaligned {
            alignment: 64,
            data_offset: 200,
            ..
        }
    ));
    // Offset outside the file.
    let mut f = file.clone();
    put_u64(&mut f, l.t_offset[2], 1 << 30);
    assert!(matches!(
        err(&f, Format::Gguf, true),
        LoaderError::OutOfBounds { .. }
    ));
    assert!(matches!(
        err(&f, Format::Gguf, false),
        LoaderError::Truncated { .. }
    ));
    let mut f = file.clone();
    put_u64(&mut f, l.t_offset[2], u64::MAX - 63);
    assert_eq!(code(&f), "LOAD_OUT_OF_BOUNDS");
    // Overlapping tensors: tensor 2 placed on tensor 1.
    let mut f = file.clone();
    let off1 = u64::from_le_bytes(
        f[l.t_offset[1] as usize..l.t_offset[1] as usize + 8]
            .try_into()
            .unwrap_or_default(),
    );
    put_u64(&mut f, l.t_offset[2], off1);
    assert!(matches!(
        err(&f, Format::Gguf, true),
        LoaderError::Overlap { .. }
    ));
    // Duplicate tensor name (tensor 1 renamed to tensor 0's name of the same length).
    let mut f = file.clone();
    let (n0, n1) = (l.t_name_len[0] as usize + 8, l.t_name_len[1] as usize + 8);
    let name0 = f[n0..n0 + b.tensors[0].name.len()].to_vec();
    if b.tensors[0].name.len() == b.tensors[1].name.len() {
        f[n1..n1 + name0.len()].copy_from_slice(&name0);
        assert_eq!(code(&f), "LOAD_DUPLICATE");
    }
    // Extra bytes after the end with a known length mismatch, and a wrong sha256.
    let opts = LoadOptions {
        expected_len: Some(file.len() as u64 + 1),
        ..Default::default()
    };
    let e = digests_chunked(&file, Format::Gguf, opts, |_| 64).unwrap_err();
    assert!(
        matches!(
            e,
            LoaderError::TooLarge { .. } | LoaderError::SizeMismatch { .. }
        ),
        "{e}"
    );
    let mut longer = file.clone();
    longer.push(0);
    let opts = LoadOptions {
        expected_len: Some(file.len() as u64),
        ..Default::default()
    };
    let e = digests_chunked(&longer, Format::Gguf, opts, |_| 64).unwrap_err();
    assert!(matches!(e, LoaderError::SizeMismatch { .. }), "{e}");
    let opts = LoadOptions {
        sha256: parse_sha256(&"00".repeat(32)),
        ..Default::default()
    };
    assert!(matches!(
        digests_chunked(&file, Format::Gguf, opts, |_| 64).unwrap_err(),
        LoaderError::Checksum { .. }
    ));
    // Conversion into the engine's error keeps the code.
    let e: webjit_engine::Error = err(&file[..10], Format::Gguf, false).into();
    assert_eq!(e.code(), "LOAD_TRUNCATED");
}

#[test]
fn gguf_alignment_key_checked() {
    for (ty, payload) in [
        (4u32, 3u32.to_le_bytes().to_vec()),
        (4, 0u32.to_le_bytes().to_vec()),
        (10, 32u64.to_le_bytes().to_vec()),
    ] {
        let mut b = GgufBuilder::new(3);
        b.kvs.push(Kv {
            key: "general.alignment".into(),
            ty,
            payload,
        });
        let (f, _) = b.build();
        match err(&f, Format::Gguf, true) {
            LoaderError::InvalidValue { field, .. } => assert_eq!(field, "general.alignment"),
            e => panic!("{e}"),
        }
    }
    // Nesting deeper than 8 arrays.
    let mut b = GgufBuilder::new(3);
    let mut payload = Vec::new();
    for _ in 0..10 {
        payload.extend_from_slice(&9u32.to_le_bytes());
        payload.extend_from_slice(&1u64.to_le_bytes());
    }
    payload.extend_from_slice(&gguf_str(b"x"));
    b.kvs.push(Kv {
        key: "deep".into(),
        ty: 9,
        payload: payload[12..].to_vec(),
    });
    let (f, _) = b.build();
    assert_eq!(err(&f, Format::Gguf, false).code(), "LOAD_INVALID_VALUE");
}

#[test]
fn safetensors_corruptions() {
    let mut rng = Rand::new(82);
    let file = safetensors_small(&mut rng);
    let hlen = u64::from_le_bytes(file[..8].try_into().unwrap_or_default());
    for len in 0..file.len() {
        assert!(
            matches!(
                err(&file[..len], Format::Safetensors, false),
                LoaderError::Truncated { .. }
            ),
            "len {len}"
        );
        let e = err(&file[..len], Format::Safetensors, true);
        assert!(
            matches!(
                e,
                LoaderError::Truncated { .. }
                    | LoaderError::TooLarge { .. }
                    | LoaderError::OutOfBounds { .. }
                    | LoaderError::BadJson { .. }
            ),
            "len {len}: {e}"
        );
    }
    let mut f = file.clone();
    put_u64(&mut f, 0, 1 << 40);
    assert!(
        matches!(err(&f, Format::Safetensors, false), LoaderError::TooLarge { value, .. } if value == 1 << 40)
    );
    // Garbage JSON.
    let mut f = file.clone();
    f[8 + 5] = b'}';
    assert_eq!(err(&f, Format::Safetensors, true).code(), "LOAD_BAD_JSON");
    let mut f = file.clone();
    f[8] = b'[';
    assert_eq!(err(&f, Format::Safetensors, true).code(), "LOAD_BAD_JSON");
    let _ = hlen;
    let t = |name: &'static str, dtype: &'static str, shape: Vec<u64>, n: usize| {
        (name, dtype, shape, vec![1u8; n])
    };
    // Unsupported and unknown dtypes.
    for dtype in ["I64", "F64", "U8"] {
        let f = safetensors(&[t("a", dtype, vec![2], 16)], None);
        assert!(
            matches!(
                err(&f, Format::Safetensors, true),
                LoaderError::UnsupportedDType { .. }
            ),
            "{dtype}"
        );
    }
    let f = safetensors(&[t("a", "F33", vec![2], 8)], None);
    assert_eq!(
        err(&f, Format::Safetensors, true).code(),
        "LOAD_UNSUPPORTED_DTYPE"
    );
    // Offsets that disagree with the shape; an overflowing shape.
    let f = safetensors(&[t("a", "F32", vec![3], 8)], None);
    assert_eq!(
        err(&f, Format::Safetensors, true).code(),
        "LOAD_SIZE_MISMATCH"
    );
    let f = safetensors(&[t("a", "F32", vec![1 << 40, 1 << 40], 8)], None);
    assert_eq!(
        err(&f, Format::Safetensors, true).code(),
        "LOAD_DIM_OVERFLOW"
    );
    // Overlap and out of bounds (hand-written headers).
    for (json, code) in [
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            "LOAD_OVERLAP",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[4096,4104]}}"#,
            "LOAD_OUT_OF_BOUNDS",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#,
            "LOAD_BAD_JSON",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#,
            "LOAD_BAD_JSON",
        ),
        (
            r#"{"a":{"shape":[2],"data_offsets":[0,8]}}"#,
            "LOAD_BAD_JSON",
        ),
        (r#"{"__metadata__":{"x":1}}"#, "LOAD_BAD_JSON"),
    ] {
        let mut f = (json.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(json.as_bytes());
        f.extend_from_slice(&[0u8; 16]);
        assert_eq!(err(&f, Format::Safetensors, true).code(), code, "{json}");
    }
}

#[test]
fn sources_and_states_give_typed_errors() {
    use webjit_engine::loader::source::{load_from, read_tensor};
    use webjit_engine::loader::{FileSource, Loader, MemSource, NullSink, WeightSource};
    let e = FileSource::open(std::path::Path::new("/nonexistent/model.gguf")).err();
    assert_eq!(e.map(|e| e.code()), Some("LOAD_IO"));
    let (file, _, _) = base();
    let mut src = MemSource(&file);
    let mut buf = [0u8; 8];
    assert_eq!(
        src.read_at(file.len() as u64 - 4, &mut buf)
            .unwrap_err()
            .code(),
        "LOAD_IO"
    );
    assert_eq!(
        src.read_at(u64::MAX, &mut buf).unwrap_err().code(),
        "LOAD_IO"
    );
    // A tensor info from another (bigger) file cannot be read past this one's end.
    let (h, _) =
        load_from(&mut src, None, LoadOptions::default(), 100, &mut NullSink).expect("load");
    let mut info = h.tensors[0].clone();
    info.offset = file.len() as u64 - 2;
    assert_eq!(
        read_tensor(&mut src, &info).unwrap_err().code(),
        "LOAD_OUT_OF_BOUNDS"
    );
    assert_eq!(
        read_tensor(&mut src, &h.tensors[0]).expect("read").len() as u64,
        h.tensors[0].size
    );
    // Pushing after finish or after an error.
    let mut l = Loader::new(Format::Gguf, LoadOptions::default());
    l.push(&file, &mut NullSink).expect("push");
    l.finish(&mut NullSink).expect("finish");
    assert_eq!(
        l.push(&[0], &mut NullSink).unwrap_err().code(),
        "LOAD_STATE"
    );
    let mut l = Loader::new(Format::Gguf, LoadOptions::default());
    assert!(l.push(b"GGUX", &mut NullSink).is_err());
    assert_eq!(
        l.push(&file, &mut NullSink).unwrap_err().code(),
        "LOAD_STATE"
    );
    // Format sniffing: a GGUF magic is GGUF, anything else is tried as safetensors.
    assert_eq!(Format::sniff(&file), Format::Gguf);
    assert_eq!(Format::sniff(&[1, 0, 0, 0]), Format::Safetensors);
}

/// `Format::detect` names GGUF and safetensors files from their first bytes and refuses
/// anything else with what it looks like: an HTML page (a 404 page or an SPA fallback), text,
/// other binary data; files too short to tell are left to the parsers (which call them cut).
#[test]
fn format_detection_names_what_a_file_is() {
    let mut rng = Rand::new(83);
    let st = safetensors_small(&mut rng);
    let (gguf, _) = gguf_every_type(&mut rng, 3).build();
    let n = Format::DETECT_BYTES;
    assert_eq!(Format::detect(&gguf[..n]).ok(), Some(Format::Gguf));
    assert_eq!(Format::detect(&st[..n]).ok(), Some(Format::Safetensors));
    // Too short to tell: a GGUF prefix is GGUF, the rest goes to safetensors' parser.
    assert_eq!(Format::detect(b"GG").ok(), Some(Format::Gguf));
    assert_eq!(Format::detect(&st[..5]).ok(), Some(Format::Safetensors));
    for (first, looks) in [
        (&b"<!doctype html><html><head>"[..n], "HTML"),
        (&b"\xef\xbb\xbf  \n<html lang=en>..."[..n], "HTML"),
        (&b"<?xml version=\"1.0\"?>"[..n], "HTML or XML"),
        (&b"{\"error\": \"not found\"}"[..n], "text"),
        (
            &b"PK\x03\x04\x14\x00\x00\x00\x08\x00\x00\x00\x21\x00\x00\x00"[..n],
            "binary",
        ),
    ] {
        let e = Format::detect(first).expect_err("an unknown format was accepted");
        assert_eq!(e.code(), "LOAD_UNKNOWN_FORMAT", "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("not a GGUF or safetensors file") && msg.contains(looks),
            "{msg}"
        );
    }
    // A safetensors length with no JSON after it, and an absurd length, are not safetensors.
    let mut bad = st[..n].to_vec();
    bad[8] = b'x';
    assert!(Format::detect(&bad).is_err());
    let mut huge = st[..n].to_vec();
    huge[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(Format::detect(&huge).is_err());
}
