//! Synthetic files: every metadata value type and every tensor type parse to the values that
//! were written, and splitting the file at every offset (two chunks), or into chunks of every
//! size from 1 to 97 bytes, gives the same tensors as one push. Events arrive in order.

use webjit_engine::loader::{
    Format, LoadEvent, LoadOptions, Loader, LoaderError, MetaArray, MetaValue, TensorInfo,
    TensorSink, TensorType,
};
use webjit_tests::loader_fixtures::{digests_chunked, gguf_every_type, safetensors_small};
use webjit_tests::Rand;

fn check_all_splits(label: &str, file: &[u8], format: Format) {
    let opts = LoadOptions {
        expected_len: Some(file.len() as u64),
        ..Default::default()
    };
    let (want, _) = digests_chunked(file, format, opts.clone(), |_| file.len())
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    for split in 1..file.len() {
        let (got, _) = digests_chunked(file, format, opts.clone(), |off| {
            if off == 0 {
                split
            } else {
                file.len()
            }
        })
        .unwrap_or_else(|e| panic!("{label}: split at {split}: {e}"));
        assert_eq!(got, want, "{label}: split at {split}");
    }
    for size in 1..=97 {
        let (got, _) = digests_chunked(file, format, opts.clone(), |_| size)
            .unwrap_or_else(|e| panic!("{label}: size {size}: {e}"));
        assert_eq!(got, want, "{label}: chunks of {size}");
    }
}

#[test]
fn gguf_all_splits_v2_v3() {
    for version in [2, 3] {
        let mut rng = Rand::new(71 + version as u64);
        let (file, _) = gguf_every_type(&mut rng, version).build();
        check_all_splits(&format!("gguf v{version}"), &file, Format::Gguf);
    }
}

#[test]
fn safetensors_all_splits() {
    let mut rng = Rand::new(72);
    check_all_splits(
        "safetensors",
        &safetensors_small(&mut rng),
        Format::Safetensors,
    );
}

/// Records events and assembles tensors (fine for tiny files).
#[derive(Default)]
struct Recorder {
    log: Vec<String>,
    tensors: Vec<(String, Vec<u8>)>,
    progress: Vec<u64>,
}

impl TensorSink for Recorder {
    fn event(&mut self, e: &LoadEvent<'_>) -> Result<(), LoaderError> {
        match e {
            LoadEvent::Header(h) => self.log.push(format!("header {}", h.tensors.len())),
            LoadEvent::LayerReady { layer } => self.log.push(format!("layer {layer}")),
            LoadEvent::TensorReady(t) => self.log.push(format!("tensor {}", t.name)),
            LoadEvent::Done { tensors, .. } => self.log.push(format!("done {tensors}")),
            LoadEvent::Progress { bytes, .. } => self.progress.push(*bytes),
        }
        Ok(())
    }
    fn tensor_data(
        &mut self,
        info: &TensorInfo,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), LoaderError> {
        if offset == 0 {
            self.tensors.push((info.name.clone(), Vec::new()));
        }
        if let Some(t) = self.tensors.last_mut() {
            t.1.extend_from_slice(bytes);
        }
        Ok(())
    }
    fn tensor_ready(&mut self, _: &TensorInfo) -> Result<(), LoaderError> {
        Ok(())
    }
}

#[test]
fn gguf_values_tensors_and_events() {
    for version in [2, 3] {
        let mut rng = Rand::new(73);
        let b = gguf_every_type(&mut rng, version);
        let (file, layout) = b.build();
        let mut sink = Recorder::default();
        let mut loader = Loader::new(Format::Gguf, LoadOptions::default());
        for c in file.chunks(5) {
            loader.push(c, &mut sink).expect("push");
        }
        let summary = loader.finish(&mut sink).expect("finish");
        let h = loader.header().expect("header").clone();
        assert_eq!(h.version, version);
        assert_eq!(h.alignment, 64);
        assert_eq!(h.data_start, layout.data_start);
        assert_eq!(h.architecture.as_deref(), Some("testarch"));
        let get = |k: &str| h.get(k).cloned().unwrap_or_else(|| panic!("key {k}"));
        assert_eq!(get("u8"), MetaValue::Uint(7));
        assert_eq!(get("i8"), MetaValue::Int(-7));
        assert_eq!(get("u16"), MetaValue::Uint(513));
        assert_eq!(get("i16"), MetaValue::Int(-513));
        assert_eq!(get("i32"), MetaValue::Int(-70000));
        assert_eq!(get("f32"), MetaValue::Float(1.5));
        assert_eq!(get("bool"), MetaValue::Bool(true));
        assert_eq!(get("u64"), MetaValue::Uint(1 << 40));
        assert_eq!(get("i64"), MetaValue::Int(-(1 << 40)));
        assert_eq!(get("f64"), MetaValue::Float(2.25));
        let MetaValue::Array(tokens) = get("tokens") else {
            panic!("tokens")
        };
        assert_eq!(tokens.len(), 4);
        assert_eq!(tokens.str_at(2), Some("héllo".as_bytes()));
        assert_eq!(tokens.str_at(1), Some(&b""[..]));
        let MetaValue::Array(MetaArray::Fixed { raw, .. }) = get("scores") else {
            panic!("scores")
        };
        assert_eq!(
            raw,
            [0.0f32, 0.5, 1.0]
                .iter()
                .flat_map(|f| f.to_le_bytes())
                .collect::<Vec<_>>()
        );
        let MetaValue::Array(MetaArray::Array(nested)) = get("nested") else {
            panic!("nested")
        };
        assert_eq!(nested.len(), 2);
        assert_eq!(nested[0].len(), 2);
        assert!(nested[1].is_empty());
        assert!(matches!(get("empty"), MetaValue::Array(a) if a.is_empty()));
        // Tensors: every type, bytes exactly as written, shapes reversed to row-major.
        assert_eq!(summary.tensors, b.tensors.len());
        for (t, info) in b.tensors.iter().zip(&h.tensors) {
            assert_eq!(info.name, t.name);
            assert_eq!(Some(info.dtype), TensorType::from_ggml(t.ggml_type));
            assert_eq!(info.shape, t.ne.iter().rev().copied().collect::<Vec<_>>());
            let got = sink.tensors.iter().find(|x| x.0 == t.name).map(|x| &x.1);
            assert_eq!(got, Some(&t.data), "{} bytes", t.name);
        }
        // Progress after every push once the header is known: increasing, ending at the length.
        assert!(
            sink.progress.windows(2).all(|w| w[0] < w[1]),
            "progress not increasing"
        );
        assert_eq!(sink.progress.last(), Some(&(file.len() as u64)));
        assert!(sink.progress.len() >= (file.len() as u64 - h.data_start) as usize / 5);
        // Order: header first, each layer right after its last tensor, done last.
        assert_eq!(sink.log.first().map(String::as_str), Some("header 14"));
        assert_eq!(sink.log.last().map(String::as_str), Some("done 14"));
        let pos = |s: &str| {
            sink.log
                .iter()
                .position(|x| x == s)
                .unwrap_or_else(|| panic!("{s} missing: {:?}", sink.log))
        };
        assert_eq!(pos("layer 0"), pos("tensor blk.0.w14") + 1);
        assert_eq!(pos("layer 1"), pos("tensor blk.1.w13") + 1);
    }
}
