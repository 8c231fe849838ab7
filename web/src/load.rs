//! `ModelLoad`: a model file streamed in by JS, piece by piece, straight onto the GPU. Only
//! the loader's small buffers and one partial quantized row live in wasm memory, so memory
//! stays bounded far below the model size.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use webjit_engine::kv_cache::{parse_kv_cache, KvDType};
use webjit_engine::loader::{
    Format, GpuSink, LoadEvent, LoadOptions, Loader, LoaderError, ModelHeader, TensorInfo,
    TensorSink,
};
use webjit_engine::model::bert::Bert;
use webjit_engine::model::decoder::Decoder;
use webjit_engine::model::generate::Session;
use webjit_engine::model::llm_config::DecoderConfig;
use webjit_engine::model::stream_prefill::{PrefillPrompt, PrefillSink};
use webjit_engine::tokenizer::text::TextTokenizer;
use webjit_engine::{Engine, Error};

use crate::chat::ModelTemplate;
use crate::embed::{max_seq_len_of, WebEmbedder};
use crate::state::{Built, CurrentModel};
use crate::text::WebTextModel;
use crate::{invalid, js_err, js_error, parse_opts, WebEngine};

/// KV-cache length of global layers when the page does not say: browsers (and software
/// adapters) have far less memory than the model's 32k context would take.
const DEFAULT_MAX_CONTEXT: usize = 2048;

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LoadOpts {
    max_context: Option<usize>,
    /// KV cache format: "f16" (the default; f32 where the adapter has no shader-f16), "f32",
    /// "q8_0" or "q4_0".
    kv_cache: Option<String>,
    /// Prefill this prompt while the file streams in: each block runs over it as soon as the
    /// block has arrived. Text is tokenized with the model's vocabulary (BOS added, control
    /// tokens parsed); `startPrefilled` then generates from it.
    prompt: Option<String>,
    prompt_ids: Option<Vec<u32>>,
    /// Set by `loadModel`: a safetensors file is refused as soon as it is recognised, not
    /// after all of it has streamed in.
    #[serde(default)]
    text_model: bool,
}

/// Where the bytes go: straight to the GPU, or through a streaming prefill.
enum Upload {
    Plain(Box<GpuSink>),
    Prefill(Box<PrefillSink>),
}

impl Upload {
    fn sink(&mut self) -> &mut dyn TensorSink {
        match self {
            Upload::Plain(s) => s.as_mut(),
            Upload::Prefill(s) => s.as_mut(),
        }
    }
}

/// Counts loader events for progress reports and forwards the bytes to the GPU sink.
struct ProgressSink {
    gpu: Upload,
    bytes: u64,
    tensors_ready: usize,
    n_tensors: usize,
    layers_ready: usize,
    n_layers: usize,
    header: bool,
    done: bool,
}

impl TensorSink for ProgressSink {
    fn event(&mut self, event: &LoadEvent<'_>) -> Result<(), LoaderError> {
        match event {
            LoadEvent::Header(h) => {
                self.header = true;
                self.n_tensors = h.tensors.len();
                self.n_layers = h.n_layers;
            }
            LoadEvent::Progress {
                bytes,
                tensors_ready,
                ..
            } => {
                self.bytes = *bytes;
                self.tensors_ready = *tensors_ready;
            }
            LoadEvent::LayerReady { .. } => self.layers_ready += 1,
            LoadEvent::Done { bytes, tensors } => {
                self.bytes = *bytes;
                self.tensors_ready = *tensors;
                self.done = true;
            }
            LoadEvent::TensorReady(_) => {}
        }
        self.gpu.sink().event(event)
    }

    fn tensor_data(
        &mut self,
        info: &TensorInfo,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), LoaderError> {
        self.gpu.sink().tensor_data(info, offset, bytes)
    }

    fn tensor_ready(&mut self, info: &TensorInfo) -> Result<(), LoaderError> {
        self.gpu.sink().tensor_ready(info)
    }
}

