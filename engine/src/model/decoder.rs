//! A decoder-only transformer (Gemma 3, llama) over weights the streaming loader put on the GPU.
//!
//! `forward` reads top-down like the architecture: embed -> per layer (norm, q/k/v, q/k norms,
//! RoPE, KV cache, attention, output projection, post-norm, residual, norm, gated FFN, post-norm,
//! residual) -> final norm -> logits of the last position. All of a step's work goes into one
//! recorder (one command encoder).

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::kv_cache::{KvCache, KvCacheOptions};
use crate::loader::source::load_from;
use crate::loader::{GpuSink, LoadOptions, LoadedTensor, ModelHeader, WeightSource};
use crate::model::llm_config::{Activation, DecoderConfig};
use crate::ops::{self, AttentionOptions, DecodeOptions, RopeOptions};
use crate::qtensor::QTensor;
use crate::recorder::Recorder;
use crate::tensor::{DType, Tensor};
use crate::Engine;
use webjit_jit::kernels::qmatvec::Gate;

/// Where a step's tokens come from.
#[derive(Clone, Copy)]
pub(crate) enum Input<'a> {
    Host(&'a [u32]),
    /// One token id in a GPU buffer ([1] u32).
    Gpu(&'a Tensor),
}

/// A weight matrix [N, K] (y = x W^T): quantized blocks or f32.
#[derive(Clone)]
pub enum Weight {
    Q(QTensor),
    F(Tensor),
}

impl Weight {
    pub fn shape(&self) -> [usize; 2] {
        match self {
            Weight::Q(q) => q.shape(),
            Weight::F(t) => [t.shape()[0], t.shape()[1]],
        }
    }

    /// x [T, K] -> [T, N]: matvec kernels for decode-sized T, tiled matmul otherwise.
    pub fn apply(&self, rec: &mut Recorder, x: &Tensor) -> Result<Tensor> {
        match self {
            Weight::Q(w) => {
                let [n, _] = w.shape();
                let t = x.shape()[0];
                let y = rec.empty(&[t, n], DType::F32)?;
                if t <= 8 {
                    ops::qmatvec_into(rec, x, w, &y, None)?;
                } else if t <= CPU_MATVEC_ROWS
                    && rec.engine().profile().cpu
                    && !x.is_segmented()
                    && !y.is_segmented()
                {
                    matvec_in_chunks(rec, x, w, &y)?;
                } else {
                    ops::qmatmul_into(rec, x, w, &y, None)?;
                }
                Ok(y)
            }
            Weight::F(w) => ops::matmul(rec, x, w, true),
        }
    }
}

/// Prompts up to this many tokens run the matvec kernel 8 rows at a time on CPU adapters
/// instead of the tiled matmul: its workgroup barriers are what such adapters do worst. On
/// SwiftShader (natively, 2 cores) a 17-row Q5_0 2048 x 640 product took 295 ms on the tiled
/// default and 156 ms on the best tile, against 33 ms for 8 rows by the matvec; around 128
/// rows the two meet (BENCHMARKS.md, "CPU adapters").
const CPU_MATVEC_ROWS: usize = 64;

/// `y = x W^T` for `x` of 9..=CPU_MATVEC_ROWS rows as matvecs over 8-row slices: each slice
/// is copied out of `x`, multiplied, and its output copied into its rows of `y`.
fn matvec_in_chunks(rec: &mut Recorder, x: &Tensor, w: &QTensor, y: &Tensor) -> Result<()> {
    let [n, k] = w.shape();
    let t = x.shape()[0];
    let xb = x.segments()[0].buffer.clone();
    let yb = y.segments()[0].buffer.clone();
    for r0 in (0..t).step_by(8) {
        let rn = (t - r0).min(8);
        let xc = rec.empty(&[rn, k], DType::F32)?;
        let yc = rec.empty(&[rn, n], DType::F32)?;
        let (xo, yo) = ((r0 * k * 4) as u64, (r0 * n * 4) as u64);
        rec.copy(
            xb.raw(),
            xo,
            xc.segments()[0].buffer.raw(),
            0,
            (rn * k * 4) as u64,
        );
        ops::qmatvec_into(rec, &xc, w, &yc, None)?;
        rec.copy(
            yc.segments()[0].buffer.raw(),
            0,
            yb.raw(),
            yo,
            (rn * n * 4) as u64,
        );
    }
    Ok(())
}

pub(crate) struct Layer {
    attn_norm: Tensor,
    wq: Weight,
    wk: Weight,
    wv: Weight,
    wo: Weight,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    post_attn_norm: Option<Tensor>,
    ffn_norm: Tensor,
    w_gate: Weight,
    w_up: Weight,
    w_down: Weight,
    post_ffn_norm: Option<Tensor>,
}

pub struct Decoder {
    pub cfg: DecoderConfig,
    layers: Vec<Layer>,
    tok_embd: Weight,
    /// `None`: the output projection is tied to the token embedding.
    output: Option<Weight>,
    output_norm: Tensor,
    caches: Vec<KvCache>,
}

/// Takes named tensors out of what the loader uploaded, checking shapes.
pub(crate) struct Weights {
    pub(crate) f: HashMap<String, LoadedTensor>,
    pub(crate) q: HashMap<String, QTensor>,
}

impl Weights {
    pub(crate) fn from_sink(sink: GpuSink<'_>) -> Self {
        Self {
            f: sink.tensors,
            q: sink.qtensors,
        }
    }

    /// Takes layer `i`'s tensors.
    pub(crate) fn layer(&mut self, cfg: &DecoderConfig, i: usize) -> Result<Layer> {
        let (d, hd) = (cfg.d_model, cfg.head_dim);
        let (qd, kvd) = (cfg.n_heads * hd, cfg.n_kv_heads * hd);
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        Ok(Layer {
            attn_norm: self.vector(&n("attn_norm"), d)?,
            wq: self.weight(&n("attn_q"), [qd, d])?,
            wk: self.weight(&n("attn_k"), [kvd, d])?,
            wv: self.weight(&n("attn_v"), [kvd, d])?,
            wo: self.weight(&n("attn_output"), [d, qd])?,
            q_norm: self.opt_vector(&n("attn_q_norm"), hd)?,
            k_norm: self.opt_vector(&n("attn_k_norm"), hd)?,
            post_attn_norm: self.opt_vector(&n("post_attention_norm"), d)?,
            ffn_norm: self.vector(&n("ffn_norm"), d)?,
            w_gate: self.weight(&n("ffn_gate"), [cfg.ffn, d])?,
            w_up: self.weight(&n("ffn_up"), [cfg.ffn, d])?,
            w_down: self.weight(&n("ffn_down"), [d, cfg.ffn])?,
            post_ffn_norm: self.opt_vector(&n("post_ffw_norm"), d)?,
        })
    }

    /// A handle to a matrix that stays in the maps (the embedding, used before assembly).
    pub(crate) fn weight_ref(&self, name: &str) -> Result<Weight> {
        match (self.q.get(name), self.f.get(name)) {
            (Some(q), _) => Ok(Weight::Q(q.clone())),
            (None, Some(t)) => Ok(Weight::F(t.tensor.clone())),
            (None, None) => Err(bad(format!("missing tensor `{name}`"))),
        }
    }

    pub(crate) fn weight(&mut self, name: &str, shape: [usize; 2]) -> Result<Weight> {
        let w = if let Some(q) = self.q.remove(name) {
            Weight::Q(q)
        } else if let Some(t) = self.f.remove(name) {
            if t.tensor.dtype() != DType::F32 || t.tensor.shape().len() != 2 {
                return Err(bad(format!(
                    "tensor `{name}` ({} {:?}) is not a matrix this engine reads",
                    t.source.name(),
                    t.tensor.shape()
                )));
            }
            Weight::F(t.tensor)
        } else {
            return Err(bad(format!("missing tensor `{name}`")));
        };
        if w.shape() != shape {
            return Err(bad(format!(
                "tensor `{name}` is {:?}, expected {shape:?}",
                w.shape()
            )));
        }
        Ok(w)
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<Tensor> {
        self.opt_vector(name, len)?
            .ok_or_else(|| bad(format!("missing tensor `{name}`")))
    }

    fn opt_vector(&mut self, name: &str, len: usize) -> Result<Option<Tensor>> {
        let Some(t) = self.f.remove(name) else {
            return Ok(None);
        };
        if t.tensor.dtype() != DType::F32 || t.tensor.shape() != [len] {
            return Err(bad(format!(
                "tensor `{name}` is {} {:?}, expected f32 [{len}]",
                t.source.name(),
                t.tensor.shape()
            )));
        }
        Ok(Some(t.tensor))
    }
}

impl Decoder {
    /// Streams a GGUF file onto the GPU and builds the decoder (the header comes back for the
    /// tokenizer). Quantized weights are repacked as they arrive.
    pub fn load(
        engine: &Engine,
        source: &mut dyn WeightSource,
        max_context: Option<usize>,
    ) -> Result<(ModelHeader, Self)> {
        let mut sink = GpuSink::new(engine);
        let (header, _) = load_from(source, None, LoadOptions::default(), 4 << 20, &mut sink)?;
        let cfg = DecoderConfig::from_header(&header)?;
        let dec = Self::new(engine, cfg, sink, max_context)?;
        Ok((header, dec))
    }

    /// Builds the decoder from a finished GPU load. `max_context` bounds the KV cache of
    /// global layers (default: the model's context length, at most 8192).
    pub fn new(
        engine: &Engine,
        cfg: DecoderConfig,
        sink: GpuSink<'_>,
        max_context: Option<usize>,
    ) -> Result<Self> {
        let mut w = Weights::from_sink(sink);
        let layers = (0..cfg.n_layers)
            .map(|i| w.layer(&cfg, i))
            .collect::<Result<Vec<_>>>()?;
        let caches = new_caches(engine, &cfg, max_context)?;
        Self::assemble(cfg, layers, w, caches)
    }

    /// The decoder from its layers (built as they arrived), the remaining weights and KV
    /// caches (possibly already holding a prompt).
    pub(crate) fn assemble(
        cfg: DecoderConfig,
        layers: Vec<Layer>,
        mut w: Weights,
        caches: Vec<KvCache>,
    ) -> Result<Self> {
        let d = cfg.d_model;
        let tok_embd = w.weight("token_embd.weight", [cfg.vocab, d])?;
        let output = if w.q.contains_key("output.weight") || w.f.contains_key("output.weight") {
            Some(w.weight("output.weight", [cfg.vocab, d])?)
        } else {
            None
        };
        let output_norm = w.vector("output_norm.weight", d)?;
        Ok(Self {
            cfg,
            layers,
            tok_embd,
            output,
            output_norm,
            caches,
        })
    }

    /// Every weight matrix, layer by layer, then the embedding and the output projection.
    pub fn weights(&self) -> Vec<&Weight> {
        let mut out: Vec<&Weight> = Vec::new();
        for l in &self.layers {
            out.extend([&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]);
        }
        out.push(&self.tok_embd);
        out.extend(self.output.iter());
        out
    }

    pub(crate) fn output_norm(&self) -> &Tensor {
        &self.output_norm
    }

    /// The output projection (the token embedding when tied).
    pub(crate) fn output_weight(&self) -> &Weight {
        self.output.as_ref().unwrap_or(&self.tok_embd)
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

    /// Forgets the context.
    pub fn reset(&mut self) {
        for c in &mut self.caches {
            c.clear();
        }
    }

    /// Records the forward pass of `tokens` at the next positions and returns the logits of
    /// the last one ([1, vocab]). A multi-token call after earlier context runs one token at a
    /// time (the prefill kernel attends only the tokens it is given).
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
        let tokens: &[u32] = match input {
            Input::Host(t) => t,
            // One position; the id itself stays on the GPU.
            Input::Gpu(_) => &[0],
        };
        if tokens.is_empty() {
            return Err(Error::InvalidArgument {
                op: "forward",
                detail: "no tokens".into(),
            });
        }
        if let Input::Host(t) = input {
            ops::check_ids("forward", t, self.cfg.vocab)?;
        }
        let pos = self.position();
        if pos + tokens.len() > self.max_context() {
            return Err(Error::InvalidArgument {
                op: "forward",
                detail: format!(
                    "{} tokens at position {pos} exceed the context of {}",
                    tokens.len(),
                    self.max_context()
                ),
            });
        }
        if pos > 0 && tokens.len() > 1 {
            let mut last = None;
            for &t in tokens {
                last = Some(self.forward(rec, &[t])?);
            }
            return last.ok_or_else(|| Error::InvalidArgument {
                op: "forward",
                detail: "no tokens".into(),
            });
        }
        let cfg = &self.cfg;
        let t = tokens.len();
        let positions: Vec<u32> = (pos..pos + t).map(|p| p as u32).collect();
        let mut x = BlockInput::new(embed(rec, cfg, &self.tok_embd, input, t)?);
        let mut tables = Vec::with_capacity(2);
        let n = self.layers.len();
        for (i, l) in self.layers.iter().enumerate() {
            // Each block norms its output for the next; the last one for the output
            // projection when there is a single row (the head takes the last row first).
            let next_norm = match self.layers.get(i + 1) {
                Some(next) => Some(&next.attn_norm),
                None if t == 1 => Some(&self.output_norm),
                None => None,
            };
            x = layer_forward(
                rec,
                cfg,
                i,
                l,
                &mut self.caches[i],
                x,
                next_norm,
                &positions,
                &mut tables,
            )?;
        }
        let output = self.output.as_ref().unwrap_or(&self.tok_embd);
        match x.normed {
            Some(xn) if n > 0 => output.apply(rec, &xn),
            _ => head(rec, cfg, x.x, &self.output_norm, output),
        }
    }
}

/// The KV caches of a decoder: ring buffers of the window's size on local layers, linear ones
/// of `max_context` (default: the model's context, at most 8192) elsewhere.
pub(crate) fn new_caches(
    engine: &Engine,
    cfg: &DecoderConfig,
    max_context: Option<usize>,
) -> Result<Vec<KvCache>> {
    let max_context = max_context.unwrap_or(cfg.context.min(8192)).max(1);
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
                    dtype: None,
                },
            )
        })
        .collect()
}

