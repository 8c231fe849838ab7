//! Records many ops into one command encoder and as few compute passes as possible. Within one
//! pass, WebGPU orders dispatches and makes each one's storage writes visible to the next, so
//! only copies end a pass. Uniforms of all dispatches go to 256-byte slots of shared chunks
//! written once at submit.
//!
//! Ops ask the recorder for their kernels (`Recorder::kernel`), so that a recording can also
//! capture every kernel choice it makes, with a way to replay it: the tuner's plan
//! (`capture`).

mod buffers;
mod capture;

use std::sync::Arc;

use webjit_jit::{Access, KernelSpec};

pub use buffers::Arena;
pub(crate) use buffers::Scratch;
pub use capture::{Captured, Replay, ReplayFactory, TunableKernel};

use crate::buffer::GpuBuffer;
use crate::error::{Error, Result};
use crate::pipeline::Kernel;
use crate::tensor::{DType, Tensor};
use crate::{Engine, Source};

const SLOT: u64 = 256;
const CHUNK: u64 = 64 * 1024;
/// Bind groups kept at most; the cache is emptied when full.
const BIND_GROUP_CACHE: usize = 8192;

/// One buffer binding: `size` bytes of a pooled buffer from offset 0, for the kernel's storage
/// binding called `name` (the WGSL variable; `Recorder::dispatch` checks it against the
/// kernel's declared bindings, so an op cannot pass its buffers in the wrong order).
#[derive(Clone, Copy)]
pub struct Bind<'b> {
    pub name: &'static str,
    pub buffer: &'b Arc<GpuBuffer>,
    pub size: u64,
}

impl<'b> Bind<'b> {
    /// Segment `i` of a tensor.
    pub fn segment(name: &'static str, t: &'b Tensor, i: usize) -> Self {
        Bind {
            name,
            buffer: &t.segments()[i].buffer,
            size: t.segment_bytes(i).max(4),
        }
    }
    /// A single-segment tensor.
    pub fn whole(name: &'static str, t: &'b Tensor) -> Self {
        Self::segment(name, t, 0)
    }
    /// Segment `i` of a quantized weight.
    pub fn weight(name: &'static str, w: &'b crate::QTensor, i: usize) -> Self {
        Bind {
            name,
            buffer: &w.segments()[i].buffer,
            size: w.segment_bytes(i),
        }
    }
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct RecordStats {
    pub dispatches: u32,
    pub passes: u32,
    pub copies: u32,
    /// Dispatches whose bind group came from the cache.
    pub bind_group_hits: u32,
}

pub struct Recorder<'e> {
    engine: &'e Engine,
    encoder: wgpu::CommandEncoder,
    pass: Option<wgpu::ComputePass<'static>>,
    /// Uniform chunks in use.
    chunks: Chunks<'e>,
    /// Every buffer a recorded command uses stays out of the pool until submit: a queue write
    /// into a recycled buffer would otherwise land before commands recorded earlier run.
    keep: Vec<Arc<GpuBuffer>>,
    /// The buffers of this recording's tensors (without an arena), reused once dropped; kept
    /// there, not in `keep`.
    scratch: Scratch,
    pub stats: RecordStats,
    arena: Option<Arena>,
    /// Timestamp queries around each compute pass (the tuner's GPU timing): the query set and
    /// how many passes it has room for; passes past that are not timed.
    timestamps: Option<(wgpu::QuerySet, u32)>,
    /// Passes given timestamp writes so far.
    timed_passes: u32,
    /// Profiling: every dispatch gets its own timed pass, labelled with its kernel key.
    pass_per_dispatch: bool,
    pass_labels: Vec<String>,
    /// The bind-group cache key of the current dispatch (kept to reuse its allocation).
    key_buf: Vec<u64>,
    /// `copy_after` copies and `write_later` writes, done at submit.
    copies_after: Vec<(wgpu::Buffer, u64, wgpu::Buffer, u64, u64)>,
    writes: Vec<(wgpu::Buffer, u64, Vec<u8>)>,
    /// While capturing (`capture_kernels`): every kernel an op asked for with no config of the
    /// caller's, with a way to replay the op.
    captured: Option<Vec<Box<dyn TunableKernel>>>,
}

