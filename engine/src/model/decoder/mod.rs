//! A decoder-only transformer (Gemma 3, llama) over weights the streaming loader put on the GPU.
//!
//! `forward` reads like the architecture: embed -> blocks (`block`: norm, attention, output
//! projection, residual, norm, gated FFN, residual) -> final norm -> logits of the last
//! position. How each block computes (stacked q/k/v, fused gate, window, q/k norms) was decided
//! at load (`plan`); the weights own their products (`linear`). All of a step's work goes into
//! one recorder (one command encoder).
//!
//! Files: `weights` (GGUF names to layers), `matrix` (a loaded weight matrix), `plan` (the
//! layer plan), `linear` (matrices with their products, q/k/v, the gated FFN), `block` (one
//! block's forward, embedding, the last row), `rows` (every position's hidden state and the
//! logits of chosen rows, for scoring a text).

mod block;
mod linear;
mod matrix;
mod plan;
mod rows;
mod weights;

pub(crate) use block::{block, embed, last_row, BlockInput, Input, Step};
pub use linear::Linear;
pub use matrix::Matrix;
pub use plan::{FfnPlan, LayerPlan, ProductPlan, QkNormPlan, QkvPlan};
pub(crate) use weights::{Layer, Weights};

use crate::error::{Error, Result};
use crate::kv_cache::{KvCache, KvCacheOptions, KvDType};
use crate::loader::source::load_from;
use crate::loader::{GpuSink, LoadOptions, ModelHeader, WeightSource};
use crate::model::llm_config::DecoderConfig;
use crate::ops;
use crate::recorder::Recorder;
use crate::tensor::{DType, Tensor};
use crate::Engine;

pub struct Decoder {
    pub cfg: DecoderConfig,
    layers: Vec<Layer>,
    /// [vocab, d_model]
    tok_embd: Matrix,
    /// [vocab, d_model]; the token embedding when tied.
    output: Linear,
    /// [d_model]
    output_norm: Tensor,
    caches: Vec<KvCache>,
    /// The KV cache format asked for at load (`None`: f16 where the device has shader-f16,
    /// else f32); scratch caches use it too.
    kv: Option<KvDType>,
    /// Whether q8_0 / q4_0 caches store their keys rotated (`KvCache::key_rotation`; on unless
    /// `set_kv_key_rotation` or `WEBJIT_KV_ROTATION=0` turned it off); scratch caches follow.
    kv_key_rotation: bool,
}

impl Decoder {
    /// Streams a GGUF file onto the GPU and builds the decoder (the header comes back for the
    /// tokenizer). Quantized weights are repacked as they arrive.
    pub fn load(
        engine: &Engine,
        source: &mut dyn WeightSource,
        max_context: Option<usize>,
    ) -> Result<(ModelHeader, Self)> {
        Self::load_with_kv(engine, source, max_context, None)
    }

    /// `load` with the KV cache in format `kv` (`None`: the default of `KvCacheOptions`).
    pub fn load_with_kv(
        engine: &Engine,
        source: &mut dyn WeightSource,
        max_context: Option<usize>,
        kv: Option<KvDType>,
    ) -> Result<(ModelHeader, Self)> {
        let mut sink = GpuSink::new(engine);
        let (header, _) = load_from(source, None, LoadOptions::default(), 4 << 20, &mut sink)?;
        let cfg = DecoderConfig::from_header(&header)?;
        let dec = Self::new_with_kv(engine, cfg, sink, max_context, kv)?;
        // Writes to a lost device vanish without an error: a load ends with a round trip.
        #[cfg(not(target_arch = "wasm32"))]
        pollster::block_on(engine.confirm_alive())?;
        Ok((header, dec))
    }

    /// Builds the decoder from a finished GPU load. `max_context` bounds the KV cache of
    /// global layers (default: the model's context length, at most 8192).
    pub fn new(
        engine: &Engine,
        cfg: DecoderConfig,
        sink: GpuSink,
        max_context: Option<usize>,
    ) -> Result<Self> {
        Self::new_with_kv(engine, cfg, sink, max_context, None)
    }

