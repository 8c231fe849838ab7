//! Text generation over a `Decoder`: prefill, then one command encoder per token
//! (forward + GPU sampling), reading back only the sampled id and the top few logits.
// The stepping loop waits on the GPU, which only native builds can do synchronously; the web
// facade will drive the same session with async readbacks.
#![cfg_attr(target_arch = "wasm32", allow(dead_code, unused_imports))]

pub use webjit_jit::kernels::sample::SampleSettings;
use webjit_jit::kernels::sample::SAMPLE_RESULT_WORDS;

use crate::error::{Error, Result};
use crate::model::decoder::Decoder;
use crate::ops::{SampleResult, Sampler};
use crate::tensor::Tensor;
use crate::Engine;

/// Sampling and stopping settings. `Default` is greedy, 128 tokens, no penalty.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    /// <= 0: greedy (argmax, ties to the lower id).
    pub temperature: f32,
    /// 0: the sampler's maximum (64 candidates).
    pub top_k: u32,
    pub top_p: f32,
    /// llama.cpp's repetition penalty over the last 64 tokens; 1 = off.
    pub repeat_penalty: f32,
    pub seed: u64,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_tokens: 128,
            temperature: 0.0,
            top_k: 40,
            top_p: 0.95,
            repeat_penalty: 1.0,
            seed: 0,
        }
    }
}

impl GenerateOptions {
    /// The sampler settings of one step with the uniform draw `u`, checked.
    fn settings(&self, u: f32) -> Result<SampleSettings> {
        let s = SampleSettings {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            u,
            penalty: self.repeat_penalty,
        };
        Sampler::validate(&s)?;
        Ok(s)
    }
}

/// What a generation did, with timings measured around GPU completion.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct GenerateStats {
    pub prompt_tokens: usize,
    pub tokens: Vec<u32>,
    /// Per generated token: the top (id, logit) pairs of the distribution it was drawn from.
    pub top_logits: Vec<Vec<(u32, f32)>>,
    pub prefill_s: f64,
    pub decode_s: f64,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    /// GPU dispatches recorded per decode step (forward + sampling).
    pub dispatches_per_token: u32,
    /// Stopped on an end-of-generation token (not on the token limit or the callback).
    pub stopped_on_eog: bool,
}

/// splitmix64: a tiny seeded generator for the sampler's uniform draws (the same seed gives
/// the same tokens on every platform).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1) with 24 bits (exact in f32).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// What one `Session::step` produced.
pub struct Step {
    pub result: SampleResult,
    /// [1, vocab] logits of the last fed position.
    pub logits: Tensor,
    /// Dispatches recorded (forward + sampling).
    pub dispatches: u32,
    /// Host seconds spent recording and submitting the step (before waiting for the GPU).
    pub record_s: f64,
    /// The part of `record_s` spent in `submit` (finishing the command encoder, writing the
    /// uniforms, handing the work to the queue).
    pub submit_s: f64,
}

/// Why a `Generation` stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// An end-of-generation token was sampled (it is reported).
    Eog,
    MaxTokens,
    /// The KV cache is full.
    Context,
    /// `Session::stop`.
    Stopped,
    /// A step failed.
    Error,
}

impl StopReason {
    pub fn name(self) -> &'static str {
        match self {
            StopReason::Eog => "eog",
            StopReason::MaxTokens => "max_tokens",
            StopReason::Context => "context",
            StopReason::Stopped => "stopped",
            StopReason::Error => "error",
        }
    }
}

/// A generation in progress (see `Session::start`).
pub struct Generation {
    opts: GenerateOptions,
    rng: Rng,
    /// Fed at the next step: the prompt first, then the last sampled token.
    input: Vec<u32>,
    /// Tokens and top logits so far (timings are left to the caller).
    pub stats: GenerateStats,
    pub stop: Option<StopReason>,
    /// Logits of a prompt already in the KV cache: the first token is sampled from them.
    prefilled: Option<Tensor>,
}

