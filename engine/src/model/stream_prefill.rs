//! Prefill while the weights stream in: a loader sink that uploads like `GpuSink` and, as soon
//! as the token embedding and then each block have arrived, runs that block over the prompt
//! (one submission per block, so the GPU works while the rest of the file loads). When the
//! load ends, the decoder is assembled around the already-filled KV caches and the logits of
//! the last prompt position are recorded.

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::kv_cache::{KvCache, KvDType};
use crate::loader::source::load_from;
use crate::loader::HOST_TENSORS;
use crate::loader::{
    GpuSink, LoadEvent, LoadOptions, LoaderError, ModelHeader, TensorInfo, TensorSink, WeightSource,
};
use crate::model::decoder::cache_context;
use crate::model::decoder::{
    block, embed, new_caches, BlockInput, Decoder, Input, Layer, Matrix, ProductPlan, Step, Weights,
};
use crate::model::llm_config::DecoderConfig;
use crate::tensor::Tensor;
use crate::tokenizer::text::TextTokenizer;
use crate::Engine;

/// What streaming prefill did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StreamStats {
    /// Blocks run over the prompt before the last byte of the file had arrived.
    pub layers_before_load_end: usize,
    pub n_layers: usize,
    /// Seconds from the end of the load until the prompt's logits were computed: the prefill
    /// time the load did not hide (native; 0 on the web).
    pub after_load_s: f64,
}

struct State {
    cfg: DecoderConfig,
    caches: Vec<KvCache>,
    layers: Vec<Layer>,
    /// Blocks whose tensors have all arrived but that have not run yet.
    ready: BTreeSet<usize>,
    /// The prompt's hidden state after `layers.len()` blocks (None until the embedding ran).
    x: Option<Tensor>,
    /// The prompt's positions and RoPE tables, shared by every block.
    step: Step,
    /// The RoPE factor tensor the blocks wait for (a host copy goes into `cfg`).
    rope_pending: Option<&'static str>,
}

/// The prompt of a streaming prefill: ids, or text tokenized with the model's own vocabulary
/// once the header has arrived (callers that have no tokenizer before the file, such as a
/// browser page, give text).
pub enum PrefillPrompt {
    Ids(Vec<u32>),
    /// Encoded with special-token parsing and the model's BOS, which is added only when the
    /// text does not already begin with it (a chat template such as Gemma's or Llama 3's
    /// writes it), as `ChatTemplate::prompt_ids` does.
    Text(String),
}

/// A loader sink that uploads like `GpuSink` and runs each block over the prompt as soon as
/// the block has arrived. Feed it through a `Loader` (or `load_from`), then `finish`.
pub struct PrefillSink {
    engine: Engine,
    inner: GpuSink,
    prompt_in: Option<PrefillPrompt>,
    prompt: Vec<u32>,
    tokenizer: Option<TextTokenizer>,
    max_context: Option<usize>,
    kv: Option<KvDType>,
    state: Option<State>,
    stats: StreamStats,
}

/// What a finished streaming prefill hands over.
pub struct Prefilled {
    /// The decoder with the prompt in its KV caches.
    pub decoder: Decoder,
    /// The prompt's ids (as tokenized when it was given as text).
    pub prompt: Vec<u32>,
    /// [1, vocab] logits of the last prompt position.
    pub logits: Tensor,
    /// The tokenizer built from the header when the prompt was text.
    pub tokenizer: Option<TextTokenizer>,
    pub stats: StreamStats,
}

fn to_loader(what: &str, e: Error) -> LoaderError {
    LoaderError::Sink {
        tensor: what.to_string(),
        code: e.code(),
        detail: e.to_string(),
    }
}

impl PrefillSink {
    pub fn new(engine: &Engine, prompt: PrefillPrompt, max_context: Option<usize>) -> Self {
        Self {
            engine: engine.clone(),
            inner: GpuSink::new(engine),
            prompt_in: Some(prompt),
            prompt: Vec::new(),
            tokenizer: None,
            max_context,
            kv: None,
            state: None,
            stats: StreamStats::default(),
        }
    }

    /// The KV caches in format `kv` (`None`, the default: f16 where the device has
    /// shader-f16, else f32).
    pub fn with_kv_cache(mut self, kv: Option<KvDType>) -> Self {
        self.kv = kv;
        self
    }

    /// Blocks run over the prompt so far, of how many.
    pub fn layers_run(&self) -> (usize, usize) {
        self.state
            .as_ref()
            .map_or((0, 0), |s| (s.layers.len(), s.cfg.n_layers))
    }