    /// `new` with the KV cache in format `kv` (`None`: the default of `KvCacheOptions`).
    pub fn new_with_kv(
        engine: &Engine,
        cfg: DecoderConfig,
        sink: GpuSink,
        max_context: Option<usize>,
        kv: Option<KvDType>,
    ) -> Result<Self> {
        let context = cache_context(&cfg, max_context);
        let cfg = cfg.with_rope_factors(context, &sink.host)?;
        let mut w = Weights::from_sink(sink);
        let products = ProductPlan::for_device(engine.profile());
        let layers = (0..cfg.n_layers)
            .map(|i| w.layer(engine, &cfg, i, products))
            .collect::<Result<Vec<_>>>()?;
        let caches = new_caches(engine, &cfg, max_context, kv)?;
        Self::assemble(engine, cfg, layers, w, caches, kv)
    }

    /// The decoder from its layers (built as they arrived), the remaining weights and KV
    /// caches (possibly already holding a prompt).
    pub(crate) fn assemble(
        engine: &Engine,
        cfg: DecoderConfig,
        layers: Vec<Layer>,
        mut w: Weights,
        caches: Vec<KvCache>,
        kv: Option<KvDType>,
    ) -> Result<Self> {
        let d = cfg.d_model;
        let products = ProductPlan::for_device(engine.profile());
        let tok_embd = w.matrix("token_embd.weight", [cfg.vocab, d])?;
        let output = match w.contains("output.weight") {
            true => w.matrix("output.weight", [cfg.vocab, d])?,
            false => tok_embd.clone(),
        };
        let output_norm = w.vector("output_norm.weight", d)?;
        Ok(Self {
            cfg,
            layers,
            tok_embd,
            output: Linear::new(output, products),
            output_norm,
            // Off only where a cache that could rotate its keys does not (the environment).
            kv_key_rotation: !caches.iter().any(|c| {
                c.key_rotation().is_none()
                    && c.dtype()
                        .key_rotation(c.options().head_dim as u64)
                        .is_some()
            }),
            caches,
            kv,
        })
    }

    /// Every weight matrix, layer by layer, then the output projection (the embedding when
    /// tied).
    pub fn matrices(&self) -> Vec<&Matrix> {
        let mut out: Vec<&Matrix> = Vec::new();
        for l in &self.layers {
            out.extend(l.matrices().map(|m| &m.w));
        }
        out.push(&self.output.w);
        out
    }

    /// Each layer's plan.
    pub fn plans(&self) -> Vec<&LayerPlan> {
        self.layers.iter().map(|l| &l.plan).collect()
    }

    /// Folds (or stops folding) each decode step's residual adds and pre-norms into the
    /// matvecs that read them (`ProductPlan::norm_prologue`; off by default).
    pub fn set_norm_prologue(&mut self, on: bool) {
        for l in &mut self.layers {
            for p in [
                &mut l.qkv.q.products,
                &mut l.qkv.k.products,
                &mut l.qkv.v.products,
                &mut l.wo.products,
                &mut l.ffn.gate.products,
                &mut l.ffn.up.products,
                &mut l.ffn.down.products,
            ] {
                p.norm_prologue = on;
            }
        }
        self.output.products.norm_prologue = on;
    }

    /// Stores q8_0 / q4_0 caches' keys rotated by a Walsh-Hadamard matrix (with the queries
    /// rotated alike), or plainly (`KvCache::key_rotation`; on by default, as llama.cpp does):
    /// Gemma 3 270M's perplexity with a q4_0 cache (ctx 128, first 4 chunks, lavapipe) is
    /// +4.9% over f16 rotated and +13.8% not. Only while the caches are empty (`reset`).
    pub fn set_kv_key_rotation(&mut self, on: bool) -> Result<()> {
        if self.position() > 0 {
            return Err(crate::error::Error::InvalidArgument {
                op: "decoder",
                detail: format!(
                    "the KV key rotation cannot change while the caches hold {} positions \
                     (reset first)",
                    self.position()
                ),
            });
        }
        for c in &mut self.caches {
            c.set_key_rotation(on)?;
        }
        self.kv_key_rotation = on;
        Ok(())
    }