/// Token embeddings of the step's `t` tokens, scaled: [t, d_model].
pub(crate) fn embed(
    rec: &mut Recorder,
    cfg: &DecoderConfig,
    tok_embd: &Weight,
    input: Input<'_>,
    t: usize,
) -> Result<Tensor> {
    match (tok_embd, input) {
        (Weight::Q(table), input) => {
            let x = rec.empty(&[t, cfg.d_model], DType::F32)?;
            let ids = match input {
                Input::Host(tokens) => rec.upload_u32(&[t], tokens)?,
                Input::Gpu(id) => id.clone(),
            };
            ops::qembedding_into(rec, table, &ids, cfg.embed_scale, &x, None)?;
            Ok(x)
        }
        (Weight::F(table), Input::Host(tokens)) => {
            ops::embedding(rec, table, tokens, cfg.embed_scale)
        }
        (Weight::F(table), Input::Gpu(id)) => {
            ops::embedding_gpu_ids(rec, table, id, cfg.embed_scale, None)
        }
    }
}

/// A block's input: the hidden state x [t, d_model] and, when the previous block computed it
/// in its last pass, x already normed by this block's `attn_norm`.
pub(crate) struct BlockInput {
    pub x: Tensor,
    pub normed: Option<Tensor>,
}

impl BlockInput {
    pub fn new(x: Tensor) -> Self {
        Self { x, normed: None }
    }
}