    fn start(&mut self, h: &ModelHeader) -> Result<()> {
        let mut cfg = DecoderConfig::from_header(h)?;
        let context = cache_context(&cfg, self.max_context);
        let rope_pending = match cfg.rope_factors.tensor(context) {
            Some(name) if h.tensor(name).is_some() => Some(name),
            // Not in the file: fine where the factors are optional, an error where not.
            _ => {
                cfg = cfg.with_rope_factors(context, &Default::default())?;
                None
            }
        };
        self.prompt = match self.prompt_in.take() {
            Some(PrefillPrompt::Ids(ids)) => ids,
            Some(PrefillPrompt::Text(text)) => {
                let tok = TextTokenizer::from_gguf(&h.metadata)?;
                let ids = tok.encode(&text, !crate::chat::starts_with_bos(&tok, &text))?;
                self.tokenizer = Some(tok);
                ids
            }
            None => std::mem::take(&mut self.prompt),
        };
        if self.prompt.is_empty() {
            return Err(Error::InvalidArgument {
                op: "prefill",
                detail: "empty prompt".into(),
            });
        }
        crate::ops::check_ids("prefill", &self.prompt, cfg.vocab)?;
        let caches = new_caches(&self.engine, &cfg, self.max_context, self.kv)?;
        let cap = caches
            .iter()
            .map(|c| c.options().capacity)
            .max()
            .unwrap_or(0);
        if self.prompt.len() > cap {
            return Err(Error::InvalidArgument {
                op: "prefill",
                detail: format!(
                    "{} prompt tokens exceed the context of {cap}",
                    self.prompt.len()
                ),
            });
        }
        self.state = Some(State {
            step: Step::new((0..self.prompt.len() as u32).collect()),
            cfg,
            caches,
            layers: Vec::new(),
            ready: BTreeSet::new(),
            x: None,
            rope_pending,
        });
        Ok(())
    }

    /// Takes the RoPE factors into the config once they arrived; false while they have not.
    fn rope_ready(&mut self) -> Result<bool> {
        let Some(st) = self.state.as_mut() else {
            return Ok(false);
        };
        let Some(name) = st.rope_pending else {
            return Ok(true);
        };
        if !self.inner.host.contains_key(name) {
            return Ok(false);
        }
        let context = cache_context(&st.cfg, self.max_context);
        st.cfg = st
            .cfg
            .clone()
            .with_rope_factors(context, &self.inner.host)?;
        st.rope_pending = None;
        Ok(true)
    }

    /// Runs every block that can run now, in order.
    fn advance(&mut self) -> Result<()> {
        if !self.rope_ready()? {
            return Ok(());
        }
        let Some(st) = self.state.as_mut() else {
            return Ok(());
        };
        if st.x.is_none() {
            let name = "token_embd.weight";
            let table = match (self.inner.qtensors.get(name), self.inner.tensors.get(name)) {
                (Some(q), _) => Matrix::Quantized(q.clone()),
                (None, Some(t)) => Matrix::Dense(t.tensor.clone()),
                (None, None) => return Ok(()),
            };
            let mut rec = self.engine.recorder();
            let x = embed(
                &mut rec,
                &st.cfg,
                &table,
                Input::Host(&self.prompt),
                self.prompt.len(),
            )?;
            rec.submit()?;
            st.x = Some(x);
        }
        while st.ready.remove(&st.layers.len()) {
            let i = st.layers.len();
            // Take this block's tensors out of the sink's maps.
            let mut w = Weights {
                f: std::mem::take(&mut self.inner.tensors),
                q: std::mem::take(&mut self.inner.qtensors),
            };
            let products = ProductPlan::for_device(self.engine.profile());
            let layer = w.layer(&self.engine, &st.cfg, i, products);
            self.inner.tensors = w.f;
            self.inner.qtensors = w.q;
            let layer = layer?;
            let Some(x) = st.x.take() else {
                return Ok(());
            };
            let mut rec = self.engine.recorder();
            let y = block(
                &mut rec,
                &st.cfg,
                &layer,
                &mut st.caches[i],
                BlockInput::new(x),
                None,
                &mut st.step,
            )?;
            rec.submit()?;
            st.x = Some(y.hidden()?);
            st.layers.push(layer);
        }
        Ok(())
    }
}

