//! Incremental safetensors header parser.
//! Format: <https://github.com/huggingface/safetensors#format>: an 8-byte little-endian header
//! length N, N bytes of JSON (`{"name": {"dtype", "shape", "data_offsets": [begin, end]},
//! "__metadata__": {str: str}}`), then the data; offsets are relative to the data start.

use serde_json::Value;

use super::types::{
    layer_of, Format, MetaEntry, MetaValue, ModelHeader, TensorInfo, TensorType, ValueType,
};
use super::LoaderError;

/// The reference implementation's limit.
const MAX_HEADER: u64 = 100 << 20;

pub(crate) struct SafetensorsParser {
    file_len: Option<u64>,
    json_len: Option<usize>,
    header: Option<ModelHeader>,
    skip_unsupported: bool,
}

impl SafetensorsParser {
    pub(crate) fn new(file_len: Option<u64>, skip_unsupported: bool) -> Self {
        Self {
            file_len,
            json_len: None,
            header: None,
            skip_unsupported,
        }
    }

    pub(crate) fn want(&self) -> usize {
        match (self.json_len, &self.header) {
            (_, Some(_)) => 0,
            (None, None) => 8,
            (Some(n), None) => n,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.header.is_some()
    }

    pub(crate) fn describe(&self) -> String {
        match self.json_len {
            None => "header length".into(),
            Some(_) => "header JSON".into(),
        }
    }

    pub(crate) fn feed(&mut self, b: &[u8], at: u64) -> Result<(), LoaderError> {
        match self.json_len {
            None => {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                let n = u64::from_le_bytes(a);
                let max = match self.file_len {
                    Some(len) => MAX_HEADER.min(len.saturating_sub(8)),
                    None => MAX_HEADER,
                };
                if n > max {
                    return Err(LoaderError::TooLarge {
                        field: "header length".into(),
                        offset: at,
                        value: n,
                        max,
                    });
                }
                if n < 2 {
                    return Err(LoaderError::BadJson {
                        offset: 8,
                        detail: format!("header length {n} is too short for a JSON object"),
                    });
                }
                self.json_len = Some(n as usize);
            }
            Some(_) => {
                self.header = Some(self.parse(b, at)?);
            }
        }
        Ok(())
    }

    fn parse(&self, json: &[u8], at: u64) -> Result<ModelHeader, LoaderError> {
        let bad = |detail: String| LoaderError::BadJson { offset: at, detail };
        if json.first() != Some(&b'{') {
            return Err(bad("header does not start with `{`".into()));
        }
        let root: serde_json::Map<String, Value> =
            serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
        let data_start = at + json.len() as u64;
        let mut metadata = Vec::new();
        let mut tensors = Vec::new();
        for (name, v) in root {
            if name == "__metadata__" {
                let Value::Object(m) = v else {
                    return Err(bad("`__metadata__` is not an object".into()));
                };
                for (key, val) in m {
                    let Value::String(s) = val else {
                        return Err(bad(format!("`__metadata__.{key}` is not a string")));
                    };
                    metadata.push(MetaEntry {
                        key,
                        ty: ValueType::Str,
                        value: MetaValue::Str(s),
                    });
                }
                continue;
            }
            let field = |f: &str| {
                v.get(f)
                    .ok_or_else(|| bad(format!("tensor `{name}` has no `{f}`")))
            };
            let dtype_name = field("dtype")?
                .as_str()
                .ok_or_else(|| bad(format!("tensor `{name}`: `dtype` is not a string")))?;
            let dtype = TensorType::from_safetensors(dtype_name).ok_or_else(|| {
                LoaderError::UnsupportedDType {
                    tensor: name.clone(),
                    dtype: dtype_name.to_string(),
                }
            })?;
            let skipped = matches!(dtype, TensorType::Other(..));
            if skipped && !self.skip_unsupported {
                return Err(LoaderError::UnsupportedDType {
                    tensor: name,
                    dtype: dtype_name.to_string(),
                });
            }
            let shape: Vec<u64> = field("shape")?
                .as_array()
                .and_then(|a| a.iter().map(Value::as_u64).collect())
                .ok_or_else(|| bad(format!("tensor `{name}`: `shape` is not a list of sizes")))?;
            let offs: Vec<u64> = field("data_offsets")?
                .as_array()
                .and_then(|a| a.iter().map(Value::as_u64).collect())
                .filter(|o: &Vec<u64>| o.len() == 2 && o[0] <= o[1])
                .ok_or_else(|| {
                    bad(format!(
                        "tensor `{name}`: `data_offsets` is not [begin, end] with begin <= end"
                    ))
                })?;
            let size = shape
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .and_then(|n| n.checked_mul(dtype.block_bytes()))
                .ok_or_else(|| LoaderError::DimOverflow {
                    tensor: name.clone(),
                    offset: at,
                    dims: shape.clone(),
                })?;
            if offs[1] - offs[0] != size {
                return Err(LoaderError::SizeMismatch {
                    what: format!("tensor `{name}` ({dtype_name} {shape:?})"),
                    expected: size,
                    got: offs[1] - offs[0],
                });
            }
            let offset =
                data_start
                    .checked_add(offs[0])
                    .ok_or_else(|| LoaderError::OutOfBounds {
                        tensor: name.clone(),
                        start: offs[0],
                        end: offs[1],
                        file_len: self.file_len.unwrap_or(u64::MAX),
                    })?;
            tensors.push(TensorInfo {
                layer: layer_of(&name),
                name,
                dtype,
                shape,
                offset,
                size,
                index: 0,
                skipped,
            });
        }
        // JSON objects have no order; the file order is the data order.
        tensors.sort_by(|a, b| (a.offset, &a.name).cmp(&(b.offset, &b.name)));
        for (i, t) in tensors.iter_mut().enumerate() {
            t.index = i;
        }
        let architecture = tensors
            .iter()
            .any(|t| t.name.contains("encoder.layer."))
            .then(|| "bert".to_string());
        super::finish_header(
            ModelHeader {
                format: Format::Safetensors,
                version: 0,
                architecture,
                tensors,
                metadata,
                data_start,
                total_bytes: data_start,
                n_layers: 0,
                alignment: 1,
            },
            self.file_len,
        )
    }

    pub(crate) fn finish(self) -> Result<ModelHeader, LoaderError> {
        self.header.ok_or(LoaderError::State {
            state: "an incomplete safetensors header",
        })
    }
}
