//! Text generation over a `Decoder`: one state machine for native callers and the browser.
//!
//! `Session::start` begins a generation, `Session::next_token` returns one token per call.
//! Each step is one command encoder (forward + GPU sampling) that reads back only the sampled
//! id and the top few logits. Decode runs ahead of the host: a step reads its input token from
//! the sampler's result buffer on the GPU, so before `next_token` waits for token k it submits
//! the step that feeds k (and samples k + 1), and when it returns k that step is on the GPU.
//! The GPU never waits for the host to record a step, and the host's handling of k overlaps
//! the GPU's work on k + 1. Native `generate` drives the same machine with a blocking executor.

mod types;

use std::collections::VecDeque;

pub use types::{GenerateOptions, GenerateStats, Rng, Step, StopReason};
pub use webjit_jit::kernels::sample::SampleSettings;
use webjit_jit::kernels::sample::SAMPLE_RESULT_WORDS;

use crate::error::{Error, Result};
use crate::model::decoder::Decoder;
use crate::ops::{SampleResult, Sampler};
use crate::tensor::Tensor;
use crate::Engine;

/// A decode step submitted ahead: it feeds the token sampled by the step before it (the first
/// in `Generation::ahead` feeds the last returned token) and samples the next into staging
/// buffer `slot`.
struct Ahead {
    slot: usize,
    submission: wgpu::SubmissionIndex,
}

/// A generation in progress (see `Session::start`).
pub struct Generation {
    opts: GenerateOptions,
    rng: Rng,
    /// Fed at the first step: the pending token and the prompt.
    prompt: Vec<u32>,
    /// Logits of a prompt already in the KV cache: the first token is sampled from them.
    prefilled: Option<Tensor>,
    /// The token returned last, not yet known to be fed.
    last: Option<u32>,
    /// Steps submitted and not yet read, oldest first (at most two).
    ahead: VecDeque<Ahead>,
    /// Steps submitted ahead so far (their staging buffers alternate).
    submitted: usize,
    /// Tokens and top logits so far; timings are filled in by `next_token` natively.
    pub stats: GenerateStats,
    pub stop: Option<StopReason>,
    started_s: f64,
    first_token_s: f64,
}

/// A generation session: the decoder, its sampler, and the token sampled last but not yet fed
/// back (it becomes the first input of the next generation).
pub struct Session {
    pub decoder: Decoder,
    sampler: Sampler,
    pending: Option<u32>,
    history: Vec<u32>,
    arena: Option<crate::Arena>,
    /// Two readback buffers for the sampled tokens of steps run ahead.
    staging: Vec<wgpu::Buffer>,
    /// The engine the decoder's weights live on: steps on another are refused.
    engine: Engine,
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
            engine: engine.clone(),
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

    fn check_engine(&self, engine: &Engine) -> Result<()> {
        if !engine.same(&self.engine) {
            return Err(Error::InvalidArgument {
                op: "step",
                detail: "this session's model was loaded on another engine".into(),
            });
        }
        Ok(())
    }

