//! Where a recording's tensors get their buffers besides the pool: an `Arena` (the same buffers
//! step after step) or its `Scratch` (the buffers of the tensors it made, taken again by its
//! later tensors once the tensor holding one is dropped).
//!
//! Every buffer a recorded command uses stays out of the pool until submit (a queue write into a
//! buffer the pool handed out again would land before the commands recorded earlier). Without
//! reuse inside the recording, a prompt step therefore held every intermediate tensor of every
//! layer at once: Llama-3.1-8B's 512-token prefill held 5.1 GiB of activations beside 4.6 GiB
//! of weights, past the default 8 GiB budget. Reuse is safe inside one recording because
//! commands run in the order they were recorded (WebGPU orders dispatches and makes each one's
//! writes visible to the next), so a later command's writes come after every earlier use. Queue
//! writes are different (they land before the whole recording), so only commands may fill a
//! reused buffer: `Recorder::upload` takes fresh ones.

use std::collections::HashSet;
use std::sync::Arc;

use super::Recorder;
use crate::buffer::{size_class, GpuBuffer};
use crate::error::Result;
use crate::Engine;

/// Buffers handed out in allocation order and kept across steps: a step that allocates the
/// same sequence of tensors as the one before gets the same buffers back, so its bind groups
/// come from the cache. Tensors from an arena are valid until the arena's next step.
#[derive(Default)]
pub struct Arena {
    bufs: Vec<Arc<GpuBuffer>>,
    next: usize,
}

impl Arena {
    /// Starts a step: hands out the first buffer again.
    pub fn reset(&mut self) {
        self.next = 0;
    }

    pub(crate) fn get(&mut self, engine: &Engine, bytes: u64) -> Result<Arc<GpuBuffer>> {
        let fits = self
            .bufs
            .get(self.next)
            .is_some_and(|b| b.capacity() >= bytes);
        if !fits {
            let b = engine.pool.get(
                &engine.gpu.device,
                bytes,
                engine.gpu.profile.limits.max_buffer_size,
                "tensor",
            )?;
            if self.next < self.bufs.len() {
                self.bufs[self.next] = b;
            } else {
                self.bufs.push(b);
            }
        }
        let b = self.bufs[self.next].clone();
        self.next += 1;
        if engine.poisoned() {
            let nan = vec![0xffu8; b.capacity() as usize];
            engine.gpu.queue.write_buffer(b.raw(), 0, &nan);
        }
        Ok(b)
    }
}

/// A recording's buffers of its own tensors, reused once a tensor is dropped (see the top).
#[derive(Default)]
pub struct Scratch {
    /// Buffers handed to this recording's tensors (`Recorder::empty` without an arena). The
    /// recorder holds them here only, never in its `keep` list, so one whose only holder is
    /// this list belongs to no tensor any more.
    bufs: Vec<Arc<GpuBuffer>>,
    /// Their ids.
    ids: HashSet<u64>,
    /// Buffers handed out again since the last `Recorder::fill_reused`.
    reused: Vec<Arc<GpuBuffer>>,
    /// NaN bytes copied into reused buffers while the engine poisons new tensors.
    nan: Option<Arc<GpuBuffer>>,
}

impl Scratch {
    /// Whether `b` is one of these buffers (kept alive by the scratch list until submit).
    pub(crate) fn holds(&self, b: &GpuBuffer) -> bool {
        !self.ids.is_empty() && self.ids.contains(&b.id())
    }

    /// A buffer of at least `bytes`: the smallest one no tensor holds any more, if it is at
    /// most twice the size class of `bytes` (a large buffer is left for a large tensor), else a
    /// new one from the pool.
    pub(crate) fn get(&mut self, engine: &Engine, bytes: u64) -> Result<Arc<GpuBuffer>> {
        let most = 2 * size_class(bytes);
        let free = self
            .bufs
            .iter()
            .filter(|b| Arc::strong_count(b) == 1 && (bytes..=most).contains(&b.capacity()))
            .min_by_key(|b| b.capacity());
        if let Some(b) = free {
            let b = b.clone();
            self.reused.push(b.clone());
            return Ok(b);
        }
        let b = engine.pool.get(
            &engine.gpu.device,
            bytes,
            engine.gpu.profile.limits.max_buffer_size,
            "tensor",
        )?;
        self.ids.insert(b.id());
        self.bufs.push(b.clone());
        Ok(b)
    }

    /// Every buffer, to be kept until the recording is submitted.
    pub(crate) fn into_buffers(self) -> impl Iterator<Item = Arc<GpuBuffer>> {
        self.bufs.into_iter().chain(self.nan)
    }
}

impl Recorder<'_> {
    /// While the engine poisons new tensors: fills the buffers reused since the last call with
    /// NaN by a recorded copy, so that it lands after their earlier uses (a queue write would
    /// land before them). Tests then still see every element a kernel never writes.
    pub(super) fn fill_reused(&mut self) -> Result<()> {
        if self.scratch.reused.is_empty() {
            return Ok(());
        }
        let reused = std::mem::take(&mut self.scratch.reused);
        if !self.engine.poisoned() {
            return Ok(());
        }
        let need = reused.iter().map(|b| b.capacity()).max().unwrap_or(0);
        if self
            .scratch
            .nan
            .as_ref()
            .is_none_or(|n| n.capacity() < need)
        {
            let engine = self.engine;
            let nan = engine.pool.get(
                &engine.gpu.device,
                need,
                engine.gpu.profile.limits.max_buffer_size,
                "NaN fill",
            )?;
            let bytes = vec![0xffu8; nan.capacity() as usize];
            engine.gpu.queue.write_buffer(nan.raw(), 0, &bytes);
            // Copies recorded from the smaller one still read it at submit.
            if let Some(old) = self.scratch.nan.replace(nan) {
                self.keep.push(old);
            }
        }
        let Some(nan) = self.scratch.nan.clone() else {
            return Ok(());
        };
        for b in reused {
            self.copy_raw(nan.raw(), 0, b.raw(), 0, b.capacity());
        }
        Ok(())
    }
}
