//! `TextModel`: a GGUF decoder with its tokenizer, generating one token per `next()` call
//! (each awaits only the sampled id and the top logits).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use webjit_engine::model::generate::{GenerateOptions, SampleSettings};
use webjit_engine::model::perplexity;
use webjit_engine::tokenizer::text::TextTokenizer;
use webjit_engine::Engine;

use crate::chat::ModelTemplate;
use crate::state::{give_back, take, Built, Inner, Running, Slot};

use crate::{invalid, js_err, js_error, now_ms, parse_opts};

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct GenOpts {
    max_tokens: usize,
    temperature: f32,
    top_k: u32,
    top_p: f32,
    repeat_penalty: f32,
    seed: u64,
}

impl Default for GenOpts {
    fn default() -> Self {
        let d = GenerateOptions::default();
        Self {
            max_tokens: d.max_tokens,
            temperature: d.temperature,
            top_k: d.top_k,
            top_p: d.top_p,
            repeat_penalty: d.repeat_penalty,
            seed: d.seed,
        }
    }
}

/// A loaded text model (JS class `TextModel`). `free()` releases its GPU memory.
#[wasm_bindgen(js_name = TextModel)]
pub struct WebTextModel {
    engine: Engine,
    alive: Rc<RefCell<bool>>,
    tok: Rc<TextTokenizer>,
    arch: String,
    template: ModelTemplate,
    /// Shared with the promise of a running `next()` (and, weakly, with `Engine.tune`).
    pub(crate) inner: Rc<RefCell<Slot>>,
    /// `stop()` during a `next()`: honoured before the following step.
    stop_requested: Rc<Cell<bool>>,
}

impl WebTextModel {
    pub(crate) fn new(engine: Engine, alive: Rc<RefCell<bool>>, b: Built) -> Self {
        Self {
            engine,
            alive,
            tok: Rc::new(b.tok),
            arch: b.arch,
            template: b.template,
            inner: Rc::new(RefCell::new(Slot::Ready(Box::new(Inner {
                session: b.session,
                running: None,
                prefilled: b.prefilled,
            })))),
            stop_requested: Rc::new(Cell::new(false)),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> Result<T, JsValue>) -> Result<T, JsValue> {
        if !*self.alive.borrow() {
            return Err(js_err("DISPOSED", "the engine was disposed"));
        }
        let mut g = self.inner.borrow_mut();
        match &mut *g {
            Slot::Ready(inner) => f(inner),
            Slot::Busy => Err(js_err("BUSY", "the model is busy with a next() call")),
            Slot::Freed => Err(js_err("DISPOSED", "the model was disposed")),
        }
    }
}

#[wasm_bindgen(js_class = TextModel)]
impl WebTextModel {
    /// `{architecture, n_layers, vocab, d_model, max_context, position, chat_template,
    /// kv_cache, kv_cache_bytes}` as JSON; `chat_template` says where the chat template comes
    /// from: "gguf" (the file's), "builtin:gemma3" (the file has none; Gemma 3's published
    /// one) or "none"; `kv_cache` is the KV cache format and `kv_cache_bytes` its GPU memory.
    pub fn info(&self) -> Result<String, JsValue> {
        let arch = self.arch.clone();
        let origin = self.template.origin.clone();
        self.with(|i| {
            let c = &i.session.decoder.cfg;
            Ok(serde_json::json!({
                "architecture": arch,
                "n_layers": c.n_layers,
                "vocab": c.vocab,
                "d_model": c.d_model,
                "n_heads": c.n_heads,
                "n_kv_heads": c.n_kv_heads,
                "max_context": i.session.decoder.max_context(),
                "position": i.session.position(),
                "chat_template": origin,
                "kv_cache": i.session.decoder.kv_dtype().map(|t| t.name()),
                "kv_cache_bytes": i.session.decoder.kv_cache_bytes(),
            })
            .to_string())
        })
    }

    /// Token ids of `text`, control tokens written in the text parsed as llama.cpp does.
    pub fn tokenize(&self, text: &str, add_bos: bool) -> Result<Vec<u32>, JsValue> {
        self.tok.encode(text, add_bos).map_err(js_error)
    }

    /// Text of `ids` (control tokens hidden).
    pub fn detokenize(&self, ids: &[u32]) -> Result<String, JsValue> {
        self.tok.decode(ids).map_err(js_error)
    }

    /// `[{role, content}]` in the chat template: `template` (a Jinja string) when given, else
    /// the model's own. `CHAT_TEMPLATE` when there is none, or it fails or refuses.
    #[wasm_bindgen(js_name = chatPrompt)]
    pub fn chat_prompt(
        &self,
        messages_json: &str,
        template: Option<String>,
        add_generation_prompt: bool,
    ) -> Result<String, JsValue> {
        self.template.text(
            &self.tok,
            messages_json,
            template.as_deref(),
            add_generation_prompt,
        )
    }