struct Live {
    /// Created once the format is known (from the option or the first 4 bytes).
    loader: Option<Loader>,
    /// First bytes held until the format can be sniffed.
    prefix: Vec<u8>,
    format: Option<Format>,
    /// Only a GGUF text model will do (`LoadOpts::text_model`).
    text_model: bool,
    sink: ProgressSink,
}

/// A streaming model load (JS class `ModelLoad`).
#[wasm_bindgen(js_name = ModelLoad)]
pub struct WebModelLoad {
    engine: Engine,
    alive: Rc<RefCell<bool>>,
    current: CurrentModel,
    total: u64,
    max_context: usize,
    kv_cache: Option<KvDType>,
    /// `None` after `finish`, `abort` or a failed push: the load is over.
    live: Option<Live>,
}

impl WebModelLoad {
    pub(crate) fn new(
        e: &WebEngine,
        format: &str,
        total_bytes: f64,
        options_json: &str,
    ) -> Result<Self, JsValue> {
        let opts: LoadOpts = parse_opts("load", options_json)?;
        let format = match format {
            "" => None,
            "gguf" => Some(Format::Gguf),
            "safetensors" => Some(Format::Safetensors),
            other => {
                return Err(invalid(format!(
                    "format `{other}`: expected 'gguf', 'safetensors' or ''"
                )))
            }
        };
        if !(total_bytes.is_finite() && total_bytes >= 0.0) {
            return Err(invalid(format!("totalBytes {total_bytes} is not a size")));
        }
        let max_context = opts.max_context.unwrap_or(DEFAULT_MAX_CONTEXT);
        if max_context == 0 {
            return Err(invalid("maxContext must be at least 1"));
        }
        let kv_cache = match opts.kv_cache.as_deref() {
            Some(name) => Some(parse_kv_cache(name).map_err(|_| {
                invalid(format!(
                    "kvCache `{name}`: expected one of {}",
                    KvDType::names()
                ))
            })?),
            None => None,
        };
        let gpu = match (opts.prompt, opts.prompt_ids) {
            (Some(_), Some(_)) => return Err(invalid("give prompt or promptIds, not both")),
            (Some(text), None) => Upload::Prefill(Box::new(
                PrefillSink::new(&e.inner, PrefillPrompt::Text(text), Some(max_context))
                    .with_kv_cache(kv_cache),
            )),
            (None, Some(ids)) => Upload::Prefill(Box::new(
                PrefillSink::new(&e.inner, PrefillPrompt::Ids(ids), Some(max_context))
                    .with_kv_cache(kv_cache),
            )),
            (None, None) => Upload::Plain(Box::new(GpuSink::new(&e.inner))),
        };
        Ok(Self {
            engine: e.inner.clone(),
            alive: e.alive.clone(),
            current: e.current.clone(),
            total: total_bytes as u64,
            max_context,
            kv_cache,
            live: Some(Live {
                loader: None,
                prefix: Vec::new(),
                format,
                text_model: opts.text_model,
                sink: ProgressSink {
                    gpu,
                    bytes: 0,
                    tensors_ready: 0,
                    n_tensors: 0,
                    layers_ready: 0,
                    n_layers: 0,
                    header: false,
                    done: false,
                },
            }),
        })
    }

    fn live(&mut self) -> Result<&mut Live, JsValue> {
        if !*self.alive.borrow() {
            self.live = None;
            return Err(js_err("DISPOSED", "the engine was disposed"));
        }
        self.live
            .as_mut()
            .ok_or_else(|| js_err("INVALID_STATE", "this load has already finished or failed"))
    }

