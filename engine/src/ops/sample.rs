//! Token sampling on the GPU: a `Sampler` owns its scratch buffers (allocated once per vocabulary
//! size), records penalize -> partial top-k -> final pick into the step's command encoder, and
//! leaves the token id in a 1-element-addressable result buffer that the next step's embedding
//! gather can read directly. Only `SAMPLE_RESULT_WORDS` u32s come back to the host.

use webjit_jit::kernels::sample::{
    SampleConfig, SampleSettings, SampleSpec, SampleStage, SAMPLE_KMAX, SAMPLE_REPORT,
    SAMPLE_RESULT_WORDS,
};
use webjit_jit::KernelSpec;

use super::expect_f32;
use crate::error::{Error, Result};
use crate::recorder::{Bind, Recorder, ReplayFactory};
use crate::tensor::{DType, Tensor};
use crate::Engine;

const OP: &str = "sample";

/// History ids the repetition penalty looks at, at most (llama.cpp's `penalty_last_n` default).
pub const PENALTY_LAST_N: usize = 64;

/// What one sampling step produced.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleResult {
    pub token: u32,
    /// Candidates the draw was made from (1 for greedy).
    pub kept: u32,
    /// The highest `[id, logit]` pairs of the distribution sampled from (after the penalty,
    /// before the temperature), best first.
    pub top: Vec<(u32, f32)>,
}

impl SampleResult {
    /// Parses the result buffer's words.
    pub fn from_words(w: &[u32]) -> Result<Self> {
        if w.len() < SAMPLE_RESULT_WORDS {
            return Err(Error::Readback {
                detail: format!("sampler result has {} words", w.len()),
            });
        }
        let top = (0..SAMPLE_REPORT as usize)
            .map(|r| (w[2 + 2 * r], f32::from_bits(w[3 + 2 * r])))
            .filter(|&(id, _)| id != u32::MAX)
            .collect();
        Ok(Self {
            token: w[0],
            kept: w[1],
            top,
        })
    }
}

pub struct Sampler {
    vocab: usize,
    cfg: SampleConfig,
    penalize_cfg: SampleConfig,
    /// [groups * KMAX * 2] u32: per-group (logit bits, id) candidates.
    cand: Tensor,
    /// [PENALTY_LAST_N] u32: unique recent ids.
    hist: Tensor,
    /// [SAMPLE_RESULT_WORDS] u32: token, kept, top pairs.
    result: Tensor,
}

impl Sampler {
    pub fn new(engine: &Engine, vocab: usize) -> Result<Self> {
        Self::with_config(engine, vocab, None)
    }

    /// With an explicit config of the partial/final stages (tests and the tuner).
    pub fn with_config(engine: &Engine, vocab: usize, cfg: Option<SampleConfig>) -> Result<Self> {
        let spec = SampleSpec {
            stage: SampleStage::Partial,
            n: vocab as u64,
        };
        let cfg = engine.choose(&spec, cfg);
        spec.check(engine.profile(), &cfg)
            .map_err(|e| Error::InvalidArgument {
                op: OP,
                detail: e.to_string(),
            })?;
        let penalize_cfg = engine.choose(
            &SampleSpec {
                stage: SampleStage::Penalize,
                n: vocab as u64,
            },
            None,
        );
        let cand = engine.empty(
            &[cfg.groups as usize * SAMPLE_KMAX as usize * 2],
            DType::U32,
        )?;
        let hist = engine.empty(&[PENALTY_LAST_N], DType::U32)?;
        let result = engine.empty(&[SAMPLE_RESULT_WORDS], DType::U32)?;
        Ok(Self {
            vocab,
            cfg,
            penalize_cfg,
            cand,
            hist,
            result,
        })
    }

    /// The result buffer: word 0 is the sampled token (an embedding gather can read it as its
    /// one id).
    pub fn result(&self) -> &Tensor {
        &self.result
    }

    /// Checks settings before a generation starts.
    pub fn validate(s: &SampleSettings) -> Result<()> {
        let bad = |detail: String| Err(Error::InvalidArgument { op: OP, detail });
        if !s.temperature.is_finite() {
            return bad(format!("temperature {} is not finite", s.temperature));
        }
        if s.top_k > SAMPLE_KMAX {
            return bad(format!(
                "top-k {} is above the {SAMPLE_KMAX} candidates the GPU sampler keeps",
                s.top_k
            ));
        }
        if !(s.top_p > 0.0 && s.top_p <= 1.0) {
            return bad(format!("top-p {} must be in (0, 1]", s.top_p));
        }
        if !(s.penalty.is_finite() && s.penalty > 0.0) {
            return bad(format!("repetition penalty {} must be > 0", s.penalty));
        }
        if !(0.0..1.0).contains(&s.u) {
            return bad(format!("uniform draw {} must be in [0, 1)", s.u));
        }
        Ok(())
    }