    /// The prompt ids of `chatPrompt`'s text: the BOS token is added only when the text does
    /// not already start with it (Llama 3's and Gemma's templates write it themselves).
    #[wasm_bindgen(js_name = chatPromptIds)]
    pub fn chat_prompt_ids(
        &self,
        messages_json: &str,
        template: Option<String>,
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>, JsValue> {
        self.template.ids(
            &self.tok,
            messages_json,
            template.as_deref(),
            add_generation_prompt,
        )
    }

    /// Begins generating after `prompt_ids` (fed after whatever the context already holds).
    pub fn start(&self, prompt_ids: &[u32], options_json: &str) -> Result<(), JsValue> {
        let opts = gen_options(options_json)?;
        let vocab = self.tok.vocab_size();
        if let Some(bad) = prompt_ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(invalid(format!(
                "prompt token id {bad} is outside the vocabulary of {vocab} tokens"
            )));
        }
        self.with(|i| {
            if let Some(mut r) = i.running.take() {
                i.session.stop(&mut r.gen);
            }
            // Text after a streamed prompt continues it; its logits are no longer needed.
            if let Some((ids, _)) = i.prefilled.take() {
                i.session.note_fed(&ids);
            }
            let gen = i.session.start(prompt_ids, &opts).map_err(js_error)?;
            self.stop_requested.set(false);
            i.running = Some(Running::new(gen));
            Ok(())
        })
    }

    /// Begins generating from the prompt prefilled while the file streamed in (`beginLoad`
    /// with `prompt`): the first token comes from the logits computed during the load.
    #[wasm_bindgen(js_name = startPrefilled)]
    pub fn start_prefilled(&self, options_json: &str) -> Result<(), JsValue> {
        let opts = gen_options(options_json)?;
        self.with(|i| {
            let (ids, logits) = i.prefilled.take().ok_or_else(|| {
                js_err(
                    "INVALID_STATE",
                    "no prefilled prompt: load with {prompt} and call this first",
                )
            })?;
            let gen = i
                .session
                .start_prefilled(&ids, logits, &opts)
                .map_err(js_error)?;
            self.stop_requested.set(false);
            i.running = Some(Running::new(gen));
            Ok(())
        })
    }

    /// The ids of the prompt prefilled during the load (empty when none is waiting).
    #[wasm_bindgen(js_name = prefilledPrompt)]
    pub fn prefilled_prompt(&self) -> Result<Vec<u32>, JsValue> {
        self.with(|i| {
            Ok(i.prefilled
                .as_ref()
                .map(|p| p.0.clone())
                .unwrap_or_default())
        })
    }

    /// The next token as JSON: `{done: false, id, text, top}` or `{done: true, reason, ...}`.
    pub fn next(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        let tok = self.tok.clone();
        let engine = self.engine.clone();
        let alive = self.alive.clone();
        let stop = self.stop_requested.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            if !*alive.borrow() {
                return Err(js_err("DISPOSED", "the engine was disposed"));
            }
            let mut i = take(&inner, "another next() call is still running")?;
            let r = step(&mut i, &engine, &tok, &stop).await;
            give_back(&inner, i);
            r
        })
    }

    /// The logits at the last position of `prompt_ids` (a Float32Array of `vocab` entries),
    /// from a fresh context: the conversation is reset first and holds the prompt afterwards.
    pub fn logits(&self, prompt_ids: Vec<u32>) -> js_sys::Promise {
        let inner = self.inner.clone();
        let engine = self.engine.clone();
        let alive = self.alive.clone();
        let vocab = self.tok.vocab_size();
        wasm_bindgen_futures::future_to_promise(async move {
            if !*alive.borrow() {
                return Err(js_err("DISPOSED", "the engine was disposed"));
            }
            if prompt_ids.is_empty() {
                return Err(invalid("logits: the prompt has no tokens"));
            }
            if let Some(bad) = prompt_ids.iter().find(|&&id| id as usize >= vocab) {
                return Err(invalid(format!(
                    "prompt token id {bad} is outside the vocabulary of {vocab} tokens"
                )));
            }
            let mut i = take(&inner, "the model is busy with a next() call")?;
            let r = prompt_logits(&mut i, &engine, &prompt_ids).await;
            give_back(&inner, i);
            r
        })
    }

    /// Perplexity of `text` as `webjit perplexity` computes it (llama.cpp's llama-perplexity:
    /// chunks of `n_ctx` tokens from an empty cache, BOS first, the second half of each scored).
    /// `on_chunk` gets each chunk's progress as JSON. Resolves to the report as JSON. The
    /// conversation is reset.
    pub fn perplexity(
        &self,
        text: String,
        n_ctx: usize,
        max_chunks: Option<usize>,
        on_chunk: Option<js_sys::Function>,
    ) -> js_sys::Promise {
        let inner = self.inner.clone();
        let engine = self.engine.clone();
        let alive = self.alive.clone();
        let tok = self.tok.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            if !*alive.borrow() {
                return Err(js_err("DISPOSED", "the engine was disposed"));
            }
            let (tokens, bos) = perplexity::text_tokens(&tok, &text).map_err(js_error)?;
            let opts = perplexity::PerplexityOptions {
                n_ctx,
                max_chunks,
                score_by_decode: false,
            };
            let mut i = take(&inner, "the model is busy with a next() call")?;
            i.running = None;
            i.prefilled = None;
            i.session.reset();
            let max = i.session.decoder.max_context();
            let r = if max < n_ctx {
                Err(invalid(format!(
                    "perplexity: ctx {n_ctx} is more than the {max} positions the model was loaded \
                     with (loadModel's maxContext)"
                )))
            } else {
                let clock = || now_ms() / 1e3;
                let mut progress = |p: &perplexity::ChunkProgress| {
                    if let Some(f) = &on_chunk {
                        let v = serde_json::to_string(p).unwrap_or_default();
                        let _ = f.call1(&JsValue::NULL, &v.into());
                    }
                };
                perplexity::perplexity(
                    &engine,
                    &mut i.session.decoder,
                    &tokens,
                    bos,
                    &opts,
                    &clock,
                    &mut progress,
                )
                .await
                .map_err(js_error)
                .map(|r| JsValue::from(serde_json::to_string(&r).unwrap_or_default()))
            };
            give_back(&inner, i);
            r
        })
    }

    /// Stops the running generation: the next `next()` reports `done` with reason 'stopped'.
    pub fn stop(&self) -> Result<(), JsValue> {
        if matches!(*self.inner.borrow(), Slot::Busy) {
            self.stop_requested.set(true);
            return Ok(());
        }
        self.with(|i| {
            if let Some(r) = i.running.as_mut() {
                i.session.stop(&mut r.gen);
            }
            Ok(())
        })
    }

    /// Forgets the conversation (the KV cache starts over at position 0).
    pub fn reset(&self) -> Result<(), JsValue> {
        self.with(|i| {
            i.running = None;
            i.prefilled = None;
            i.session.reset();
            Ok(())
        })
    }
}

