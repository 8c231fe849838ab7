//! Small synthetic GGUF and safetensors files for the loader tests, with the byte offsets of
//! their fields recorded so tests can corrupt one field at a time.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::Rand;

/// A metadata value to write: GGUF value type id and its encoded payload (after the type).
pub struct Kv {
    pub key: String,
    pub ty: u32,
    pub payload: Vec<u8>,
}

pub fn gguf_str(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

impl Kv {
    pub fn u32(key: &str, v: u32) -> Kv {
        Kv {
            key: key.into(),
            ty: 4,
            payload: v.to_le_bytes().to_vec(),
        }
    }
    pub fn str(key: &str, v: &str) -> Kv {
        Kv {
            key: key.into(),
            ty: 8,
            payload: gguf_str(v.as_bytes()),
        }
    }
    /// An array of `elem`-typed values already encoded in `data`.
    pub fn array(key: &str, elem: u32, count: u64, data: &[u8]) -> Kv {
        let mut p = elem.to_le_bytes().to_vec();
        p.extend_from_slice(&count.to_le_bytes());
        p.extend_from_slice(data);
        Kv {
            key: key.into(),
            ty: 9,
            payload: p,
        }
    }
}

pub struct GgufTensor {
    pub name: String,
    /// ne order (innermost first), as in the file.
    pub ne: Vec<u64>,
    pub ggml_type: u32,
    pub data: Vec<u8>,
}

/// Where each field of a built GGUF starts.
#[derive(Default, Debug, Clone)]
pub struct GgufLayout {
    pub kv_key_len: Vec<u64>,
    pub kv_type: Vec<u64>,
    pub kv_payload: Vec<u64>,
    pub t_name_len: Vec<u64>,
    pub t_ndims: Vec<u64>,
    pub t_dims: Vec<u64>,
    pub t_type: Vec<u64>,
    pub t_offset: Vec<u64>,
    pub header_end: u64,
    pub data_start: u64,
}

pub struct GgufBuilder {
    pub version: u32,
    pub alignment: u64,
    pub kvs: Vec<Kv>,
    pub tensors: Vec<GgufTensor>,
}

/// Bytes per block and elements per block, from the format definition (ggml-common.h).
pub fn ggml_block(ty: u32) -> (u64, u64) {
    match ty {
        0 => (4, 1),
        1 | 30 => (2, 1),
        2 => (18, 32),
        3 => (20, 32),
        6 => (22, 32),
        7 => (24, 32),
        8 => (34, 32),
        10 => (84, 256),
        11 => (110, 256),
        12 => (144, 256),
        13 => (176, 256),
        14 => (210, 256),
        _ => (1, 1),
    }
}

impl GgufBuilder {
    pub fn new(version: u32) -> Self {
        Self {
            version,
            alignment: 32,
            kvs: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Adds a tensor of random bytes with the right size for its type and shape.
    pub fn tensor(&mut self, rng: &mut Rand, name: &str, ne: &[u64], ggml_type: u32) -> &mut Self {
        let (bb, be) = ggml_block(ggml_type);
        let n: u64 = ne.iter().product::<u64>() / be * bb;
        let data = (0..n).map(|_| rng.range(0, 256) as u8).collect();
        self.tensors.push(GgufTensor {
            name: name.into(),
            ne: ne.to_vec(),
            ggml_type,
            data,
        });
        self
    }

    pub fn build(&self) -> (Vec<u8>, GgufLayout) {
        let mut f = b"GGUF".to_vec();
        let mut l = GgufLayout::default();
        f.extend_from_slice(&self.version.to_le_bytes());
        f.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        f.extend_from_slice(&(self.kvs.len() as u64).to_le_bytes());
        for kv in &self.kvs {
            l.kv_key_len.push(f.len() as u64);
            f.extend_from_slice(&gguf_str(kv.key.as_bytes()));
            l.kv_type.push(f.len() as u64);
            f.extend_from_slice(&kv.ty.to_le_bytes());
            l.kv_payload.push(f.len() as u64);
            f.extend_from_slice(&kv.payload);
        }
        let a = self.alignment;
        let mut rel = 0u64;
        let mut offsets = Vec::new();
        for t in &self.tensors {
            offsets.push(rel);
            rel = (rel + t.data.len() as u64).div_ceil(a) * a;
        }
        for (t, off) in self.tensors.iter().zip(&offsets) {
            l.t_name_len.push(f.len() as u64);
            f.extend_from_slice(&gguf_str(t.name.as_bytes()));
            l.t_ndims.push(f.len() as u64);
            f.extend_from_slice(&(t.ne.len() as u32).to_le_bytes());
            l.t_dims.push(f.len() as u64);
            for d in &t.ne {
                f.extend_from_slice(&d.to_le_bytes());
            }
            l.t_type.push(f.len() as u64);
            f.extend_from_slice(&t.ggml_type.to_le_bytes());
            l.t_offset.push(f.len() as u64);
            f.extend_from_slice(&off.to_le_bytes());
        }
        l.header_end = f.len() as u64;
        let start = (f.len() as u64).div_ceil(a) * a;
        l.data_start = start;
        f.resize(start as usize, 0);
        for (t, off) in self.tensors.iter().zip(&offsets) {
            f.resize((start + off) as usize, 0);
            f.extend_from_slice(&t.data);
        }
        (f, l)
    }
}

/// A GGUF with every metadata value type (incl. nested arrays and an array of strings), the
/// alignment key, and one tensor of every supported type; `blk.0.` and `blk.1.` layers.
pub fn gguf_every_type(rng: &mut Rand, version: u32) -> GgufBuilder {
    let mut b = GgufBuilder::new(version);
    b.alignment = 64;
    b.kvs.push(Kv::str("general.architecture", "testarch"));
    b.kvs.push(Kv::u32("general.alignment", 64));
    b.kvs.push(Kv {
        key: "u8".into(),
        ty: 0,
        payload: vec![7],
    });
    b.kvs.push(Kv {
        key: "i8".into(),
        ty: 1,
        payload: vec![0xf9],
    });
    b.kvs.push(Kv {
        key: "u16".into(),
        ty: 2,
        payload: 513u16.to_le_bytes().to_vec(),
    });
    b.kvs.push(Kv {
        key: "i16".into(),
        ty: 3,
        payload: (-513i16).to_le_bytes().to_vec(),
    });
    b.kvs.push(Kv {
        key: "i32".into(),
        ty: 5,
        payload: (-70000i32).to_le_bytes().to_vec(),
    });
    b.kvs.push(Kv {
        key: "f32".into(),
        ty: 6,
        payload: 1.5f32.to_le_bytes().to_vec(),
    });
    b.kvs.push(Kv {
        key: "bool".into(),
        ty: 7,
        payload: vec![1],
    });
    b.kvs.push(Kv {
        key: "u64".into(),
        ty: 10,
        payload: (1u64 << 40).to_le_bytes().to_vec(),
    });
    b.kvs.push(Kv {
        key: "i64".into(),
        ty: 11,
        payload: (-(1i64 << 40)).to_le_bytes().to_vec(),
    });
    b.kvs.push(Kv {
        key: "f64".into(),
        ty: 12,
        payload: 2.25f64.to_le_bytes().to_vec(),
    });
    let words: Vec<u8> = ["a", "", "héllo", "\u{2581}tok"]
        .iter()
        .flat_map(|s| gguf_str(s.as_bytes()))
        .collect();
    b.kvs.push(Kv::array("tokens", 8, 4, &words));
    let floats: Vec<u8> = (0..3u32)
        .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
        .collect();
    b.kvs.push(Kv::array("scores", 6, 3, &floats));
    b.kvs.push(Kv::array("flags", 7, 3, &[1, 0, 1]));
    let mut nested = Vec::new();
    for n in [2u64, 0] {
        nested.extend_from_slice(&4u32.to_le_bytes());
        nested.extend_from_slice(&n.to_le_bytes());
        for i in 0..n {
            nested.extend_from_slice(&(i as u32 + 10).to_le_bytes());
        }
    }
    b.kvs.push(Kv::array("nested", 9, 2, &nested));
    b.kvs.push(Kv::array("empty", 10, 0, &[]));
    let types = [0u32, 1, 30, 2, 3, 6, 7, 8, 10, 11, 12, 13, 14];
    for (i, &t) in types.iter().enumerate() {
        let (_, be) = ggml_block(t);
        let layer = i % 2;
        b.tensor(rng, &format!("blk.{layer}.w{t}"), &[be * 2, 3], t);
    }
    b.tensor(rng, "output_norm.weight", &[5], 0);
    b
}

/// A safetensors file: (name, dtype, shape, data).
pub fn safetensors(
    tensors: &[(&str, &str, Vec<u64>, Vec<u8>)],
    metadata: Option<&[(&str, &str)]>,
) -> Vec<u8> {
    let mut header = serde_like_json(tensors, metadata);
    while !header.len().is_multiple_of(8) {
        header.push(' ');
    }
    let mut f = (header.len() as u64).to_le_bytes().to_vec();
    f.extend_from_slice(header.as_bytes());
    for t in tensors {
        f.extend_from_slice(&t.3);
    }
    f
}

fn serde_like_json(
    tensors: &[(&str, &str, Vec<u64>, Vec<u8>)],
    metadata: Option<&[(&str, &str)]>,
) -> String {
    let mut parts = Vec::new();
    if let Some(m) = metadata {
        let kv: Vec<String> = m.iter().map(|(k, v)| format!("\"{k}\":\"{v}\"")).collect();
        parts.push(format!("\"__metadata__\":{{{}}}", kv.join(",")));
    }
    let mut off = 0usize;
    for (name, dtype, shape, data) in tensors {
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        parts.push(format!(
            "\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":[{}],\"data_offsets\":[{off},{}]}}",
            dims.join(","),
            off + data.len()
        ));
        off += data.len();
    }
    format!("{{{}}}", parts.join(","))
}

/// A small BERT-like safetensors file with f32, f16 and bf16 tensors in two layers.
pub fn safetensors_small(rng: &mut Rand) -> Vec<u8> {
    let mut bytes = |n: usize| -> Vec<u8> { (0..n).map(|_| rng.range(0, 256) as u8).collect() };
    let t = vec![
        (
            "embeddings.word_embeddings.weight",
            "F32",
            vec![7, 5],
            bytes(7 * 5 * 4),
        ),
        (
            "encoder.layer.0.attention.self.query.weight",
            "F16",
            vec![5, 3],
            bytes(5 * 3 * 2),
        ),
        (
            "encoder.layer.0.output.dense.bias",
            "BF16",
            vec![3],
            bytes(3 * 2),
        ),
        (
            "encoder.layer.1.attention.self.query.weight",
            "F32",
            vec![3, 5],
            bytes(3 * 5 * 4),
        ),
        (
            "encoder.layer.1.output.dense.bias",
            "F16",
            vec![1],
            bytes(2),
        ),
        ("pooler.dense.bias", "BF16", vec![4, 1, 2], bytes(16)),
    ];
    safetensors(&t, Some(&[("format", "pt")]))
}

/// The model cache (same rule as scripts/fetch-models.sh).
pub fn model_dir() -> PathBuf {
    let base = std::env::var_os("WEBJIT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/webjit")
        });
    base.join("models")
}

/// A model file from the cache; a missing one FAILS the test (never skips).
pub fn model_file(rel: &str) -> PathBuf {
    let p = model_dir().join(rel);
    assert!(
        p.is_file(),
        "\n\n*** model file {} is missing: run `make models` (scripts/fetch-models.sh) first\n\n",
        p.display()
    );
    p
}

pub const GEMMA: &str = "gemma-3-270m-q4_k_m.gguf";
pub const MINILM: &str = "all-MiniLM-L6-v2/model.safetensors";

/// Digests of every tensor, loading `file` pushed in chunks from `sizes` (cycled).
pub fn digests_chunked(
    file: &[u8],
    format: webjit_engine::loader::Format,
    opts: webjit_engine::loader::LoadOptions,
    mut next_size: impl FnMut(u64) -> usize,
) -> Result<(BTreeMap<String, [u8; 32]>, usize), webjit_engine::loader::LoaderError> {
    use webjit_engine::loader::{HashSink, Loader};
    let mut sink = HashSink::default();
    let mut loader = Loader::new(format, opts);
    let mut off = 0usize;
    while off < file.len() {
        let n = next_size(off as u64).max(1).min(file.len() - off);
        loader.push(&file[off..off + n], &mut sink)?;
        off += n;
    }
    loader.finish(&mut sink)?;
    Ok((sink.digests, sink.pieces))
}