    fn progress(&self) -> String {
        let Some(l) = &self.live else {
            return "{}".into();
        };
        let s = &l.sink;
        let phase = if s.done {
            "done"
        } else if s.header {
            "weights"
        } else {
            "header"
        };
        serde_json::json!({
            "loadedBytes": s.bytes + l.prefix.len() as u64,
            "totalBytes": self.total,
            "tensorsReady": s.tensors_ready,
            "nTensors": s.n_tensors,
            "layersReady": s.layers_ready,
            "nLayers": s.n_layers,
            "layersPrefilled": match &s.gpu {
                Upload::Prefill(p) => p.layers_run().0,
                Upload::Plain(_) => 0,
            },
            "phase": phase,
        })
        .to_string()
    }

    /// Frees what was uploaded: dropping the sink returns its buffers to the pool, which is
    /// then trimmed so the memory goes back to the browser.
    fn end(&mut self) {
        self.live = None;
        self.engine.pool.trim();
        self.engine.forget_bind_groups();
    }
}

#[wasm_bindgen(js_class = ModelLoad)]
impl WebModelLoad {
    /// Feeds the next bytes of the file (pieces may split anywhere). Returns the progress as
    /// JSON. On bad bytes the load ends (its GPU memory is freed) and the error is thrown.
    pub fn push(&mut self, chunk: &[u8]) -> Result<String, JsValue> {
        let total = self.total;
        let live = self.live()?;
        let r = push_into(live, chunk, total);
        if let Err(e) = r {
            self.end();
            return Err(js_error(e));
        }
        Ok(self.progress())
    }

    /// After the last byte: builds the model. A GGUF decoder (llama, qwen2, qwen3, phi3,
    /// gemma2, gemma3) becomes a `TextModel`. Throws `BAD_MODEL_FILE` when the file is incomplete.
    pub fn finish(&mut self) -> Result<WebTextModel, JsValue> {
        self.live()?;
        let Some(mut live) = self.live.take() else {
            return Err(js_err("INVALID_STATE", "this load has already finished"));
        };
        let r = build(&self.engine, &mut live, self.max_context, self.kv_cache);
        drop(live);
        match r {
            Ok(built) => {
                let m = WebTextModel::new(self.engine.clone(), self.alive.clone(), built);
                *self.current.borrow_mut() = Rc::downgrade(&m.inner);
                Ok(m)
            }
            Err(e) => {
                self.engine.pool.trim();
                Err(js_error(e))
            }
        }
    }

    /// After the last byte of a `model.safetensors`: builds the sentence embedder (BERT
    /// family) from the weights streamed in and the bytes of `config.json` and
    /// `tokenizer.json`; `max_seq_len` 0 means 512. Throws `BAD_MODEL_FILE` when the file is
    /// incomplete or lacks a tensor the encoder needs.
    #[wasm_bindgen(js_name = finishEmbedder)]
    pub fn finish_embedder(
        &mut self,
        config: &[u8],
        tokenizer: &[u8],
        max_seq_len: u32,
    ) -> Result<WebEmbedder, JsValue> {
        self.live()?;
        let Some(mut live) = self.live.take() else {
            return Err(js_err("INVALID_STATE", "this load has already finished"));
        };
        let r = build_embedder(
            &self.engine,
            &mut live,
            config,
            tokenizer,
            max_seq_len_of(max_seq_len),
        );
        drop(live);
        match r {
            Ok(bert) => Ok(WebEmbedder::from_bert(self.engine.clone(), bert)),
            Err(e) => {
                self.engine.pool.trim();
                Err(js_error(e))
            }
        }
    }

    /// Stops the load and frees every GPU buffer it uploaded.
    pub fn abort(&mut self) {
        self.end();
    }
}