/// One transformer block over `input` at `positions`, appending its K and V to `cache`.
/// `tables` keeps one RoPE (cos, sin) table per base for the step. With `next_norm` (the next
/// block's `attn_norm`, or the output norm), the block's last pass also norms its output for
/// the next one, saving that block a dispatch.
#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_forward(
    rec: &mut Recorder,
    cfg: &DecoderConfig,
    i: usize,
    l: &Layer,
    cache: &mut KvCache,
    input: BlockInput,
    next_norm: Option<&Tensor>,
    positions: &[u32],
    tables: &mut Vec<(f64, Tensor)>,
) -> Result<BlockInput> {
    let t = positions.len();
    let hd = cfg.head_dim;
    let x = input.x;
    let h = match input.normed {
        Some(h) => h,
        None => ops::rms_norm(rec, &x, &l.attn_norm, cfg.eps, 0.0)?,
    };
    let rope = RopeOptions {
        layout: cfg.rope_layout,
        base: cfg.rope_base_of(i),
        rot_dims: None,
    };
    let table = match tables.iter().position(|(b, _)| *b == rope.base) {
        Some(j) => &tables[j].1,
        None => {
            let tt = ops::rope_table_tensor(rec, positions, hd, rope.base)?;
            tables.push((rope.base, tt));
            &tables[tables.len() - 1].1
        }
    };
    let window = if cfg.is_local(i) { cfg.window } else { None };
    let attn = if t == 1 {
        // Decode: q/k norms, RoPE and the KV append in one dispatch.
        let norms = match (&l.q_norm, &l.k_norm) {
            (Some(q), Some(k)) => Some(ops::QkNorms {
                q,
                k,
                eps: cfg.eps,
                w_offset: 0.0,
            }),
            _ => None,
        };
        let both_or_none = l.q_norm.is_some() == l.k_norm.is_some();
        let q = match stacked_qkv(l).filter(|_| both_or_none) {
            // q and k (and v) of one quantized format: one stacked projection, read packed.
            Some((parts, v_inside)) => {
                let qkv = ops::qmatvec_stacked(rec, &h, &parts, None)?;
                let v = match v_inside {
                    true => None,
                    false => Some(l.wv.apply(rec, &h)?),
                };
                ops::qk_rope_append_packed(
                    rec,
                    &qkv,
                    v.as_ref(),
                    cfg.n_heads,
                    norms,
                    table,
                    &rope,
                    cache,
                    None,
                )?
            }
            None => {
                let q = l.wq.apply(rec, &h)?;
                let k = l.wk.apply(rec, &h)?;
                let v = l.wv.apply(rec, &h)?;
                let (q, k) = match norms {
                    Some(_) => (q, k),
                    // One norm without the other: apply it unfused, then rotate without norms.
                    None => (
                        head_norm(rec, q, l.q_norm.as_ref(), [t, cfg.n_heads, hd], cfg.eps)?,
                        head_norm(rec, k, l.k_norm.as_ref(), [t, cfg.n_kv_heads, hd], cfg.eps)?,
                    ),
                };
                let q = reshaped(&q, &[t, cfg.n_heads, hd])?;
                let k = reshaped(&k, &[t, cfg.n_kv_heads, hd])?;
                let v = reshaped(&v, &[t, cfg.n_kv_heads, hd])?;
                ops::qk_rope_append(rec, &q, &k, &v, norms, table, &rope, cache, None)?
            }
        };
        let q3 = reshaped(&q, &[1, cfg.n_heads, hd])?;
        let opts = DecodeOptions {
            window,
            scale: Some(cfg.attn_scale),
            softcap: None,
        };
        ops::attention_decode(rec, &q3, cache, &opts)?
    } else {
        let q = l.wq.apply(rec, &h)?;
        let k = l.wk.apply(rec, &h)?;
        let v = l.wv.apply(rec, &h)?;
        let q = head_norm(rec, q, l.q_norm.as_ref(), [t, cfg.n_heads, hd], cfg.eps)?;
        let k = head_norm(rec, k, l.k_norm.as_ref(), [t, cfg.n_kv_heads, hd], cfg.eps)?;
        let q = ops::rope_with_table(rec, &q, table, &rope, None)?;
        let k = ops::rope_with_table(rec, &k, table, &rope, None)?;
        let k4 = reshaped(&k, &[1, t, cfg.n_kv_heads, hd])?;
        let v4 = reshaped(&v, &[1, t, cfg.n_kv_heads, hd])?;
        cache.append(rec, &k4, &v4)?;
        let q4 = reshaped(&q, &[1, t, cfg.n_heads, hd])?;
        let opts = AttentionOptions {
            causal: true,
            window,
            scale: Some(cfg.attn_scale),
            ..Default::default()
        };
        ops::attention(rec, &q4, &k4, &v4, &opts)?
    };
    let attn = reshaped(&attn, &[t, cfg.n_heads * hd])?;
    let o = l.wo.apply(rec, &attn)?;
    // The attention residual and the FFN's pre-norm in one pass.
    let (x, h) = ops::add_norm(
        rec,
        &o,
        l.post_attn_norm.as_ref(),
        &x,
        &l.ffn_norm,
        cfg.eps,
        0.0,
        None,
    )?;
    let f = match (&l.w_gate, &l.w_up) {
        // Decode-sized rows with gate and up in one format: one gated matvec.
        (Weight::Q(g), Weight::Q(u))
            if t <= 8 && g.format() == u.format() && g.shape() == u.shape() =>
        {
            let act = match cfg.activation {
                Activation::GeluTanh => Gate::GeluTanh,
                Activation::Silu => Gate::Silu,
            };
            ops::qmatvec_gated(rec, &h, g, u, act, None)?
        }
        _ => {
            let g = l.w_gate.apply(rec, &h)?;
            let u = l.w_up.apply(rec, &h)?;
            match cfg.activation {
                Activation::GeluTanh => ops::gelu_tanh_mul(rec, &g, &u)?,
                Activation::Silu => ops::silu_mul(rec, &g, &u)?,
            }
        }
    };
    let f = l.w_down.apply(rec, &f)?;
    match next_norm {
        Some(w) => {
            let (x, h) =
                ops::add_norm(rec, &f, l.post_ffn_norm.as_ref(), &x, w, cfg.eps, 0.0, None)?;
            Ok(BlockInput { x, normed: Some(h) })
        }
        None => Ok(BlockInput::new(residual(
            rec,
            &x,
            &f,
            l.post_ffn_norm.as_ref(),
            cfg.eps,
        )?)),
    }
}