impl TensorSink for PrefillSink {
    fn event(&mut self, event: &LoadEvent<'_>) -> Result<(), LoaderError> {
        self.inner.event(event)?;
        match event {
            LoadEvent::Header(h) => self.start(h).map_err(|e| to_loader("header", e)),
            LoadEvent::LayerReady { layer } => {
                if let Some(st) = self.state.as_mut() {
                    st.ready.insert(*layer);
                }
                let before = self.state.as_ref().map_or(0, |s| s.layers.len());
                self.advance().map_err(|e| to_loader("prefill", e))?;
                let after = self.state.as_ref().map_or(0, |s| s.layers.len());
                self.stats.layers_before_load_end += after - before;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn tensor_data(
        &mut self,
        info: &TensorInfo,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), LoaderError> {
        self.inner.tensor_data(info, offset, bytes)
    }

    fn tensor_ready(&mut self, info: &TensorInfo) -> Result<(), LoaderError> {
        self.inner.tensor_ready(info)?;
        if info.name == "token_embd.weight" || HOST_TENSORS.contains(&info.name.as_str()) {
            self.advance().map_err(|e| to_loader("prefill", e))?;
        }
        Ok(())
    }
}

impl PrefillSink {
    /// After the loader finished: runs the blocks the loader never announced (or that waited
    /// for the embedding), assembles the decoder around the filled KV caches and records the
    /// logits of the last prompt position (submitted, not awaited).
    pub fn finish(self) -> Result<Prefilled> {
        let PrefillSink {
            engine,
            inner,
            state,
            mut stats,
            prompt,
            tokenizer,
            max_context,
            kv,
            ..
        } = self;
        let mut st = state.ok_or_else(|| Error::BadModel {
            detail: "the file ended before its header".into(),
        })?;
        if st.rope_pending.take().is_some() {
            let context = cache_context(&st.cfg, max_context);
            st.cfg = st.cfg.with_rope_factors(context, &inner.host)?;
        }
        let mut w = Weights::from_sink(inner);
        let tok_embd = w
            .matrix_ref("token_embd.weight")
            .ok_or_else(|| Error::BadModel {
                detail: "missing tensor `token_embd.weight`".into(),
            })?;
        let mut rec = engine.recorder();
        let mut x = match st.x.take() {
            Some(x) => x,
            None => embed(
                &mut rec,
                &st.cfg,
                &tok_embd,
                Input::Host(&prompt),
                prompt.len(),
            )?,
        };
        for i in st.layers.len()..st.cfg.n_layers {
            let layer = w.layer(
                &engine,
                &st.cfg,
                i,
                ProductPlan::for_device(engine.profile()),
            )?;
            x = block(
                &mut rec,
                &st.cfg,
                &layer,
                &mut st.caches[i],
                BlockInput::new(x),
                None,
                &mut st.step,
            )?
            .hidden()?;
            st.layers.push(layer);
        }
        stats.n_layers = st.cfg.n_layers;
        let dec = Decoder::assemble(&engine, st.cfg, st.layers, w, st.caches, kv)?;
        let logits = dec.head(&mut rec, BlockInput::new(x))?;
        rec.submit()?;
        Ok(Prefilled {
            decoder: dec,
            prompt,
            logits,
            tokenizer,
            stats,
        })
    }
}

impl Decoder {
    /// Streams a GGUF file onto the GPU and prefills `prompt` (ids, BOS included) as the
    /// blocks arrive. Returns the header, the decoder with the prompt in its KV caches, the
    /// logits of the last prompt position ([1, vocab]) and what ran before the load ended.
    pub fn load_with_prefill(
        engine: &Engine,
        source: &mut dyn WeightSource,
        prompt: &[u32],
        max_context: Option<usize>,
        chunk: usize,
    ) -> Result<(ModelHeader, Decoder, Tensor, StreamStats)> {
        Self::load_with_prefill_kv(engine, source, prompt, max_context, chunk, None)
    }

    /// `load_with_prefill` with the KV caches in format `kv` (`None`: the default).
    pub fn load_with_prefill_kv(
        engine: &Engine,
        source: &mut dyn WeightSource,
        prompt: &[u32],
        max_context: Option<usize>,
        chunk: usize,
        kv: Option<KvDType>,
    ) -> Result<(ModelHeader, Decoder, Tensor, StreamStats)> {
        let mut sink = PrefillSink::new(engine, PrefillPrompt::Ids(prompt.to_vec()), max_context)
            .with_kv_cache(kv);
        let (header, _) = load_from(source, None, LoadOptions::default(), chunk, &mut sink)?;
        #[cfg(not(target_arch = "wasm32"))]
        let load_end = std::time::Instant::now();
        #[allow(unused_mut)]
        let mut p = sink.finish()?;
        #[cfg(not(target_arch = "wasm32"))]
        {
            engine.gpu.wait_idle()?;
            p.stats.after_load_s = load_end.elapsed().as_secs_f64();
        }
        Ok((header, p.decoder, p.logits, p.stats))
    }
}