impl Drop for WebTextModel {
    fn drop(&mut self) {
        if let Ok(mut g) = self.inner.try_borrow_mut() {
            *g = Slot::Freed;
        }
        self.engine.pool.trim();
        self.engine.forget_bind_groups();
    }
}

fn gen_options(json: &str) -> Result<GenerateOptions, JsValue> {
    let o: GenOpts = parse_opts("generate", json)?;
    Ok(GenerateOptions {
        max_tokens: o.max_tokens,
        temperature: o.temperature,
        top_k: o.top_k,
        top_p: o.top_p,
        repeat_penalty: o.repeat_penalty,
        seed: o.seed,
    })
}

/// `logits()`: reset, one forward pass over the prompt, the last position's logits read back.
async fn prompt_logits(i: &mut Inner, engine: &Engine, ids: &[u32]) -> Result<JsValue, JsValue> {
    let max = i.session.decoder.max_context();
    if ids.len() > max {
        return Err(invalid(format!(
            "logits: {} prompt tokens, the context holds {max}",
            ids.len()
        )));
    }
    i.running = None;
    i.prefilled = None;
    i.session.reset();
    let greedy = SampleSettings::GREEDY;
    let step = i
        .session
        .step_async(engine, ids, &greedy)
        .await
        .map_err(js_error)?;
    let bytes = engine.read_bytes(&step.logits).await.map_err(js_error)?;
    let v: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
    Ok(js_sys::Float32Array::from(&v[..]).into())
}

/// One `next()`: the next token, or the end report.
async fn step(
    i: &mut Inner,
    engine: &Engine,
    tok: &TextTokenizer,
    stop: &Cell<bool>,
) -> Result<JsValue, JsValue> {
    let Some(r) = i.running.as_mut() else {
        return Err(js_err("INVALID_STATE", "call start() before next()"));
    };
    if stop.take() {
        i.session.stop(&mut r.gen);
    }
    let first = r.gen.stats.tokens.is_empty();
    let t0 = now_ms();
    let eog = |id: u32| tok.is_eog(id);
    let res = i
        .session
        .next_token(engine, &mut r.gen, &eog)
        .await
        .map_err(js_error)?;
    let dt = now_ms() - t0;
    let Some(res) = res else {
        let tail = r.text.finish();
        let s = &r.gen.stats;
        let out = serde_json::json!({
            "done": true,
            "reason": r.gen.stop.map(|s| s.name()).unwrap_or("stopped"),
            "text": tail,
            "promptTokens": s.prompt_tokens,
            "tokens": s.tokens,
            "prefillMs": r.prefill_ms,
            "decodeMs": r.decode_ms,
            "dispatchesPerToken": s.dispatches_per_token,
            "queuedBehind": s.queued_behind,
        });
        i.running = None;
        return Ok(JsValue::from_str(&out.to_string()));
    };
    if first {
        r.prefill_ms = dt;
    } else {
        r.decode_ms += dt;
    }
    let piece = tok.piece(res.token, false).map_err(js_error)?;
    let text = r.text.push(&piece);
    Ok(JsValue::from_str(
        &serde_json::json!({
            "done": false,
            "id": res.token,
            "text": text,
            "eog": tok.is_eog(res.token),
            "top": res.top,
        })
        .to_string(),
    ))
}