/// The weights of a stacked q/k(/v) projection: q and k quantized in one format and K, each
/// one binding, plus v when it shares them (returned flag: v is in the stack).
fn stacked_qkv(l: &Layer) -> Option<(Vec<&QTensor>, bool)> {
    let (Weight::Q(q), Weight::Q(k)) = (&l.wq, &l.wk) else {
        return None;
    };
    let fits = |w: &QTensor| {
        w.format() == q.format() && w.shape()[1] == q.shape()[1] && w.segments().len() == 1
    };
    if !fits(q) || !fits(k) {
        return None;
    }
    match &l.wv {
        Weight::Q(v) if fits(v) => Some((vec![q, k, v], true)),
        _ => Some((vec![q, k], false)),
    }
}

/// Final norm and output projection of the last of x's rows: logits [1, vocab].
pub(crate) fn head(
    rec: &mut Recorder,
    cfg: &DecoderConfig,
    x: Tensor,
    output_norm: &Tensor,
    output: &Weight,
) -> Result<Tensor> {
    let t = x.shape()[0];
    let d = cfg.d_model;
    let last = if t == 1 {
        x
    } else {
        let row = rec.empty(&[1, d], DType::F32)?;
        let bytes = (d * 4) as u64;
        rec.copy(
            x.segments()[0].buffer.raw(),
            bytes * (t as u64 - 1),
            row.segments()[0].buffer.raw(),
            0,
            bytes,
        );
        row
    };
    let xn = ops::rms_norm(rec, &last, output_norm, cfg.eps, 0.0)?;
    output.apply(rec, &xn)
}

