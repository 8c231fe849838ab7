//! BERT encoders for sentence embeddings (all-MiniLM-L6-v2 and other sizes), as
//! sentence-transformers runs them: token + position + type embeddings, post-norm encoder
//! layers with bidirectional attention under a padding mask, erf GELU, mean pooling over real
//! tokens, L2 normalization.

use serde::Deserialize;

use super::weights::StreamedWeights;
use crate::error::{Error, Result};
use crate::loader::source::load_from;
#[cfg(not(target_arch = "wasm32"))]
use crate::loader::FileSource;
use crate::loader::{Format, GpuSink, LoadOptions, MemSource, ModelHeader, WeightSource};
use crate::ops;
use crate::recorder::Recorder;
use crate::tensor::Tensor;
use crate::tokenizer::wordpiece::WordPiece;
use crate::Engine;

/// Token ids per text.
pub type TokenIds = Vec<Vec<u32>>;
/// One embedding per text.
pub type Embeddings = Vec<Vec<f32>>;

/// The fields of a Hugging Face BERT `config.json` that the forward pass needs.
#[derive(Clone, Debug, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}

struct Linear {
    w: Tensor, // [out, in]
    b: Tensor, // [out]
}

struct Norm {
    w: Tensor, // [hidden]
    b: Tensor, // [hidden]
}

struct Layer {
    /// Query, key and value projections stacked by rows: w [3 * hidden, hidden], b [3 * hidden].
    qkv: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    up: Linear,
    down: Linear,
    ffn_norm: Norm,
}

pub struct Bert {
    pub config: BertConfig,
    pub tokenizer: WordPiece,
    word: Tensor, // [vocab, hidden]
    /// Position embeddings plus the token-type embedding of type 0 (the only type this
    /// encoder feeds), added once at load: [max_positions, hidden].
    position_type: Tensor,
    emb_norm: Norm,
    layers: Vec<Layer>,
    /// Whether each LayerNorm runs inside the projection that reads it (`ops::linear_norm`)
    /// rather than as a dispatch of its own. `None` (the default): on GPUs, not on CPU
    /// adapters. The results agree either way; tests run both.
    pub norm_in_matmul: Option<bool>,
}

/// Bytes read at a time when `Bert::from_source` streams the weights: the only host buffer
/// that grows with the read size.
const STREAM_CHUNK: usize = 1 << 20;

impl BertConfig {
    /// Parses `config.json` and checks what the forward pass relies on.
    pub fn parse(config_json: &[u8]) -> Result<Self> {
        let config: BertConfig =
            serde_json::from_slice(config_json).map_err(|e| Error::BadModel {
                detail: format!("config.json: {e}"),
            })?;
        let (h, heads) = (config.hidden_size, config.num_attention_heads);
        if h == 0 || heads == 0 || h % heads != 0 {
            return Err(Error::BadModel {
                detail: format!("hidden size {h} is not a multiple of {heads} heads"),
            });
        }
        if config.hidden_act != "gelu" {
            return Err(Error::BadModel {
                detail: format!(
                    "activation `{}` is not supported (gelu only)",
                    config.hidden_act
                ),
            });
        }
        if config.type_vocab_size == 0 {
            return Err(Error::BadModel {
                detail: "config.json: type_vocab_size is 0 (token type 0 is needed)".into(),
            });
        }
        Ok(config)
    }
}

impl Bert {
    /// Builds the model from the bytes of `config.json`, `model.safetensors` and
    /// `tokenizer.json`. `max_seq_len` is sentence-transformers' `max_seq_length`. The weights
    /// stream onto the GPU as `from_source` streams them (no copy of the file is made).
    pub fn from_bytes(
        engine: &Engine,
        config_json: &[u8],
        weights: &[u8],
        tokenizer_json: &[u8],
        max_seq_len: usize,
    ) -> Result<Self> {
        Self::from_source(
            engine,
            config_json,
            &mut MemSource(weights),
            tokenizer_json,
            max_seq_len,
        )
    }

    /// `from_bytes` with the safetensors file read from `weights` 1 MiB at a time and streamed
    /// onto the GPU: host memory stays bounded by the read buffer and the parsed header, never
    /// the file. The config and the tokenizer are checked before any weight is read.
    pub fn from_source(
        engine: &Engine,
        config_json: &[u8],
        weights: &mut dyn WeightSource,
        tokenizer_json: &[u8],
        max_seq_len: usize,
    ) -> Result<Self> {
        let config = BertConfig::parse(config_json)?;
        let max_len = max_seq_len.min(config.max_position_embeddings);
        let tokenizer = WordPiece::from_json(tokenizer_json, max_len)?;
        let mut sink = GpuSink::new(engine);
        let (header, _) = load_from(
            weights,
            Some(Format::Safetensors),
            Self::load_options(),
            STREAM_CHUNK,
            &mut sink,
        )?;
        Self::assemble(engine, config, tokenizer, sink, &header)
    }