/// A generation session: the decoder, its sampler, and the token sampled last but not yet fed
/// back (it becomes the first input of the next call).
pub struct Session {
    pub decoder: Decoder,
    sampler: Sampler,
    pending: Option<u32>,
    history: Vec<u32>,
    arena: Option<crate::Arena>,
    /// Two readback buffers for the sampled token of pipelined decode steps.
    staging: Vec<wgpu::Buffer>,
    /// The engine (`Gpu::id`) the decoder's weights live on: steps on another are refused.
    engine_id: u64,
}

impl Session {
    pub fn new(engine: &Engine, decoder: Decoder) -> Result<Self> {
        let sampler = Sampler::new(engine, decoder.cfg.vocab)?;
        Ok(Self {
            decoder,
            sampler,
            pending: None,
            history: Vec::new(),
            arena: None,
            staging: Vec::new(),
            engine_id: engine.gpu.id,
        })
    }

    /// Forgets the conversation.
    pub fn reset(&mut self) {
        self.decoder.reset();
        self.pending = None;
        self.history.clear();
    }

    /// Positions in the KV cache.
    pub fn position(&self) -> usize {
        self.decoder.position()
    }

    /// One step (native: waits for the GPU): forward `tokens` at the next positions and sample
    /// from the last position's logits. The logits tensor ([1, vocab]) comes back too (with a
    /// repetition penalty it holds the penalized values).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn step(&mut self, engine: &Engine, tokens: &[u32], s: &SampleSettings) -> Result<Step> {
        pollster::block_on(self.step_async(engine, tokens, s))
    }

    /// `step` that awaits the sampled id instead of blocking (the web's path; native callers
    /// may block on it).
    pub async fn step_async(
        &mut self,
        engine: &Engine,
        tokens: &[u32],
        s: &SampleSettings,
    ) -> Result<Step> {
        if engine.gpu.id != self.engine_id {
            return Err(Error::InvalidArgument {
                op: "step",
                detail: "this session's model was loaded on another engine".into(),
            });
        }
        let t0 = web_time::now();
        let mut rec = engine.recorder();
        // Single-token steps repeat the same allocations: an arena gives them the same
        // buffers (and cached bind groups) every time. Prefill uses the pool.
        if tokens.len() == 1 {
            rec.set_arena(self.arena.take().unwrap_or_default());
        }
        let logits = self.decoder.forward(&mut rec, tokens);
        if let Some(a) = rec.take_arena() {
            self.arena = Some(a);
        }
        let logits = logits?;
        self.history.extend_from_slice(tokens);
        self.sampler.record(&mut rec, &logits, s, &self.history)?;
        let dispatches = rec.stats.dispatches;
        let t1 = web_time::now();
        rec.submit()?;
        let t2 = web_time::now();
        let (record_s, submit_s) = (t2 - t0, t2 - t1);
        let words: Vec<u32> =
            bytemuck::pod_collect_to_vec(&engine.read_bytes(self.sampler.result()).await?);
        Ok(Step {
            result: SampleResult::from_words(&words)?,
            logits,
            dispatches,
            record_s,
            submit_s,
        })
    }

    /// GPU time of each kernel of one decode step of `token` (microseconds, in dispatch order,
    /// labelled with kernel keys), from timestamp queries around one pass per dispatch. The
    /// step is appended to the context like any other. Needs timestamp queries.
    ///
    /// With `per_dispatch` false the step is recorded as usual (dispatches share passes) and
    /// each entry is one pass, labelled `pass`: their sum is the step's GPU time.
    pub async fn profile_step_async(
        &mut self,
        engine: &Engine,
        token: u32,
        s: &SampleSettings,
        per_dispatch: bool,
    ) -> Result<Vec<(String, f64)>> {
        const MAX: u32 = 2048;
        let timer = crate::tune::PassTimer::for_profile(engine, MAX)?;
        let mut rec = engine.recorder();
        if per_dispatch {
            rec.profile_dispatches(timer.set.clone(), MAX);
        } else {
            rec.time_passes(timer.set.clone(), MAX);
        }
        rec.set_arena(self.arena.take().unwrap_or_default());
        let logits = self.decoder.forward(&mut rec, &[token]);
        if let Some(a) = rec.take_arena() {
            self.arena = Some(a);
        }
        let logits = logits?;
        self.history.push(token);
        self.sampler.record(&mut rec, &logits, s, &self.history)?;
        timer.finish(engine, rec, per_dispatch, MAX).await
    }

    /// Begins a generation driven one token at a time by `next_token` (for callers that must
    /// not block, such as the browser): `prompt` is fed after any pending token. The same seed
    /// gives the same tokens as `generate`.
    pub fn start(&mut self, prompt: &[u32], opts: &GenerateOptions) -> Result<Generation> {
        opts.settings(0.0)?;
        let mut input: Vec<u32> = self.pending.take().into_iter().collect();
        input.extend_from_slice(prompt);
        if input.is_empty() {
            return Err(Error::InvalidArgument {
                op: "generate",
                detail: "the prompt is empty and no earlier token is pending".into(),
            });
        }
        let stats = GenerateStats {
            prompt_tokens: input.len(),
            ..Default::default()
        };
        Ok(Generation {
            opts: opts.clone(),
            rng: Rng::new(opts.seed),
            input,
            stats,
            stop: None,
            prefilled: None,
        })
    }

    /// `start` for a prompt that is already in the KV cache (a streaming prefill), with the
    /// logits of its last position ([1, vocab]): the first `next_token` samples from them.
    pub fn start_prefilled(
        &mut self,
        prompt: &[u32],
        logits: Tensor,
        opts: &GenerateOptions,
    ) -> Result<Generation> {
        opts.settings(0.0)?;
        self.pending = None;
        self.history.extend_from_slice(prompt);
        Ok(Generation {
            opts: opts.clone(),
            rng: Rng::new(opts.seed),
            input: Vec::new(),
            stats: GenerateStats {
                prompt_tokens: prompt.len(),
                ..Default::default()
            },
            stop: None,
            prefilled: Some(logits),
        })
    }

    /// The next token of `g`, or `None` once it has stopped (`g.stop` says why). The returned
    /// token is not yet in the KV cache: the next call (or the next `generate`) feeds it.
    pub async fn next_token(
        &mut self,
        engine: &Engine,
        g: &mut Generation,
        is_eog: &dyn Fn(u32) -> bool,
    ) -> Result<Option<SampleResult>> {
        if g.stop.is_none() && g.stats.tokens.len() >= g.opts.max_tokens {
            g.stop = Some(StopReason::MaxTokens);
        }
        if g.stop.is_none() && self.position() + g.input.len() > self.decoder.max_context() {
            g.stop = Some(StopReason::Context);
        }
        if g.stop.is_some() {
            // Whatever was not fed waits for the next generation.
            if let Some(&last) = g.input.last() {
                if g.stats.tokens.last() == Some(&last) {
                    self.pending = Some(last);
                }
            }
            return Ok(None);
        }
        let input = std::mem::take(&mut g.input);
        let settings = g.opts.settings(g.rng.uniform())?;
        let step = match g.prefilled.take() {
            Some(logits) => self.sample_async(engine, &logits, &settings).await,
            None => self.step_async(engine, &input, &settings).await.map(|s| {
                g.stats.dispatches_per_token = s.dispatches;
                s.result
            }),
        };
        let res = match step {
            Ok(s) => s,
            Err(e) => {
                g.stop = Some(StopReason::Error);
                return Err(e);
            }
        };
        g.stats.tokens.push(res.token);
        g.stats.top_logits.push(res.top.clone());
        g.input = vec![res.token];
        if is_eog(res.token) {
            g.stop = Some(StopReason::Eog);
        }
        if g.stop.is_some() || g.stats.tokens.len() >= g.opts.max_tokens {
            self.pending = Some(res.token);
            g.input.clear();
            g.stop.get_or_insert(StopReason::MaxTokens);
        }
        Ok(Some(res))
    }

    /// Records that `ids` are in the KV cache already (a streamed prompt continued without
    /// sampling from its logits), so the repetition penalty sees them.
    pub fn note_fed(&mut self, ids: &[u32]) {
        self.history.extend_from_slice(ids);
    }

    /// Samples from `logits` (the history so far feeds the penalty) and awaits the result.
    async fn sample_async(
        &mut self,
        engine: &Engine,
        logits: &Tensor,
        s: &SampleSettings,
    ) -> Result<SampleResult> {
        let mut rec = engine.recorder();
        self.sampler.record(&mut rec, logits, s, &self.history)?;
        rec.submit()?;
        let words: Vec<u32> =
            bytemuck::pod_collect_to_vec(&engine.read_bytes(self.sampler.result()).await?);
        SampleResult::from_words(&words)
    }

    /// Ends `g` early: its last token waits, unfed, for the next generation.
    pub fn stop(&mut self, g: &mut Generation) {
        if g.stop.is_none() {
            g.stop = Some(StopReason::Stopped);
            if let Some(&last) = g.input.last() {
                if g.stats.tokens.last() == Some(&last) {
                    self.pending = Some(last);
                }
            }
            g.input.clear();
        }
    }

    /// Feeds `prompt` (after any pending token) and generates up to `opts.max_tokens` tokens.
    /// `on_token(id)` sees each token as it is sampled and returns false to stop; generation
    /// also stops after an id for which `is_eog` holds (that id is reported, not fed back).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn generate(
        &mut self,
        engine: &Engine,
        prompt: &[u32],
        opts: &GenerateOptions,
        is_eog: &dyn Fn(u32) -> bool,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<GenerateStats> {
        let mut rng = Rng::new(opts.seed);
        let mut settings = opts.settings(0.0)?;
        let mut input: Vec<u32> = self.pending.take().into_iter().collect();
        input.extend_from_slice(prompt);
        let mut stats = GenerateStats {
            prompt_tokens: input.len(),
            ..Default::default()
        };
        if opts.max_tokens == 0 || input.is_empty() {
            // Nothing to sample; still feed the prompt so the context is complete.
            if !input.is_empty() {
                let mut rec = engine.recorder();
                self.decoder.forward(&mut rec, &input)?;
                self.history.extend_from_slice(&input);
                rec.submit()?;
                engine.gpu.wait_idle()?;
            }
            return Ok(stats);
        }
        let t0 = web_time::now();
        settings.u = rng.uniform();
        let res = self.step(engine, &input, &settings)?.result;
        stats.prefill_s = web_time::now() - t0;
        self.decode_from(
            engine,
            res,
            opts,
            &mut settings,
            &mut rng,
            &mut stats,
            is_eog,
            on_token,
        )?;
        Ok(stats)
    }

    /// `generate` for a prompt that is already in the KV cache, with the logits of its last
    /// position ([1, vocab]), e.g. from `Decoder::load_with_prefill`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn generate_prefilled(
        &mut self,
        engine: &Engine,
        prompt: &[u32],
        logits: &Tensor,
        opts: &GenerateOptions,
        is_eog: &dyn Fn(u32) -> bool,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<GenerateStats> {
        let mut rng = Rng::new(opts.seed);
        let mut settings = opts.settings(rng.uniform())?;
        let mut stats = GenerateStats {
            prompt_tokens: prompt.len(),
            ..Default::default()
        };
        self.history.extend_from_slice(prompt);
        if opts.max_tokens == 0 {
            return Ok(stats);
        }
        let mut rec = engine.recorder();
        self.sampler
            .record(&mut rec, logits, &settings, &self.history)?;
        rec.submit()?;
        let res = self.sampler.read(engine)?;
        self.decode_from(
            engine,
            res,
            opts,
            &mut settings,
            &mut rng,
            &mut stats,
            is_eog,
            on_token,
        )?;
        Ok(stats)
    }

    /// The decode loop after the prompt's first token `res`.
    #[cfg(not(target_arch = "wasm32"))]
    #[allow(clippy::too_many_arguments)]
    fn decode_from(
        &mut self,
        engine: &Engine,
        res: SampleResult,
        opts: &GenerateOptions,
        settings: &mut SampleSettings,
        rng: &mut Rng,
        stats: &mut GenerateStats,
        is_eog: &dyn Fn(u32) -> bool,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<()> {
        let t1 = web_time::now();
        let decode_steps = if opts.repeat_penalty == 1.0 {
            self.decode_pipelined(engine, res, opts, settings, rng, stats, is_eog, on_token)?
        } else {
            self.decode_sync(engine, res, opts, settings, rng, stats, is_eog, on_token)?
        };
        stats.decode_s = web_time::now() - t1;
        stats.prefill_tok_s = rate(stats.prompt_tokens, stats.prefill_s);
        stats.decode_tok_s = rate(decode_steps, stats.decode_s);
        Ok(())
    }

    /// Records `res` and asks whether to go on; on stop, `res.token` becomes the pending token.
    fn accept(
        &mut self,
        res: &SampleResult,
        opts: &GenerateOptions,
        stats: &mut GenerateStats,
        is_eog: &dyn Fn(u32) -> bool,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> bool {
        stats.tokens.push(res.token);
        stats.top_logits.push(res.top.clone());
        let keep_going = on_token(res.token);
        if is_eog(res.token) {
            stats.stopped_on_eog = true;
            return false;
        }
        keep_going
            && stats.tokens.len() < opts.max_tokens
            && self.decoder.position() < self.decoder.max_context()
    }

    /// One step per token, each waiting for the previous token (needed when the repetition
    /// penalty must see every token before the next step is recorded).
    #[cfg(not(target_arch = "wasm32"))]
    #[allow(clippy::too_many_arguments)]
    fn decode_sync(
        &mut self,
        engine: &Engine,
        mut res: SampleResult,
        opts: &GenerateOptions,
        settings: &mut SampleSettings,
        rng: &mut Rng,
        stats: &mut GenerateStats,
        is_eog: &dyn Fn(u32) -> bool,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<usize> {
        let mut steps = 0;
        while self.accept(&res, opts, stats, is_eog, on_token) {
            settings.u = rng.uniform();
            let step = self.step(engine, &[res.token], settings)?;
            stats.dispatches_per_token = step.dispatches;
            steps += 1;
            res = step.result;
        }
        self.pending = Some(res.token);
        Ok(steps)
    }

    /// Decode with the next step already on the GPU while the host reads the previous token:
    /// each step takes its input token from the sampler's result buffer on the GPU, so step
    /// k+1 is recorded and submitted before token k is read back. When generation stops, the
    /// one step submitted ahead is discarded and its KV-cache position forgotten.
    #[cfg(not(target_arch = "wasm32"))]
    #[allow(clippy::too_many_arguments)]
    fn decode_pipelined(
        &mut self,
        engine: &Engine,
        mut res: SampleResult,
        opts: &GenerateOptions,
        settings: &mut SampleSettings,
        rng: &mut Rng,
        stats: &mut GenerateStats,
        is_eog: &dyn Fn(u32) -> bool,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<usize> {
        let mut steps = 0;
        let mut slot = 0usize;
        // The step in flight that consumes `res.token`, if any.
        let mut ahead: Option<(wgpu::SubmissionIndex, usize)> = None;
        loop {
            if !self.accept(&res, opts, stats, is_eog, on_token) {
                if let Some((idx, s)) = ahead.take() {
                    self.read_staged(engine, s, idx)?;
                    self.decoder.rewind(1);
                }
                break;
            }
            let cur = match ahead.take() {
                Some(c) => c,
                None => {
                    settings.u = rng.uniform();
                    slot ^= 1;
                    let step = self.record_gpu_step(engine, settings, slot, stats)?;
                    (step.submit()?, slot)
                }
            };
            // The step after `cur` may be wanted: submit it now, reading `cur`'s token on the
            // GPU, so it runs while the host waits for and handles `cur`'s token.
            let may_continue = stats.tokens.len() + 1 < opts.max_tokens
                && self.decoder.position() < self.decoder.max_context();
            if may_continue {
                settings.u = rng.uniform();
                slot ^= 1;
                let step = self.record_gpu_step(engine, settings, slot, stats)?;
                ahead = Some((step.submit()?, slot));
            }
            res = self.read_staged(engine, cur.1, cur.0)?;
            steps += 1;
        }
        // Every generated token but the last was fed to the decoder.
        let fed = stats.tokens.len().saturating_sub(1);
        self.history.extend_from_slice(&stats.tokens[..fed]);
        self.pending = Some(res.token);
        Ok(steps)
    }

    /// Records one decode step whose input is the token in the sampler's result, ending with
    /// a copy of the new result into staging buffer `slot`; the caller submits it.
    #[cfg(not(target_arch = "wasm32"))]
    fn record_gpu_step<'e>(
        &mut self,
        engine: &'e Engine,
        s: &SampleSettings,
        slot: usize,
        stats: &mut GenerateStats,
    ) -> Result<crate::recorder::PendingSubmit<'e>> {
        let bytes = (SAMPLE_RESULT_WORDS * 4) as u64;
        if self.staging.is_empty() {
            for _ in 0..2 {
                self.staging
                    .push(engine.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("webjit sampled token"),
                        size: bytes,
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    }));
            }
        }
        let mut rec = engine.recorder();
        rec.set_arena(self.arena.take().unwrap_or_default());
        let id = self
            .sampler
            .result()
            .head(1)
            .ok_or_else(|| Error::InvalidArgument {
                op: "generate",
                detail: "sampler result is not a flat buffer".into(),
            })?;
        let logits = self.decoder.forward_gpu_token(&mut rec, &id);
        if let Some(a) = rec.take_arena() {
            self.arena = Some(a);
        }
        let logits = logits?;
        self.sampler.record(&mut rec, &logits, s, &[])?;
        rec.copy_after(
            self.sampler.result().segments()[0].buffer.raw(),
            0,
            &self.staging[slot],
            0,
            bytes,
        );
        stats.dispatches_per_token = rec.stats.dispatches;
        Ok(rec.into_pending())
    }

    /// Waits for submission `idx` and reads staging buffer `slot`.
    #[cfg(not(target_arch = "wasm32"))]
    fn read_staged(
        &self,
        engine: &Engine,
        slot: usize,
        idx: wgpu::SubmissionIndex,
    ) -> Result<SampleResult> {
        let buf = &self.staging[slot];
        let done = std::sync::Arc::new(std::sync::Mutex::new(None));
        let d = done.clone();
        buf.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            if let Ok(mut g) = d.lock() {
                *g = Some(r.map_err(|e| e.to_string()));
            }
        });
        let wait = |poll: wgpu::PollType| -> Result<()> {
            engine.gpu.device.poll(poll).map(|_| ()).map_err(|e| {
                engine.gpu.mark_lost(e.to_string());
                Error::DeviceLost {
                    reason: e.to_string(),
                }
            })
        };
        let mapped = || done.lock().ok().and_then(|g| g.clone());
        wait(wgpu::PollType::Wait {
            submission_index: Some(idx),
            timeout: None,
        })?;
        if mapped().is_none() {
            // The map callback can land one maintenance pass after its submission completes
            // (seen on lavapipe): wait for everything submitted, the step run ahead included.
            wait(wgpu::PollType::wait_indefinitely())?;
        }
        // Rarely (lavapipe under load) it lands later still: keep polling for up to 2 s.
        let t0 = web_time::now();
        while mapped().is_none() && web_time::now() - t0 < 2.0 {
            wait(wgpu::PollType::Poll)?;
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let state = mapped();
        match state {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(Error::Readback { detail: e }),
            None => {
                return Err(Error::Readback {
                    detail: "the sampled token was not mapped after its submission finished".into(),
                })
            }
        }
        let words: Vec<u32> = {
            let view = buf
                .slice(..)
                .get_mapped_range()
                .map_err(|e| Error::Readback {
                    detail: e.to_string(),
                })?;
            bytemuck::pod_collect_to_vec(&view[..])
        };
        buf.unmap();
        SampleResult::from_words(&words)
    }
}

fn rate(n: usize, s: f64) -> f64 {
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

/// Seconds from a monotonic clock (native only for now; the web build measures in JS).
mod web_time {
    #[cfg(not(target_arch = "wasm32"))]
    pub fn now() -> f64 {
        use std::sync::OnceLock;
        use std::time::Instant;
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_secs_f64()
    }
    #[cfg(target_arch = "wasm32")]
    pub fn now() -> f64 {
        0.0
    }
}