impl<'e> Recorder<'e> {
    pub(crate) fn new(engine: &'e Engine) -> Self {
        let encoder = engine
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("webjit"),
            });
        Self {
            engine,
            encoder,
            pass: None,
            chunks: Chunks {
                engine,
                list: Vec::new(),
            },
            keep: Vec::new(),
            scratch: Scratch::default(),
            stats: RecordStats::default(),
            arena: None,
            timestamps: None,
            timed_passes: 0,
            pass_per_dispatch: false,
            pass_labels: Vec::new(),
            key_buf: Vec::with_capacity(32),
            copies_after: Vec::new(),
            writes: Vec::new(),
            captured: None,
        }
    }

    /// From now on, every kernel an op records with the engine's choice of config is also
    /// kept, with a way to replay the op (`take_captured`): the tuner records a model's real
    /// steps this way to find what to tune.
    pub fn capture_kernels(&mut self) {
        self.captured.get_or_insert_with(Vec::new);
    }

    /// The kernels captured since `capture_kernels`, in dispatch order.
    pub fn take_captured(&mut self) -> Vec<Box<dyn TunableKernel>> {
        self.captured.take().unwrap_or_default()
    }

    /// The config and pipeline an op runs for `spec`: the caller's `config`, else the tuned
    /// or default one (`Engine::kernel_for`). While capturing, a kernel run with the engine's
    /// choice is kept together with `replay()`, which re-records the whole op with another
    /// config of this kernel (called only while capturing).
    pub fn kernel<S: KernelSpec + Clone + 'static>(
        &mut self,
        spec: &S,
        config: Option<S::Config>,
        replay: impl FnOnce() -> ReplayFactory<'static, S::Config>,
    ) -> Result<(S::Config, Arc<Kernel>)> {
        if config.is_none() {
            self.offer(spec, replay);
        }
        self.engine.kernel_for(spec, config)
    }

    /// While capturing, keeps `spec` with `replay()` as a tunable kernel: for ops whose config
    /// the engine chose earlier (a sampler sized its buffers for it) rather than in `kernel`.
    pub fn offer<S: KernelSpec + Clone + 'static>(
        &mut self,
        spec: &S,
        replay: impl FnOnce() -> ReplayFactory<'static, S::Config>,
    ) {
        if let Some(list) = self.captured.as_mut() {
            list.push(Box::new(Captured::new(spec.clone(), replay())));
        }
    }

    /// `time_passes` with one pass per dispatch, each labelled with its kernel's key
    /// (`pass_labels`): per-kernel GPU times. Passes end the GPU's overlap of neighbouring
    /// dispatches, so the sum is an upper bound of the step's GPU time.
    pub fn profile_dispatches(&mut self, set: wgpu::QuerySet, max_passes: u32) {
        self.time_passes(set, max_passes);
        self.pass_per_dispatch = true;
        self.pass_labels.clear();
    }

    /// The kernel key of each timed pass (profiling).
    pub fn pass_labels(&self) -> &[String] {
        &self.pass_labels
    }

    /// Writes a timestamp at the start and end of each compute pass recorded from now on,
    /// pass i into queries 2i and 2i + 1 of `set` (which holds `2 * max_passes`).
    pub fn time_passes(&mut self, set: wgpu::QuerySet, max_passes: u32) {
        self.pass = None;
        self.timestamps = Some((set, max_passes));
        self.timed_passes = 0;
    }

    /// Ends timing: resolves the written queries into `dst` (QUERY_RESOLVE usage, 8 bytes a
    /// query) and returns how many passes were timed, or None if some pass was not.
    pub fn resolve_pass_times(&mut self, dst: &wgpu::Buffer) -> Option<u32> {
        self.pass = None;
        let (set, max) = self.timestamps.take()?;
        let n = self.timed_passes;
        if n == 0 || self.stats.passes > n || n > max {
            return None;
        }
        self.encoder.resolve_query_set(&set, 0..2 * n, dst, 0);
        Some(n)
    }

    pub fn engine(&self) -> &'e Engine {
        self.engine
    }

    /// Allocate this recording's tensors from `arena` (reset here) until `take_arena`.
    pub fn set_arena(&mut self, mut arena: Arena) {
        arena.reset();
        self.arena = Some(arena);
    }

    pub fn take_arena(&mut self) -> Option<Arena> {
        self.arena.take()
    }

    /// A tensor for this recording: from the arena when one is set, else a buffer of a tensor
    /// of this recording that was dropped (`Scratch`) or the engine's pool. Only commands of
    /// this recording may write it (not queue writes).
    pub fn empty(&mut self, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let source = match self.arena.as_mut() {
            Some(a) => Source::Arena(a),
            None => Source::Scratch(&mut self.scratch),
        };
        let t = self.engine.empty_in(shape, dtype, source)?;
        self.fill_reused()?;
        Ok(t)
    }

    pub fn upload_f32(&mut self, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        self.upload(shape, DType::F32, bytemuck::cast_slice(data))
    }

    pub fn upload_u32(&mut self, shape: &[usize], data: &[u32]) -> Result<Tensor> {
        self.upload(shape, DType::U32, bytemuck::cast_slice(data))
    }

    /// A tensor holding `data`, written to the GPU at submit (just before this recording's
    /// commands), not now: a recording may be submitted from another thread after a later
    /// one has started (`into_pending`), and an arena buffer written now could still be in
    /// use by the recording before it.
    fn upload(&mut self, shape: &[usize], dtype: DType, data: &[u8]) -> Result<Tensor> {
        crate::check_upload(shape, dtype, data)?;
        let source = match self.arena.as_mut() {
            Some(a) => Source::Arena(a),
            None => Source::Pool,
        };
        let t = self.engine.empty_in(shape, dtype, source)?;
        for (buffer, bytes) in crate::segment_bytes(&t, data) {
            // Kept until submit, like every buffer the recording touches (see `copy`).
            self.keep.push(buffer.clone());
            self.writes.push((buffer.raw().clone(), 0, bytes.to_vec()));
        }
        Ok(t)
    }

    /// Writes `data` into `buffer` at submit, before this recording's commands run.
    pub fn write_later(&mut self, buffer: &wgpu::Buffer, offset: u64, data: &[u8]) {
        self.writes.push((buffer.clone(), offset, data.to_vec()));
    }

    fn uniform_slot(&mut self, params: &[u8]) -> (usize, u64) {
        let need = (params.len() as u64).div_ceil(SLOT) * SLOT;
        let fits = self
            .chunks
            .list
            .last()
            .map(|(_, _, bytes)| bytes.len() as u64 + need <= CHUNK)
            .unwrap_or(false);
        if !fits {
            let (buf, id) = self.engine.uniform_chunk(CHUNK.max(need));
            self.chunks
                .list
                .push((buf, id, Vec::with_capacity(CHUNK as usize)));
        }
        let idx = self.chunks.list.len() - 1;
        let bytes = &mut self.chunks.list[idx].2;
        let offset = bytes.len() as u64;
        bytes.extend_from_slice(params);
        bytes.resize((offset + need) as usize, 0);
        (idx, offset)
    }

    /// Encodes one dispatch of `kernel`. `params` fills the uniform at binding 0; `buffers`
    /// fill the kernel's storage bindings in order.
    pub fn dispatch(
        &mut self,
        kernel: &Kernel,
        params: &[u8],
        buffers: &[Bind<'_>],
        groups: [u32; 3],
    ) -> Result<()> {
        // Kernels of the codebook formats declare the grid table last; ops do not pass it.
        let grid = self.engine.codebook_grid_for(&kernel.bindings, buffers)?;
        let with_grid = grid
            .as_ref()
            .map(|g| [buffers, &[Bind::whole("grid", g)]].concat());
        let buffers = with_grid.as_deref().unwrap_or(buffers);
        let storage = || {
            kernel
                .bindings
                .iter()
                .filter(|b| b.access != Access::Uniform)
        };
        let n_storage = storage().count();
        if n_storage != buffers.len() {
            return Err(Error::InvalidArgument {
                op: "dispatch",
                detail: format!(
                    "kernel {} has {} storage bindings, got {} buffers",
                    kernel.key,
                    n_storage,
                    buffers.len()
                ),
            });
        }
        let max = self.engine.gpu.max_binding();
        for (decl, b) in storage().zip(buffers) {
            if decl.name != b.name {
                return Err(Error::InvalidArgument {
                    op: "dispatch",
                    detail: format!(
                        "kernel {} binds `{}` at binding {}, the op passed `{}` there",
                        kernel.key, decl.name, decl.binding, b.name
                    ),
                });
            }
            if b.size > max {
                return Err(Error::TooLarge {
                    what: format!("binding `{}` of {}", decl.name, kernel.key),
                    bytes: b.size,
                    max,
                });
            }
        }
        if groups.contains(&0) {
            return Ok(()); // nothing to do for an empty problem
        }
        self.engine.note_kernel(&kernel.key);
        let (chunk, offset) = self.uniform_slot(params);
        let uniform_size = (params.len() as u64).div_ceil(16) * 16;
        // Cached by identity: a decode step that binds the same buffers at the same uniform
        // offsets as the step before reuses its bind groups instead of creating ~400 anew.
        let mut key = std::mem::take(&mut self.key_buf);
        key.clear();
        key.extend_from_slice(&[kernel.id, self.chunks.list[chunk].1, offset, uniform_size]);
        for b in buffers {
            if !self.scratch.holds(b.buffer) {
                self.keep.push(b.buffer.clone());
            }
            key.push(b.buffer.id());
            key.push((b.size.div_ceil(4) * 4).min(b.buffer.capacity()));
        }
        let mut cache = self.engine.bind_groups.lock().map_err(|_| Error::Gpu {
            during: "bind group cache".into(),
            message: "poisoned".into(),
        })?;
        let hit = cache.get(key.as_slice()).cloned();
        let bind_group = if let Some(bg) = hit {
            self.stats.bind_group_hits += 1;
            bg
        } else {
            let mut entries = Vec::with_capacity(kernel.bindings.len());
            let mut it = buffers.iter();
            for decl in &kernel.bindings {
                let (buffer, off, size) = if decl.access == Access::Uniform {
                    (&self.chunks.list[chunk].0, offset, uniform_size)
                } else {
                    let b = it.next().ok_or_else(|| Error::InvalidArgument {
                        op: "dispatch",
                        detail: "missing buffer".into(),
                    })?;
                    (
                        b.buffer.raw(),
                        0,
                        (b.size.div_ceil(4) * 4).min(b.buffer.capacity()),
                    )
                };
                entries.push(wgpu::BindGroupEntry {
                    binding: decl.binding,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer,
                        offset: off,
                        size: wgpu::BufferSize::new(size),
                    }),
                });
            }
            let bind_group = self
                .engine
                .gpu
                .device
                .create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(&kernel.key),
                    layout: &kernel.layout,
                    entries: &entries,
                });
            if cache.len() >= BIND_GROUP_CACHE {
                cache.clear();
            }
            cache.insert(key.clone(), bind_group.clone());
            bind_group
        };
        drop(cache);
        self.key_buf = key;
        if self.pass_per_dispatch {
            self.pass = None;
        }
        if self.pass.is_none() {
            let writes = match &self.timestamps {
                Some((set, max)) if self.timed_passes < *max => {
                    let i = self.timed_passes;
                    self.timed_passes += 1;
                    if self.pass_per_dispatch {
                        self.pass_labels.push(kernel.key.clone());
                    }
                    Some(wgpu::ComputePassTimestampWrites {
                        query_set: set,
                        beginning_of_pass_write_index: Some(2 * i),
                        end_of_pass_write_index: Some(2 * i + 1),
                    })
                }
                _ => None,
            };
            let pass = self
                .encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("webjit"),
                    timestamp_writes: writes,
                })
                .forget_lifetime();
            self.pass = Some(pass);
            self.stats.passes += 1;
        }
        if let Some(pass) = self.pass.as_mut() {
            pass.set_pipeline(&kernel.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        }
        self.stats.dispatches += 1;
        Ok(())
    }

    /// Copies bytes between pool buffers; ends the current compute pass. Both buffers are kept
    /// alive until the recording is submitted: a tensor dropped before then (e.g. a hidden
    /// state made by an earlier recording and only copied here) would otherwise go back to the
    /// pool, and another thread could reuse it before this copy runs.
    pub fn copy(
        &mut self,
        src: &Arc<GpuBuffer>,
        src_off: u64,
        dst: &Arc<GpuBuffer>,
        dst_off: u64,
        bytes: u64,
    ) {
        for b in [src, dst] {
            if !self.scratch.holds(b) {
                self.keep.push(b.clone());
            }
        }
        self.copy_raw(src.raw(), src_off, dst.raw(), dst_off, bytes);
    }

    /// Copies bytes between buffers the caller keeps alive until submission (staging and
    /// query buffers, or pool buffers of tensors it holds); ends the current compute pass.
    pub fn copy_raw(
        &mut self,
        src: &wgpu::Buffer,
        src_off: u64,
        dst: &wgpu::Buffer,
        dst_off: u64,
        bytes: u64,
    ) {
        self.pass = None;
        self.encoder
            .copy_buffer_to_buffer(src, src_off, dst, dst_off, bytes);
        self.stats.copies += 1;
    }

    /// Copies bytes between buffers after everything this recording dispatches (at submit),
    /// without ending the compute pass now. The caller holds both (e.g. their tensors) until
    /// submit: a buffer no tensor holds may be reused by a later command of this recording.
    pub fn copy_after(
        &mut self,
        src: &wgpu::Buffer,
        src_off: u64,
        dst: &wgpu::Buffer,
        dst_off: u64,
        bytes: u64,
    ) {
        self.copies_after
            .push((src.clone(), src_off, dst.clone(), dst_off, bytes));
        self.stats.copies += 1;
    }

    /// Writes the uniforms and submits everything recorded.
    pub fn submit(self) -> Result<wgpu::SubmissionIndex> {
        self.into_pending().submit()
    }

    /// Ends recording; what is left (ending the compute pass, where wgpu validates and encodes
    /// every dispatch, then the copies, the writes and the queue submit) is done by
    /// `PendingSubmit::submit`, which may run on another thread. Pending submits must be
    /// submitted in the order they were recorded.
    pub fn into_pending(self) -> PendingSubmit<'e> {
        let mut keep = self.keep;
        keep.extend(self.scratch.into_buffers());
        PendingSubmit {
            engine: self.engine,
            encoder: self.encoder,
            pass: self.pass,
            copies: self.copies_after,
            writes: self.writes,
            chunks: self.chunks,
            keep,
        }
    }
}