    /// Positions held by the KV cache (the next token goes at this position).
    pub fn position(&self) -> usize {
        self.caches.first().map(|c| c.len()).unwrap_or(0)
    }

    /// Longest context the global layers' caches hold.
    pub fn max_context(&self) -> usize {
        self.caches
            .iter()
            .map(|c| c.options().capacity)
            .max()
            .unwrap_or(0)
    }

    /// Forgets the newest `n` positions (a decode step that turned out not to be wanted).
    pub fn rewind(&mut self, n: usize) {
        let len = self.position().saturating_sub(n);
        for c in &mut self.caches {
            c.truncate(len);
        }
    }

    /// Runs `f` on this decoder with fresh KV caches of `max_context` positions in place of
    /// its own, which come back untouched (the tuner records steps this way without
    /// disturbing a conversation).
    pub fn with_scratch_caches<R>(
        &mut self,
        engine: &Engine,
        max_context: usize,
        f: impl FnOnce(&mut Self) -> Result<R>,
    ) -> Result<R> {
        let mut scratch = new_caches(engine, &self.cfg, Some(max_context), self.kv)?;
        for c in &mut scratch {
            c.set_key_rotation(self.kv_key_rotation)?;
        }
        let saved = std::mem::replace(&mut self.caches, scratch);
        let r = f(self);
        self.caches = saved;
        r
    }

    /// The KV caches' storage format (the global layers': under kivi2, sliding-window layers
    /// keep f16).
    pub fn kv_dtype(&self) -> Option<KvDType> {
        let global = self.caches.iter().find(|c| !c.options().ring);
        global.or(self.caches.first()).map(|c| c.dtype())
    }

    /// Bytes of GPU memory all layers' KV caches take.
    pub fn kv_cache_bytes(&self) -> u64 {
        self.caches.iter().map(|c| c.bytes()).sum()
    }

    /// Forgets the context.
    pub fn reset(&mut self) {
        for c in &mut self.caches {
            c.clear();
        }
    }

    /// Records the forward pass of `tokens` at the next positions and returns the logits of
    /// the last one ([1, vocab]). A multi-token call after earlier context runs one token at a
    /// time (the prompt kernel attends only the tokens it is given).
    pub fn forward(&mut self, rec: &mut Recorder, tokens: &[u32]) -> Result<Tensor> {
        self.forward_input(rec, Input::Host(tokens))
    }

    /// One decode step whose token is read on the GPU from `id` ([1] u32, e.g. the head of the
    /// sampler's result), so the step can be submitted before the previous token is read back.
    pub fn forward_gpu_token(&mut self, rec: &mut Recorder, id: &Tensor) -> Result<Tensor> {
        if id.dtype() != DType::U32 || id.shape() != [1] {
            return Err(Error::Shape {
                op: "forward",
                detail: format!("the GPU token must be u32 [1], got {:?}", id.shape()),
            });
        }
        self.forward_input(rec, Input::Gpu(id))
    }

    fn forward_input(&mut self, rec: &mut Recorder, input: Input<'_>) -> Result<Tensor> {
        let t = match input {
            Input::Host(tokens) => {
                ops::check_ids("forward", tokens, self.cfg.vocab)?;
                tokens.len()
            }
            // One position; the id itself stays on the GPU.
            Input::Gpu(_) => 1,
        };
        let pos = self.position();
        self.check_room(pos, t)?;
        if let (Input::Host(tokens), true) = (input, pos > 0 && t > 1) {
            return self.forward_one_by_one(rec, tokens);
        }
        let mut step = Step::new((pos..pos + t).map(|p| p as u32).collect());
        let mut x = BlockInput::new(embed(rec, &self.cfg, &self.tok_embd, input, t)?);
        for i in 0..self.layers.len() {
            // Each block norms its output for the next; the last one for the output
            // projection when there is a single row (the head takes the last row first).
            let next_norm = match self.layers.get(i + 1) {
                Some(next) => Some(&next.attn_norm),
                None if t == 1 => Some(&self.output_norm),
                None => None,
            };
            let cache = &mut self.caches[i];
            x = block(
                rec,
                &self.cfg,
                &self.layers[i],
                cache,
                x,
                next_norm,
                &mut step,
            )?;
        }
        self.head(rec, x)
    }

