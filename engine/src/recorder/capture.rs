//! Kernel choices kept with a way to replay them: what the tuner tunes.
//!
//! An op that asks the recorder for a kernel (`Recorder::kernel`) hands it a replay: a closure
//! that re-records the whole op with a given config of that kernel and returns the op's output.
//! While a recording captures, each such kernel becomes a `Captured` problem; the tuner works on
//! them through `TunableKernel` without knowing their spec types. `Engine::tune_async` wraps a
//! caller's own closure the same way, so there is one tuning loop for both.

use webjit_jit::tune::wgsl_checksum;
use webjit_jit::KernelSpec;

use super::Recorder;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::Engine;

/// Re-records an op with `config` for the captured kernel (its other kernels run the engine's
/// choice) and returns the op's output, which the tuner compares across configs.
pub type Replay<'a, C> = Box<dyn FnMut(&mut Recorder<'_>, &C) -> Result<Tensor> + 'a>;

/// Builds a replay on the engine that tunes.
pub type MakeReplay<'a, C> = Box<dyn FnOnce(&Engine) -> Result<Replay<'a, C>> + 'a>;

/// How a captured kernel's op is replayed.
pub enum ReplayFactory<'a, C> {
    /// Over the operands the op was recorded with.
    Ready(Replay<'a, C>),
    /// Built when tuning starts, on the engine that tunes: e.g. over cold copies of the weights
    /// the op reads, so that a kernel is timed reading memory as it does inside a model step.
    Deferred(MakeReplay<'a, C>),
}

impl<'a, C> ReplayFactory<'a, C> {
    pub fn ready(f: impl FnMut(&mut Recorder<'_>, &C) -> Result<Tensor> + 'a) -> Self {
        Self::Ready(Box::new(f))
    }
}

/// One config the tuner may try.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub key: String,
    /// The output tolerance of an approximate config (`KernelSpec::approximate`).
    pub approximate: Option<f64>,
    /// The arithmetic it multiplies in (`KernelSpec::arithmetic`).
    pub arithmetic: &'static str,
}

/// A kernel problem as the tuner sees it.
pub trait TunableKernel {
    fn family(&self) -> &'static str;
    /// What its record is filed under (`KernelSpec::tune_key`).
    fn tune_key(&self) -> String;
    /// The key of the config the engine runs for it today (tuned or default).
    fn current_key(&self, engine: &Engine) -> String;
    /// Every key its space holds on `engine`'s device, the default's included.
    fn space_keys(&self, engine: &Engine) -> Vec<String>;
    /// Gets ready to tune on `engine` (builds the replay) and lists the candidates, the
    /// default first, then the rest of the space in its order.
    fn prepare(&mut self, engine: &Engine) -> Result<Vec<Candidate>>;
    /// Records the op with candidate `i` of `prepare`'s list and returns its output.
    fn run(&mut self, rec: &mut Recorder<'_>, i: usize) -> Result<Tensor>;
    /// The checksum a tuning record of candidate `i` carries: of the WGSL it renders to.
    fn checksum(&self, i: usize) -> Result<String>;
    /// Drops the replay and what it holds (weight copies).
    fn release(&mut self);
}

/// A problem of spec type `S` with its replay.
pub struct Captured<'a, S: KernelSpec> {
    spec: S,
    factory: Option<ReplayFactory<'a, S::Config>>,
    replay: Option<Replay<'a, S::Config>>,
    /// The candidates of `prepare`, the default first.
    configs: Vec<S::Config>,
}

impl<'a, S: KernelSpec> Captured<'a, S> {
    pub fn new(spec: S, factory: ReplayFactory<'a, S::Config>) -> Self {
        Self {
            spec,
            factory: Some(factory),
            replay: None,
            configs: Vec::new(),
        }
    }
}

impl<S: KernelSpec> TunableKernel for Captured<'_, S> {
    fn family(&self) -> &'static str {
        self.spec.family()
    }
    fn tune_key(&self) -> String {
        self.spec.tune_key()
    }
    fn current_key(&self, engine: &Engine) -> String {
        self.spec.key(&engine.choose(&self.spec, None))
    }
    fn space_keys(&self, engine: &Engine) -> Vec<String> {
        let p = engine.profile();
        let mut keys: Vec<String> = self
            .spec
            .space(p)
            .iter()
            .map(|c| self.spec.key(c))
            .collect();
        keys.push(self.spec.key(&self.spec.default_config(p)));
        keys
    }
    fn prepare(&mut self, engine: &Engine) -> Result<Vec<Candidate>> {
        if self.replay.is_none() {
            let replay = match self.factory.take() {
                Some(ReplayFactory::Ready(r)) => r,
                Some(ReplayFactory::Deferred(make)) => make(engine)?,
                None => {
                    return Err(Error::InvalidArgument {
                        op: "tune",
                        detail: format!("{}: the replay was released", self.spec.tune_key()),
                    })
                }
            };
            self.replay = Some(replay);
        }
        let p = engine.profile();
        let default = self.spec.default_config(p);
        let mut configs = vec![default.clone()];
        configs.extend(self.spec.space(p).into_iter().filter(|c| *c != default));
        self.configs = configs;
        Ok(self
            .configs
            .iter()
            .map(|c| Candidate {
                key: self.spec.key(c),
                approximate: self.spec.approximate(c),
                arithmetic: self.spec.arithmetic(c),
            })
            .collect())
    }
    fn run(&mut self, rec: &mut Recorder<'_>, i: usize) -> Result<Tensor> {
        let (Some(replay), Some(c)) = (self.replay.as_mut(), self.configs.get(i)) else {
            return Err(Error::InvalidArgument {
                op: "tune",
                detail: format!("candidate {i} of {} is not prepared", self.spec.tune_key()),
            });
        };
        replay(rec, c)
    }
    fn checksum(&self, i: usize) -> Result<String> {
        let c = self.configs.get(i).ok_or_else(|| Error::InvalidArgument {
            op: "tune",
            detail: format!("no candidate {i}"),
        })?;
        Ok(wgsl_checksum(&self.spec, c)?)
    }
    fn release(&mut self) {
        self.replay = None;
        self.factory = None;
    }
}