    /// How the loader must read a BERT safetensors file: tensors of dtypes the encoder does
    /// not use (the I64 `position_ids` buffer many exports carry) are streamed past.
    pub fn load_options() -> LoadOptions {
        LoadOptions {
            skip_unsupported: true,
            ..LoadOptions::default()
        }
    }

    /// The model from weights a `Loader` (created with `load_options`) streamed into `sink`
    /// from the safetensors file `header` describes, and the bytes of `config.json` and
    /// `tokenizer.json`: what the browser's streaming load does once the last byte arrived.
    pub fn from_sink(
        engine: &Engine,
        config_json: &[u8],
        tokenizer_json: &[u8],
        max_seq_len: usize,
        sink: GpuSink,
        header: &ModelHeader,
    ) -> Result<Self> {
        let config = BertConfig::parse(config_json)?;
        let max_len = max_seq_len.min(config.max_position_embeddings);
        let tokenizer = WordPiece::from_json(tokenizer_json, max_len)?;
        Self::assemble(engine, config, tokenizer, sink, header)
    }

    fn assemble(
        engine: &Engine,
        config: BertConfig,
        tokenizer: WordPiece,
        sink: GpuSink,
        header: &ModelHeader,
    ) -> Result<Self> {
        if header.format != Format::Safetensors {
            return Err(Error::Unsupported {
                what: "sentence encoders load from safetensors files (model.safetensors)".into(),
            });
        }
        let (h, ff) = (config.hidden_size, config.intermediate_size);
        let mut st = StreamedWeights::new(sink, header, "embeddings.word_embeddings.weight")?;
        let linear = |st: &mut StreamedWeights, name: &str, out: usize, inp: usize| {
            Ok::<_, Error>(Linear {
                w: st.take(&format!("{name}.weight"), &[out, inp])?,
                b: st.take(&format!("{name}.bias"), &[out])?,
            })
        };
        // The three projections of one attention layer, stacked (one dispatch computes them).
        let qkv = |st: &mut StreamedWeights, p: &str| -> Result<Linear> {
            let names = |what: &str| -> Vec<String> {
                ["query", "key", "value"]
                    .iter()
                    .map(|n| format!("{p}.attention.self.{n}.{what}"))
                    .collect()
            };
            Ok(Linear {
                w: st.take_stacked(engine, &names("weight"), &[h, h])?,
                b: st.take_stacked(engine, &names("bias"), &[h])?,
            })
        };
        let norm = |st: &mut StreamedWeights, name: &str| -> Result<Norm> {
            Ok(Norm {
                w: st.take(&format!("{name}.weight"), &[h])?,
                b: st.take(&format!("{name}.bias"), &[h])?,
            })
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            layers.push(Layer {
                qkv: qkv(&mut st, &p)?,
                attn_out: linear(&mut st, &format!("{p}.attention.output.dense"), h, h)?,
                attn_norm: norm(&mut st, &format!("{p}.attention.output.LayerNorm"))?,
                up: linear(&mut st, &format!("{p}.intermediate.dense"), ff, h)?,
                down: linear(&mut st, &format!("{p}.output.dense"), h, ff)?,
                ffn_norm: norm(&mut st, &format!("{p}.output.LayerNorm"))?,
            });
        }
        let word = st.take("embeddings.word_embeddings.weight", &[config.vocab_size, h])?;
        let max_pos = config.max_position_embeddings;
        let pos = st.take("embeddings.position_embeddings.weight", &[max_pos, h])?;
        let typ = st.take(
            "embeddings.token_type_embeddings.weight",
            &[config.type_vocab_size, h],
        )?;
        // Position rows plus the type-0 row, on the GPU: a gather of row 0 of the type table
        // for every position, with the position table added in the same dispatch (one f32 add
        // per value, as the host did it before the weights were streamed).
        let mut rec = engine.recorder();
        let position_type =
            ops::embedding_add(&typ, &vec![0u32; max_pos], 1.0, &pos, max_pos).record(&mut rec)?;
        rec.submit()?;
        Ok(Self {
            word,
            position_type,
            emb_norm: norm(&mut st, "embeddings.LayerNorm")?,
            layers,
            tokenizer,
            config,
            norm_in_matmul: None,
        })
    }