/// A finished recording waiting to be submitted (see `Recorder::into_pending`).
pub struct PendingSubmit<'e> {
    engine: &'e Engine,
    encoder: wgpu::CommandEncoder,
    pass: Option<wgpu::ComputePass<'static>>,
    copies: Vec<(wgpu::Buffer, u64, wgpu::Buffer, u64, u64)>,
    writes: Vec<(wgpu::Buffer, u64, Vec<u8>)>,
    chunks: Chunks<'e>,
    keep: Vec<Arc<GpuBuffer>>,
}

impl PendingSubmit<'_> {
    pub fn submit(mut self) -> Result<wgpu::SubmissionIndex> {
        self.pass = None;
        for (src, so, dst, doff, n) in self.copies.drain(..) {
            self.encoder.copy_buffer_to_buffer(&src, so, &dst, doff, n);
        }
        let gpu = &self.engine.gpu;
        gpu.check_alive()?;
        for (buf, off, bytes) in self.writes.drain(..) {
            gpu.queue.write_buffer(&buf, off, &bytes);
        }
        for (buf, _, bytes) in &self.chunks.list {
            if !bytes.is_empty() {
                gpu.queue.write_buffer(buf, 0, bytes);
            }
        }
        let idx = gpu.queue.submit(Some(self.encoder.finish()));
        // Uniform chunks can be reused at once: the queue orders the next write after this
        // submission's work.
        for (buf, id, _) in self.chunks.list.drain(..) {
            self.engine.return_uniform_chunk((buf, id));
        }
        self.keep.clear();
        Ok(idx)
    }
}

/// The uniform chunks a recording uses: (buffer, id, bytes to write at submit). Dropped
/// without `submit` (an op failed half-way, or a dry run), they go back to the engine, so
/// later recordings keep binding the same buffers and their bind groups stay cached; nothing
/// was written to them, so no queued work reads them.
struct Chunks<'e> {
    engine: &'e Engine,
    list: Vec<(wgpu::Buffer, u64, Vec<u8>)>,
}

impl Drop for Chunks<'_> {
    fn drop(&mut self) {
        for (buf, id, _) in self.list.drain(..) {
            self.engine.return_uniform_chunk((buf, id));
        }
    }
}