    /// Tokens after earlier context, one step each.
    fn forward_one_by_one(&mut self, rec: &mut Recorder, tokens: &[u32]) -> Result<Tensor> {
        let mut last = None;
        for &t in tokens {
            last = Some(self.forward(rec, &[t])?);
        }
        last.ok_or_else(no_tokens)
    }

    fn check_room(&self, pos: usize, t: usize) -> Result<()> {
        if t == 0 {
            return Err(no_tokens());
        }
        if pos + t > self.max_context() {
            return Err(Error::InvalidArgument {
                op: "forward",
                detail: format!(
                    "{t} tokens at position {pos} exceed the context of {}",
                    self.max_context()
                ),
            });
        }
        Ok(())
    }

    /// Final norm and output projection of the last position: logits [1, vocab]. The last
    /// block has already normed a single row.
    pub(crate) fn head(&self, rec: &mut Recorder, x: BlockInput) -> Result<Tensor> {
        // A pending residual add is made here by the rowwise add_norm: folded into the
        // vocabulary-sized output matvec, every one of its many workgroups would norm X again.
        let (x, normed) = x.settle(rec, &self.output_norm, self.cfg.eps)?;
        let logits = match normed {
            Some(xn) if !self.layers.is_empty() => self.output.forward(rec, &xn)?,
            _ => {
                let last = last_row(rec, x)?;
                let xn = ops::rms_norm(&last, &self.output_norm, self.cfg.eps, 0.0).record(rec)?;
                self.output.forward(rec, &xn)?
            }
        };
        match self.cfg.final_softcap {
            Some(cap) => ops::softcap(&logits, cap).record(rec),
            None => Ok(logits),
        }
    }
}

fn no_tokens() -> Error {
    Error::InvalidArgument {
        op: "forward",
        detail: "no tokens".into(),
    }
}

/// Positions the global layers' caches hold: `max_context`, default the model's context, at
/// most 8192.
pub(crate) fn cache_context(cfg: &DecoderConfig, max_context: Option<usize>) -> usize {
    max_context.unwrap_or(cfg.context.min(8192)).max(1)
}

/// The KV caches of a decoder: ring buffers of the window's size on local layers, linear ones
/// of `max_context` (default: the model's context, at most 8192) elsewhere, in format `kv`.
pub(crate) fn new_caches(
    engine: &Engine,
    cfg: &DecoderConfig,
    max_context: Option<usize>,
    kv: Option<KvDType>,
) -> Result<Vec<KvCache>> {
    let max_context = cache_context(cfg, max_context);
    (0..cfg.n_layers)
        .map(|i| {
            let ring = cfg.is_local(i);
            let capacity = match (ring, cfg.window) {
                (true, Some(win)) => (win as usize).min(max_context),
                _ => max_context,
            };
            KvCache::new(
                engine,
                KvCacheOptions {
                    batch: 1,
                    n_kv_heads: cfg.n_kv_heads,
                    head_dim: cfg.head_dim,
                    capacity,
                    ring: ring && capacity == cfg.window.unwrap_or(0) as usize,
                    // kivi2 is for linear caches: a local layer's window (a few of its
                    // groups) stays f16 (kv_dtype.rs).
                    dtype: match kv {
                        Some(KvDType::Kivi2) if ring => Some(KvDType::F16),
                        kv => kv,
                    },
                },
            )
        })
        .collect()
}
