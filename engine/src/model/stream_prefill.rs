//! Prefill while the weights stream in: a loader sink that uploads like `GpuSink` and, as soon
//! as the token embedding and then each block have arrived, runs that block over the prompt
//! (one submission per block, so the GPU works while the rest of the file loads). When the
//! load ends, the decoder is assembled around the already-filled KV caches and the logits of
//! the last prompt position are recorded.

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::kv_cache::KvCache;
use crate::loader::source::load_from;
use crate::loader::{
    GpuSink, LoadEvent, LoadOptions, LoaderError, ModelHeader, TensorInfo, TensorSink, WeightSource,
};
use crate::model::decoder::{
    embed, head, layer_forward, new_caches, Decoder, Input, Layer, Weight, Weights,
};
use crate::model::llm_config::DecoderConfig;
use crate::tensor::Tensor;
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
    tables: Vec<(f64, Tensor)>,
    positions: Vec<u32>,
}

struct PrefillSink<'e> {
    engine: &'e Engine,
    inner: GpuSink<'e>,
    prompt: &'e [u32],
    max_context: Option<usize>,
    state: Option<State>,
    stats: StreamStats,
}

fn to_loader(what: &str, e: Error) -> LoaderError {
    LoaderError::Sink {
        tensor: what.to_string(),
        code: e.code(),
        detail: e.to_string(),
    }
}

impl PrefillSink<'_> {
    fn start(&mut self, h: &ModelHeader) -> Result<()> {
        let cfg = DecoderConfig::from_header(h)?;
        if self.prompt.is_empty() {
            return Err(Error::InvalidArgument {
                op: "prefill",
                detail: "empty prompt".into(),
            });
        }
        crate::ops::check_ids("prefill", self.prompt, cfg.vocab)?;
        let caches = new_caches(self.engine, &cfg, self.max_context)?;
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
            positions: (0..self.prompt.len() as u32).collect(),
            cfg,
            caches,
            layers: Vec::new(),
            ready: BTreeSet::new(),
            x: None,
            tables: Vec::new(),
        });
        Ok(())
    }

    /// Runs every block that can run now, in order.
    fn advance(&mut self) -> Result<()> {
        let Some(st) = self.state.as_mut() else {
            return Ok(());
        };
        if st.x.is_none() {
            let name = "token_embd.weight";
            let table = match (self.inner.qtensors.get(name), self.inner.tensors.get(name)) {
                (Some(q), _) => Weight::Q(q.clone()),
                (None, Some(t)) => Weight::F(t.tensor.clone()),
                (None, None) => return Ok(()),
            };
            let mut rec = self.engine.recorder();
            let x = embed(
                &mut rec,
                &st.cfg,
                &table,
                Input::Host(self.prompt),
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
            let layer = w.layer(&st.cfg, i);
            self.inner.tensors = w.f;
            self.inner.qtensors = w.q;
            let layer = layer?;
            let Some(x) = st.x.take() else {
                return Ok(());
            };
            let mut rec = self.engine.recorder();
            let y = layer_forward(
                &mut rec,
                &st.cfg,
                i,
                &layer,
                &mut st.caches[i],
                x,
                &st.positions,
                &mut st.tables,
            )?;
            rec.submit()?;
            st.x = Some(y);
            st.layers.push(layer);
        }
        Ok(())
    }
}

impl TensorSink for PrefillSink<'_> {
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
        if info.name == "token_embd.weight" {
            self.advance().map_err(|e| to_loader("prefill", e))?;
        }
        Ok(())
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
        let mut sink = PrefillSink {
            engine,
            inner: GpuSink::new(engine),
            prompt,
            max_context,
            state: None,
            stats: StreamStats::default(),
        };
        let (header, _) = load_from(source, None, LoadOptions::default(), chunk, &mut sink)?;
        #[cfg(not(target_arch = "wasm32"))]
        let load_end = std::time::Instant::now();
        let PrefillSink {
            inner,
            state,
            mut stats,
            ..
        } = sink;
        let mut st = state.ok_or_else(|| Error::BadModel {
            detail: "the file ended before its header".into(),
        })?;
        let mut w = Weights::from_sink(inner);
        // Blocks the loader never announced (or that waited for the embedding) run now.
        let tok_embd = w.weight_ref("token_embd.weight")?;
        let mut rec = engine.recorder();
        let mut x = match st.x.take() {
            Some(x) => x,
            None => embed(
                &mut rec,
                &st.cfg,
                &tok_embd,
                Input::Host(prompt),
                prompt.len(),
            )?,
        };
        for i in st.layers.len()..st.cfg.n_layers {
            let layer = w.layer(&st.cfg, i)?;
            x = layer_forward(
                &mut rec,
                &st.cfg,
                i,
                &layer,
                &mut st.caches[i],
                x,
                &st.positions,
                &mut st.tables,
            )?;
            st.layers.push(layer);
        }
        stats.n_layers = st.cfg.n_layers;
        let dec = Decoder::assemble(st.cfg, st.layers, w, st.caches)?;
        let logits = head(
            &mut rec,
            &dec.cfg,
            x,
            dec.output_norm(),
            dec.output_weight(),
        )?;
        rec.submit()?;
        #[cfg(not(target_arch = "wasm32"))]
        {
            engine.gpu.wait_idle()?;
            stats.after_load_s = load_end.elapsed().as_secs_f64();
        }
        Ok((header, dec, logits, stats))
    }
}