    /// One step (native: waits for the GPU): forward `tokens` at the next positions and sample
    /// from the last position's logits. The logits tensor ([1, vocab]) comes back too (with a
    /// repetition penalty it holds the penalized values).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn step(&mut self, engine: &Engine, tokens: &[u32], s: &SampleSettings) -> Result<Step> {
        pollster::block_on(self.step_async(engine, tokens, s))
    }

    /// `step` that awaits the sampled id instead of blocking.
    pub async fn step_async(
        &mut self,
        engine: &Engine,
        tokens: &[u32],
        s: &SampleSettings,
    ) -> Result<Step> {
        self.check_engine(engine)?;
        let t0 = now();
        let mut rec = engine.recorder();
        // Single-token steps repeat the same allocations: an arena gives them the same
        // buffers (and cached bind groups) every time. Prompts use the pool.
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
        let t1 = now();
        rec.submit()?;
        let t2 = now();
        let result = self.read_result(engine).await?;
        Ok(Step {
            result,
            logits,
            dispatches,
            record_s: t2 - t0,
            submit_s: t2 - t1,
        })
    }

    /// Reads the sampler's result (a readback queued after everything submitted).
    async fn read_result(&self, engine: &Engine) -> Result<SampleResult> {
        let words: Vec<u32> =
            bytemuck::pod_collect_to_vec(&engine.read_bytes(self.sampler.result()).await?);
        SampleResult::from_words(&words)
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

    /// Records a prompt step and the decode step after it into `rec` as a model runs them
    /// (the decode step's token read on the GPU from the sampler, greedy sampling included),
    /// over scratch KV caches: what the tuner captures to learn what this model runs. The
    /// conversation is untouched, but a generation in progress must be stopped first (the
    /// sampler's result is overwritten).
    pub fn record_steps(&mut self, rec: &mut crate::Recorder, prompt: &[u32]) -> Result<()> {
        let engine = self.engine.clone();
        let sampler = &self.sampler;
        self.decoder
            .with_scratch_caches(&engine, prompt.len() + 1, |dec| {
                let greedy = SampleSettings::GREEDY;
                let logits = dec.forward(rec, prompt)?;
                sampler.record(rec, &logits, &greedy, &[])?;
                let id = sampler
                    .result()
                    .head(1)
                    .ok_or_else(|| Error::InvalidArgument {
                        op: "generate",
                        detail: "sampler result is not a flat buffer".into(),
                    })?;
                let logits = dec.forward_gpu_token(rec, &id)?;
                sampler.record(rec, &logits, &greedy, &[])
            })
    }

    /// The sampled token at the head of the sampler's result ([1] u32).
    fn sampler_token(&self) -> Result<Tensor> {
        self.sampler
            .result()
            .head(1)
            .ok_or_else(|| Error::InvalidArgument {
                op: "generate",
                detail: "sampler result is not a flat buffer".into(),
            })
    }

    /// Begins a generation: `prompt` is fed after any pending token, then `next_token` gives
    /// one token per call. The same seed gives the same tokens on every platform.
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
        Ok(self.generation(input, None, opts))
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
        let mut g = self.generation(Vec::new(), Some(logits), opts);
        g.stats.prompt_tokens = prompt.len();
        Ok(g)
    }

    fn generation(
        &self,
        prompt: Vec<u32>,
        prefilled: Option<Tensor>,
        opts: &GenerateOptions,
    ) -> Generation {
        Generation {
            opts: opts.clone(),
            rng: Rng::new(opts.seed),
            stats: GenerateStats {
                prompt_tokens: prompt.len(),
                ..Default::default()
            },
            prompt,
            prefilled,
            last: None,
            ahead: VecDeque::new(),
            submitted: 0,
            stop: None,
            started_s: now(),
            first_token_s: 0.0,
        }
    }

    /// The next token of `g`, or `None` once it has stopped (`g.stop` says why; a token
    /// returned last is then pending, fed by the next generation). When generation may go on,
    /// the step after the returned token is already submitted.
    pub async fn next_token(
        &mut self,
        engine: &Engine,
        g: &mut Generation,
        is_eog: &dyn Fn(u32) -> bool,
    ) -> Result<Option<SampleResult>> {
        self.check_engine(engine)?;
        if g.stop.is_none() && g.stats.tokens.len() >= g.opts.max_tokens {
            g.stop = Some(StopReason::MaxTokens);
        }
        if g.stop.is_none() && self.fed(g) + g.prompt.len() > self.decoder.max_context() {
            g.stop = Some(StopReason::Context);
        }
        if g.stop.is_some() {
            self.finish(g);
            return Ok(None);
        }
        let res = match self.next_result(engine, g).await {
            Ok(r) => r,
            Err(e) => {
                g.stop = Some(StopReason::Error);
                let ahead = g.ahead.len();
                g.ahead.clear();
                self.decoder.rewind(ahead);
                return Err(e);
            }
        };
        g.stats.tokens.push(res.token);
        g.stats.top_logits.push(res.top.clone());
        g.last = Some(res.token);
        self.note_times(g);
        if is_eog(res.token) {
            g.stats.stopped_on_eog = true;
            g.stop = Some(StopReason::Eog);
        } else if g.stats.tokens.len() >= g.opts.max_tokens {
            g.stop = Some(StopReason::MaxTokens);
        } else if self.fed(g) >= self.decoder.max_context() {
            g.stop = Some(StopReason::Context);
        }
        if g.stop.is_some() {
            self.finish(g);
        } else if g.ahead.is_empty() && g.opts.repeat_penalty == 1.0 {
            // The next step needs no host-side history: run it ahead.
            self.submit_ahead(engine, g)?;
        }
        Ok(Some(res))
    }

    /// Positions fed up to the last returned token (steps submitted ahead not counted).
    fn fed(&self, g: &Generation) -> usize {
        self.position() - g.ahead.len()
    }

    /// The token after the last returned one: from the step run ahead, else from a step
    /// recorded now (the first token, or each token when a repetition penalty needs the
    /// history on the host).
    async fn next_result(&mut self, engine: &Engine, g: &mut Generation) -> Result<SampleResult> {
        if !g.ahead.is_empty() {
            // The step after the one read here may be wanted: submit it first, so that the GPU
            // has it queued while the host waits for and handles this token. (It is wanted
            // unless this token ends the generation; then `finish` forgets it.)
            let may_continue = g.stats.tokens.len() + 1 < g.opts.max_tokens
                && self.position() < self.decoder.max_context();
            if g.ahead.len() == 1 && may_continue {
                self.submit_ahead(engine, g)?;
            }
            if g.ahead.len() > 1 {
                g.stats.queued_behind += 1;
            }
        }
        if let Some(a) = g.ahead.pop_front() {
            let bytes = (SAMPLE_RESULT_WORDS * 4) as u64;
            let words = engine
                .read_mapped(&self.staging[a.slot], bytes, Some(a.submission))
                .await?;
            // That step fed the last token.
            self.history.extend(g.last.take());
            return SampleResult::from_words(&bytemuck::pod_collect_to_vec(&words));
        }
        let settings = g.opts.settings(g.rng.uniform())?;
        if let Some(logits) = g.prefilled.take() {
            return self.sample_async(engine, &logits, &settings).await;
        }
        let input = match g.last.take() {
            Some(t) => vec![t],
            None => std::mem::take(&mut g.prompt),
        };
        let step = self.step_async(engine, &input, &settings).await?;
        if input.len() == 1 {
            g.stats.dispatches_per_token = step.dispatches;
        }
        Ok(step.result)
    }

    /// Records and submits the step that feeds `g`'s last token (read on the GPU from the
    /// sampler's result) and samples the next into a staging buffer.
    fn submit_ahead(&mut self, engine: &Engine, g: &mut Generation) -> Result<()> {
        let bytes = (SAMPLE_RESULT_WORDS * 4) as u64;
        while self.staging.len() < 2 {
            self.staging
                .push(engine.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("webjit sampled token"),
                    size: bytes,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }));
        }
        let slot = g.submitted % 2;
        g.submitted += 1;
        let settings = g.opts.settings(g.rng.uniform())?;
        let mut rec = engine.recorder();
        rec.set_arena(self.arena.take().unwrap_or_default());
        let id = self.sampler_token()?;
        let logits = self.decoder.forward_gpu_token(&mut rec, &id);
        if let Some(a) = rec.take_arena() {
            self.arena = Some(a);
        }
        self.sampler.record(&mut rec, &logits?, &settings, &[])?;
        rec.copy_after(
            self.sampler.result().segments()[0].buffer.raw(),
            0,
            &self.staging[slot],
            0,
            bytes,
        );
        g.stats.dispatches_per_token = rec.stats.dispatches;
        g.ahead.push_back(Ahead {
            slot,
            submission: rec.submit()?,
        });
        Ok(())
    }

    /// Ends `g`: steps run ahead are forgotten (their KV-cache positions rewound; the queue
    /// runs them before any later work, which then overwrites what they wrote), and the last
    /// returned token waits, unfed, for the next generation.
    fn finish(&mut self, g: &mut Generation) {
        g.stats.stop_reason = g.stop;
        let ahead = g.ahead.len();
        g.ahead.clear();
        self.decoder.rewind(ahead);
        if let Some(t) = g.last.take() {
            self.pending = Some(t);
        }
        g.prompt.clear();
    }

    /// Prefill and decode timings of `g` so far (native clocks; the web measures in JS).
    fn note_times(&self, g: &mut Generation) {
        let t = now();
        let s = &mut g.stats;
        if s.tokens.len() == 1 {
            g.first_token_s = t;
            s.prefill_s = t - g.started_s;
            s.prefill_tok_s = rate(s.prompt_tokens, s.prefill_s);
        } else {
            s.decode_s = t - g.first_token_s;
            s.decode_tok_s = rate(s.tokens.len() - 1, s.decode_s);
        }
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
        self.read_result(engine).await
    }

    /// Ends `g` early: its last token waits, unfed, for the next generation.
    pub fn stop(&mut self, g: &mut Generation) {
        if g.stop.is_none() {
            g.stop = Some(StopReason::Stopped);
            self.finish(g);
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
        if opts.max_tokens == 0 {
            // Nothing to sample; still feed the prompt so the context is complete.
            opts.settings(0.0)?;
            let mut input: Vec<u32> = self.pending.take().into_iter().collect();
            input.extend_from_slice(prompt);
            if !input.is_empty() {
                let mut rec = engine.recorder();
                self.decoder.forward(&mut rec, &input)?;
                self.history.extend_from_slice(&input);
                rec.submit()?;
                engine.gpu.wait_idle()?;
            }
            return Ok(GenerateStats {
                prompt_tokens: input.len(),
                stop_reason: Some(StopReason::MaxTokens),
                ..Default::default()
            });
        }
        let g = self.start(prompt, opts)?;
        self.run(engine, g, is_eog, on_token)
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
        let mut g = self.start_prefilled(prompt, logits.clone(), opts)?;
        if opts.max_tokens == 0 {
            self.stop(&mut g);
            g.stats.stop_reason = Some(StopReason::MaxTokens);
            return Ok(g.stats);
        }
        self.run(engine, g, is_eog, on_token)
    }

    /// Drives `g` to its end, blocking on each token.
    #[cfg(not(target_arch = "wasm32"))]
    fn run(
        &mut self,
        engine: &Engine,
        mut g: Generation,
        is_eog: &dyn Fn(u32) -> bool,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<GenerateStats> {
        while let Some(res) = pollster::block_on(self.next_token(engine, &mut g, is_eog))? {
            if !on_token(res.token) {
                self.stop(&mut g);
            }
        }
        Ok(g.stats)
    }
}

fn rate(n: usize, s: f64) -> f64 {
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

/// Seconds from a monotonic clock (native only; the web build measures in JS).
fn now() -> f64 {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::sync::OnceLock;
        use std::time::Instant;
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_secs_f64()
    }
    #[cfg(target_arch = "wasm32")]
    {
        0.0
    }
}