    /// Loads `config.json`, `model.safetensors`, `tokenizer.json` and (if present)
    /// `sentence_bert_config.json` from a model directory, streaming the weights from the file.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_dir(engine: &Engine, dir: &std::path::Path) -> Result<Self> {
        let read = |name: &str| {
            std::fs::read(dir.join(name)).map_err(|e| Error::BadModel {
                detail: format!("{}: {e}", dir.join(name).display()),
            })
        };
        let max_seq_len = match std::fs::read(dir.join("sentence_bert_config.json")) {
            Ok(b) => serde_json::from_slice::<serde_json::Value>(&b)
                .ok()
                .and_then(|v| v.get("max_seq_length").and_then(|m| m.as_u64()))
                .unwrap_or(512) as usize,
            Err(_) => 512,
        };
        let mut weights = FileSource::open(&dir.join("model.safetensors"))?;
        Self::from_source(
            engine,
            &read("config.json")?,
            &mut weights,
            &read("tokenizer.json")?,
            max_seq_len,
        )
    }

    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer.encode(text)
    }

    /// Whether `text` is longer than the max sequence length (its embedding covers only the
    /// first tokens, as sentence-transformers' does).
    pub fn is_truncated(&self, text: &str) -> Result<bool> {
        self.tokenizer.is_truncated(text)
    }

    /// Records the forward pass of a batch of token-id lists (each already tokenized, at most
    /// the max length) and returns the L2-normalized sentence embeddings [batch, hidden].
    pub fn forward(&self, rec: &mut Recorder, batch: &[Vec<u32>]) -> Result<Tensor> {
        let cfg = &self.config;
        let (h, heads) = (cfg.hidden_size, cfg.num_attention_heads);
        let b = batch.len();
        let seq = batch.iter().map(|t| t.len()).max().unwrap_or(0);
        if b == 0 || seq == 0 {
            return Err(Error::InvalidArgument {
                op: "bert",
                detail: "empty batch or empty token list".into(),
            });
        }
        if seq > cfg.max_position_embeddings {
            return Err(Error::InvalidArgument {
                op: "bert",
                detail: format!(
                    "{seq} tokens exceed {} positions",
                    cfg.max_position_embeddings
                ),
            });
        }
        // Pad every sequence to the longest one; the padding is masked in attention and
        // excluded from pooling.
        let lens: Vec<u32> = batch.iter().map(|t| t.len() as u32).collect();
        let mut ids = Vec::with_capacity(b * seq);
        for t in batch {
            ids.extend_from_slice(t);
            ids.extend(std::iter::repeat_n(0, seq - t.len()));
        }

        // The residual stream is kept before its LayerNorm: on GPUs each LayerNorm runs
        // inside the projection that reads its result (`ops::linear_norm`, which also returns
        // the normalized stream for the next residual add), and the last one inside the
        // pooling: 5 dispatches per layer, 1 for the embeddings and 1 for pooling. CPU
        // adapters (SwiftShader, lavapipe) run the LayerNorm as its own dispatch instead: a
        // dispatch costs them little, and normalizing A inside the matmul adds about 40% to
        // its arithmetic, which is what bounds them (lavapipe, 2026-11-23).
        let fuse = self.norm_in_matmul.unwrap_or(!rec.engine().profile().cpu);
        //
        // Embeddings: word + position + token type (type 0, folded into the position table):
        // r [b * seq, h], not yet normalized.
        let eps = cfg.layer_norm_eps as f32;
        let mut r =
            ops::embedding_add(&self.word, &ids, 1.0, &self.position_type, seq).record(rec)?;
        let mut norm = ops::LayerNormIn {
            gamma: &self.emb_norm.w,
            beta: &self.emb_norm.b,
            eps,
        };

        let head_dim = h / heads;
        let scale = 1.0 / (head_dim as f32).sqrt();
        let shape4 = [b, seq, heads, head_dim];
        for layer in &self.layers {
            // Self-attention, bidirectional, padding masked.  q, k, v: [b, seq, heads, head_dim];
            // x: the normalized stream, the residual of this sub-layer.
            let epi = ops::LinearEpilogue {
                bias: Some(&layer.qkv.b),
                ..Default::default()
            };
            let (qkv, x) = norm_linear(rec, &r, &layer.qkv.w, norm, epi, 3, fuse)?;
            let [q, k, v]: [Tensor; 3] = qkv.try_into().map_err(|_| Error::Shape {
                op: "bert",
                detail: "q/k/v split".into(),
            })?;
            let (q, k, v) = (
                reshape(&q, &shape4)?,
                reshape(&k, &shape4)?,
                reshape(&v, &shape4)?,
            );
            let ctx = attend(rec, &q, &k, &v, &lens, scale)?;
            // The residual add rides in the output projection's dispatch.
            let ctx = reshape(&ctx, &[b * seq, h])?;
            let r_attn = linear(rec, &ctx, &layer.attn_out, Some(&x))?;
            // Feed-forward: the attention LayerNorm and erf GELU in the up projection's
            // dispatch, then the down projection with the residual add.
            let epi = ops::LinearEpilogue {
                bias: Some(&layer.up.b),
                gelu: true,
                residual: None,
            };
            let attn_norm = ops::LayerNormIn {
                gamma: &layer.attn_norm.w,
                beta: &layer.attn_norm.b,
                eps,
            };
            let (up, x) = norm_linear(rec, &r_attn, &layer.up.w, attn_norm, epi, 1, fuse)?;
            let up = up.into_iter().next().ok_or_else(|| Error::Shape {
                op: "bert",
                detail: "no up projection".into(),
            })?;
            r = linear(rec, &up, &layer.down, Some(&x))?;
            norm = ops::LayerNormIn {
                gamma: &layer.ffn_norm.w,
                beta: &layer.ffn_norm.b,
                eps,
            };
        }
        // The last LayerNorm, mean pooling over real tokens and L2 normalization.
        let opts = ops::PoolOptions {
            norm: Some(norm),
            l2_eps: Some(1e-12),
        };
        ops::mean_pool(&reshape(&r, &[b, seq, h])?, &lens, opts).record(rec)
    }

    /// GPU time of each kernel of one forward pass over `batch` (microseconds, in dispatch
    /// order, labelled with kernel keys), from timestamp queries around one pass per dispatch.
    /// Needs timestamp queries.
    pub async fn profile_forward_async(
        &self,
        engine: &Engine,
        batch: &[Vec<u32>],
    ) -> Result<Vec<(String, f64)>> {
        const MAX: u32 = 1024;
        let timer = crate::tune::PassTimer::for_profile(engine, MAX)?;
        let mut rec = engine.recorder();
        rec.profile_dispatches(timer.set.clone(), MAX);
        self.forward(&mut rec, batch)?;
        timer.finish(engine, rec, true, MAX).await
    }

    /// Tokenizes and embeds `texts` in batches of at most `batch_size`; returns token ids and
    /// embeddings per text.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn embed(
        &self,
        engine: &Engine,
        texts: &[&str],
        batch_size: usize,
    ) -> Result<(TokenIds, Embeddings)> {
        pollster::block_on(self.embed_async(engine, texts, batch_size))
    }

    /// `embed` awaiting each batch's readback instead of blocking (the web's path).
    pub async fn embed_async(
        &self,
        engine: &Engine,
        texts: &[&str],
        batch_size: usize,
    ) -> Result<(TokenIds, Embeddings)> {
        let ids: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.tokenize(t))
            .collect::<Result<_>>()?;
        let mut out = Vec::with_capacity(texts.len());
        for chunk in ids.chunks(batch_size.max(1)) {
            let mut rec = engine.recorder();
            let e = self.forward(&mut rec, chunk)?;
            let flat: Vec<f32> =
                bytemuck::pod_collect_to_vec(&engine.submit_and_read(rec, &e).await?);
            out.extend(flat.chunks(self.config.hidden_size).map(|c| c.to_vec()));
        }
        Ok((ids, out))
    }
}