    /// Records one sampling step over `logits` ([vocab] or [1, vocab] f32). With a penalty
    /// other than 1 the logits are modified in place for the ids in `recent` (deduplicated
    /// here; at most the last `PENALTY_LAST_N` are used). `top_k` 0 means `SAMPLE_KMAX`.
    pub fn record(
        &self,
        rec: &mut Recorder,
        logits: &Tensor,
        settings: &SampleSettings,
        recent: &[u32],
    ) -> Result<()> {
        Self::validate(settings)?;
        expect_f32(OP, logits)?;
        super::expect_single(OP, "logits", logits)?;
        if logits.numel() != self.vocab {
            return Err(Error::Shape {
                op: OP,
                detail: format!(
                    "logits {:?} do not hold the {} entries this sampler was made for",
                    logits.shape(),
                    self.vocab
                ),
            });
        }
        let mut s = *settings;
        if s.top_k == 0 {
            s.top_k = SAMPLE_KMAX;
        }
        if s.temperature <= 0.0 {
            // Greedy still reports the top few.
            s.top_k = SAMPLE_REPORT;
        }
        let engine = rec.engine();
        let n = self.vocab as u64;
        // Both stages run the config chosen when the sampler was made: while capturing, each is
        // offered with a replay through a sampler made for another config (one record, filed
        // under the partial stage's tune key, serves both).
        for stage in [SampleStage::Partial, SampleStage::Final] {
            rec.offer(&SampleSpec { stage, n }, || {
                let (logits, settings, recent) = (logits.clone(), *settings, recent.to_vec());
                let vocab = self.vocab;
                ReplayFactory::ready(move |rec, c: &SampleConfig| {
                    let s = Sampler::with_config(rec.engine(), vocab, Some(c.clone()))?;
                    s.record(rec, &logits, &settings, &recent)?;
                    Ok(s.result.clone())
                })
            });
        }
        if s.penalty != 1.0 && !recent.is_empty() {
            let mut uniq: Vec<u32> = Vec::with_capacity(PENALTY_LAST_N);
            for &id in recent.iter().rev() {
                if uniq.len() == PENALTY_LAST_N {
                    break;
                }
                if (id as usize) < self.vocab && !uniq.contains(&id) {
                    uniq.push(id);
                }
            }
            rec.write_later(
                self.hist.segments()[0].buffer.raw(),
                0,
                bytemuck::cast_slice(&uniq),
            );
            let spec = SampleSpec {
                stage: SampleStage::Penalize,
                n,
            };
            let kernel = engine
                .pipelines
                .get(&engine.gpu, &spec, &self.penalize_cfg)?;
            let params = spec.params(&self.penalize_cfg, &s, uniq.len() as u32);
            rec.dispatch(
                &kernel,
                bytemuck::bytes_of(&params),
                &[
                    Bind::whole("hist", &self.hist),
                    Bind::whole("logits", logits),
                ],
                SampleSpec::penalize_dispatch(&self.penalize_cfg, uniq.len() as u32),
            )?;
        }
        for (stage, bufs) in [
            (
                SampleStage::Partial,
                [
                    Bind::whole("logits", logits),
                    Bind::whole("cand", &self.cand),
                ],
            ),
            (
                SampleStage::Final,
                [
                    Bind::whole("cand", &self.cand),
                    Bind::whole("res", &self.result),
                ],
            ),
        ] {
            let spec = SampleSpec { stage, n };
            let kernel = engine.pipelines.get(&engine.gpu, &spec, &self.cfg)?;
            let params = spec.params(&self.cfg, &s, 0);
            rec.dispatch(
                &kernel,
                bytemuck::bytes_of(&params),
                &bufs,
                spec.dispatch(&self.cfg),
            )?;
        }
        Ok(())
    }

    /// Reads the last step's result (native; the web reads `result()` asynchronously).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(&self, engine: &Engine) -> Result<SampleResult> {
        SampleResult::from_words(&engine.read_u32(&self.result)?)
    }
}