fn push_into(live: &mut Live, chunk: &[u8], total: u64) -> Result<(), Error> {
    if live.loader.is_none() {
        live.prefix.extend_from_slice(chunk);
        let want = Format::DETECT_BYTES;
        if live.format.is_none() && live.prefix.len() < want && (total == 0 || total > want as u64)
        {
            return Ok(());
        }
        let format = match live.format {
            Some(f) => f,
            None => Format::detect(&live.prefix[..live.prefix.len().min(want)])?,
        };
        if live.text_model && format == Format::Safetensors {
            return Err(not_a_text_model());
        }
        // Safetensors files are sentence encoders: the tensors they carry that the encoder
        // does not read (BERT's I64 `position_ids`) are streamed past.
        let base = match format {
            Format::Safetensors => Bert::load_options(),
            Format::Gguf => LoadOptions::default(),
        };
        let opts = LoadOptions {
            expected_len: (total > 0).then_some(total),
            ..base
        };
        let mut loader = Loader::new(format, opts);
        let first = std::mem::take(&mut live.prefix);
        loader.push(&first, &mut live.sink)?;
        live.loader = Some(loader);
        return Ok(());
    }
    if let Some(loader) = live.loader.as_mut() {
        loader.push(chunk, &mut live.sink)?;
    }
    Ok(())
}

fn not_a_text_model() -> Error {
    Error::Unsupported {
        what: "this is a safetensors file: text models load from GGUF files \
               (engine.loadModel); safetensors sentence encoders load with engine.loadEmbedder"
            .into(),
    }
}

/// After the last byte: the loader's checks of the whole file, and its header. A file shorter
/// than `Format::DETECT_BYTES` of unknown size never reached `detect` while it streamed: it
/// says what it is before being called cut.
fn finish_loader(live: &mut Live) -> Result<ModelHeader, Error> {
    if live.loader.is_none() && live.format.is_none() && !live.prefix.is_empty() {
        Format::detect(&live.prefix)?;
    }
    let cut = || Error::BadModel {
        detail: "the file ended before its header".into(),
    };
    let loader = live.loader.as_mut().ok_or_else(cut)?;
    loader.finish(&mut live.sink)?;
    loader.header().cloned().ok_or_else(cut)
}

fn build(
    engine: &Engine,
    live: &mut Live,
    max_context: usize,
    kv_cache: Option<KvDType>,
) -> Result<Built, Error> {
    let header = finish_loader(live)?;
    if header.format != Format::Gguf {
        return Err(not_a_text_model());
    }
    let arch = header.architecture.clone().unwrap_or_default();
    let template = ModelTemplate::from_gguf(&header.metadata);
    let sink = std::mem::replace(
        &mut live.sink.gpu,
        Upload::Plain(Box::new(GpuSink::new(engine))),
    );
    match sink {
        Upload::Plain(sink) => {
            let cfg = DecoderConfig::from_header(&header)?;
            let tok = TextTokenizer::from_gguf(&header.metadata)?;
            let dec = Decoder::new_with_kv(engine, cfg, *sink, Some(max_context), kv_cache)?;
            Ok(Built {
                session: Session::new(engine, dec)?,
                tok,
                arch,
                template,
                prefilled: None,
            })
        }
        Upload::Prefill(sink) => {
            let p = sink.finish()?;
            let tok = match p.tokenizer {
                Some(t) => t,
                None => TextTokenizer::from_gguf(&header.metadata)?,
            };
            Ok(Built {
                session: Session::new(engine, p.decoder)?,
                tok,
                arch,
                template,
                prefilled: Some((p.prompt, p.logits)),
            })
        }
    }
}

fn build_embedder(
    engine: &Engine,
    live: &mut Live,
    config: &[u8],
    tokenizer: &[u8],
    max_seq_len: usize,
) -> Result<Bert, Error> {
    let header = finish_loader(live)?;
    let sink = std::mem::replace(
        &mut live.sink.gpu,
        Upload::Plain(Box::new(GpuSink::new(engine))),
    );
    let Upload::Plain(sink) = sink else {
        return Err(Error::InvalidArgument {
            op: "loadEmbedder",
            detail: "a streamed prompt (prompt, promptIds) is for text models, not embedders"
                .into(),
        });
    };
    Bert::from_sink(engine, config, tokenizer, max_seq_len, *sink, &header)
}