/// `layer_norm(x) W^T` with `epi`, and the normalized x: one dispatch (`ops::linear_norm`)
/// when `fuse`, else a LayerNorm dispatch and a linear one.
fn norm_linear(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    norm: ops::LayerNormIn<'_>,
    epi: ops::LinearEpilogue<'_>,
    parts: usize,
    fuse: bool,
) -> Result<(Vec<Tensor>, Tensor)> {
    if fuse {
        return ops::linear_norm(x, w, norm, epi, parts).record(rec);
    }
    let xn = ops::layer_norm(x, norm.gamma, norm.beta, norm.eps).record(rec)?;
    let outs = ops::linear_split(&xn, w, epi, parts).record(rec)?;
    Ok((outs, xn))
}

/// `x W^T + b`, plus `residual` when given: one dispatch.
fn linear(rec: &mut Recorder, x: &Tensor, l: &Linear, residual: Option<&Tensor>) -> Result<Tensor> {
    let epi = ops::LinearEpilogue {
        bias: Some(&l.b),
        gelu: false,
        residual,
    };
    ops::linear(x, &l.w, epi).record(rec)
}

fn reshape(t: &Tensor, shape: &[usize]) -> Result<Tensor> {
    t.reshape(shape).ok_or_else(|| Error::Shape {
        op: "bert",
        detail: format!("cannot view {:?} as {shape:?}", t.shape()),
    })
}

/// Bidirectional attention with per-sequence key lengths. q, k, v: [b, seq, heads, head_dim].
fn attend(
    rec: &mut Recorder,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    lens: &[u32],
    scale: f32,
) -> Result<Tensor> {
    let opts = ops::AttentionOptions {
        causal: false,
        scale: Some(scale),
        kv_lens: Some(lens.to_vec()),
        q_pos0: Some(0),
        ..Default::default()
    };
    ops::attention(q, k, v, &opts).record(rec)
}