/// Per-head RMSNorm of q or k ([T, heads * hd] -> [T, heads, hd]).
fn head_norm(
    rec: &mut Recorder,
    x: Tensor,
    w: Option<&Tensor>,
    shape: [usize; 3],
    eps: f32,
) -> Result<Tensor> {
    match w {
        Some(w) => {
            let flat = reshaped(&x, &[shape[0] * shape[1], shape[2]])?;
            let y = ops::rms_norm(rec, &flat, w, eps, 0.0)?;
            reshaped(&y, &shape)
        }
        None => reshaped(&x, &shape),
    }
}

/// `x + post_norm(y)` (one fused pass), or `x + y` without a post-norm.
fn residual(
    rec: &mut Recorder,
    x: &Tensor,
    y: &Tensor,
    post_norm: Option<&Tensor>,
    eps: f32,
) -> Result<Tensor> {
    match post_norm {
        Some(w) => ops::rms_norm_add(rec, y, w, x, eps, 0.0),
        None => ops::add(rec, x, y),
    }
}

fn reshaped(t: &Tensor, shape: &[usize]) -> Result<Tensor> {
    t.reshape(shape).ok_or_else(|| Error::Shape {
        op: "reshape",
        detail: format!("{:?} cannot be viewed as {shape:?}", t.shape()),
    })
}

fn bad(detail: String) -> Error {
    Error::BadModel { detail }
}
