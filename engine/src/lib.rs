//! webjit-engine: the runtime. Device, pipeline cache, pooled buffers, tensors, a recorder that
//! batches ops into one command encoder, and the ops themselves.

// On wasm32, wgpu handles are neither Send nor Sync; the engine is single-threaded there.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod buffer;
pub mod chat;
pub mod device;
pub mod error;
pub mod kv_cache;
pub mod loader;
pub mod model;
pub mod ops;
pub mod pipeline;
pub mod qtensor;
mod readback;
pub mod recorder;
pub mod tensor;
pub mod tokenizer;
pub mod tune;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

pub use device::{DeviceOptions, Gpu};
pub use error::{Error, Result};
pub use kv_cache::{KvCache, KvCacheOptions};
pub use qtensor::QTensor;
pub use recorder::{
    Arena, Bind, Captured, RecordStats, Recorder, Replay, ReplayFactory, TunableKernel,
};
pub use tensor::{DType, Tensor};
pub use webjit_jit as jit;

use buffer::BufferPool;
use pipeline::PipelineCache;
use tensor::Segment;

pub(crate) type KernelMemo = std::collections::HashMap<
    (&'static str, u64),
    (
        std::sync::Arc<dyn std::any::Any + Send + Sync>,
        std::sync::Arc<pipeline::Kernel>,
    ),
>;
pub(crate) type TunedConfigs =
    std::collections::HashMap<String, std::sync::Arc<dyn std::any::Any + Send + Sync>>;

/// The engine's state, shared by every handle (`Engine` derefs to it).
pub struct EngineState {
    pub gpu: Gpu,
    pub pool: BufferPool,
    pub pipelines: PipelineCache,
    /// Free uniform chunks with their ids, reused in order (so a repeated step sees the same
    /// chunks at the same offsets and its cached bind groups hit).
    uniform_chunks: Mutex<Vec<(wgpu::Buffer, u64)>>,
    /// Bind groups by (pipeline, uniform chunk id, offset, size, (buffer id, size)...).
    pub(crate) bind_groups: Mutex<std::collections::HashMap<Vec<u64>, wgpu::BindGroup>>,
    poison: AtomicBool,
    pub(crate) tuning: Mutex<webjit_jit::tune::TuneRecords>,
    /// tune key -> recorded winner key (or none), so ops look records up once.
    pub(crate) tuned_memo: Mutex<std::collections::HashMap<String, Option<String>>>,
    /// tune key -> the winner's config, resolved once (resolving a key walks the whole space,
    /// far too slow for every dispatch of a decode step).
    pub(crate) tuned_configs: Mutex<TunedConfigs>,
    /// (family, `memo_key`) -> the config `choose` gave that exact problem and its pipeline:
    /// a decode step asks for the same few hundred kernels every token.
    pub(crate) kernel_memo: Mutex<KernelMemo>,
    /// The mappable buffer of the last readback, kept for the next (`submit_and_read`).
    staging: Mutex<Option<wgpu::Buffer>>,
    /// Whether readbacks nudge the browser (`DeviceOptions::readback_nudge`, resolved).
    readback_nudge: bool,
    /// While on (`log_kernels`), the key of every kernel dispatched, in order.
    kernel_log: Mutex<Option<Vec<String>>>,
    logging: AtomicBool,
    /// The codebook grids of the IQ formats (`webjit_jit::quant::wgsl::grid_table`), uploaded
    /// on first use and bound by `Recorder::dispatch` to every kernel that declares `grid`.
    codebook_grid: Mutex<Option<Tensor>>,
}

/// A handle to the GPU device and everything on it: pipelines, pooled buffers, tuning records.
/// Cloning gives another handle to the same engine; the state is freed with the last handle
/// (models, loads and sinks hold one).
#[derive(Clone)]
pub struct Engine(std::sync::Arc<EngineState>);

impl std::ops::Deref for Engine {
    type Target = EngineState;
    fn deref(&self) -> &EngineState {
        &self.0
    }
}

/// Smallest mappable readback buffer, so that small readbacks of different sizes share one.
const STAGING_MIN: u64 = 64 * 1024;
/// Largest readback buffer kept for reuse (a vocabulary of logits fits).
const STAGING_KEEP_MAX: u64 = 4 << 20;

impl Engine {
    pub async fn create(options: DeviceOptions) -> Result<Self> {
        let budget = options.memory_budget;
        let nudge = options.readback_nudge;
        let gpu = Gpu::create(options).await?;
        let readback_nudge = nudge.unwrap_or(!gpu.profile.cpu);
        Ok(Self(std::sync::Arc::new(EngineState {
            gpu,
            pool: BufferPool::new(budget),
            pipelines: PipelineCache::default(),
            uniform_chunks: Mutex::new(Vec::new()),
            bind_groups: Mutex::new(std::collections::HashMap::new()),
            poison: AtomicBool::new(false),
            tuning: Mutex::new(webjit_jit::tune::TuneRecords::new()),
            tuned_memo: Mutex::new(std::collections::HashMap::new()),
            tuned_configs: Mutex::new(std::collections::HashMap::new()),
            kernel_memo: Mutex::new(std::collections::HashMap::new()),
            staging: Mutex::new(None),
            readback_nudge,
            kernel_log: Mutex::new(None),
            logging: AtomicBool::new(false),
            codebook_grid: Mutex::new(None),
        })))
    }

    /// Drops every cached GPU object (pipelines, bind groups, the configs chosen per problem,
    /// spare uniform chunks, the kept readback buffer), e.g. when the device is being
    /// destroyed: they would only hold memory. Anything needed later is made again.
    pub fn release_caches(&self) {
        self.pipelines.clear();
        if let Ok(mut m) = self.bind_groups.lock() {
            m.clear();
        }
        if let Ok(mut m) = self.kernel_memo.lock() {
            m.clear();
        }
        if let Ok(mut m) = self.uniform_chunks.lock() {
            m.clear();
        }
        if let Ok(mut s) = self.staging.lock() {
            s.take();
        }
    }

    /// Forgets the cached bind groups. A bind group keeps its buffers alive (in a browser, the
    /// GPU process keeps the objects of destroyed buffers for as long as a bind group names
    /// them), so once a model's buffers are freed its bind groups should go too; the next
    /// step of a model still loaded makes its own again.
    pub fn forget_bind_groups(&self) {
        if let Ok(mut m) = self.bind_groups.lock() {
            m.clear();
        }
    }

    /// From now on (`on`), or no longer, every dispatched kernel's key is logged, by every
    /// recording of this engine (tests check what a model step runs against the tuner's plan).
    pub fn log_kernels(&self, on: bool) {
        if let Ok(mut l) = self.kernel_log.lock() {
            *l = on.then(Vec::new);
        }
        self.logging.store(on, Ordering::Relaxed);
    }

    /// The keys logged since `log_kernels(true)`, in dispatch order (the log restarts).
    pub fn take_kernel_log(&self) -> Vec<String> {
        self.kernel_log
            .lock()
            .ok()
            .and_then(|mut l| l.as_mut().map(std::mem::take))
            .unwrap_or_default()
    }

    pub(crate) fn note_kernel(&self, key: &str) {
        if self.logging.load(Ordering::Relaxed) {
            if let Ok(mut l) = self.kernel_log.lock() {
                if let Some(v) = l.as_mut() {
                    v.push(key.to_string());
                }
            }
        }
    }

    /// Whether `other` is a handle to this same engine.
    pub fn same(&self, other: &Engine) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }

    /// Whether readbacks nudge the browser to deliver them sooner (web only; see
    /// `DeviceOptions::readback_nudge`).
    pub fn readback_nudge(&self) -> bool {
        self.readback_nudge
    }

    /// Native convenience: blocks on `create`, then loads this device's tuning records from
    /// the default file store (see `tune::FileStore`) unless `options.load_tuning` is off.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(options: DeviceOptions) -> Result<Self> {
        let load = options.load_tuning;
        let e = pollster::block_on(Self::create(options))?;
        if load {
            if let Some(path) = tune::FileStore::default_path() {
                // A broken records file must not stop inference: report it and run untuned.
                if let Err(err) = e.load_tuning(&tune::FileStore { path: path.clone() }) {
                    eprintln!(
                        "webjit: ignoring tuning records at {}: {err}",
                        path.display()
                    );
                }
            }
        }
        Ok(e)
    }

    /// Why the GPU device was lost, once it is (`None` while it lives).
    pub fn device_lost(&self) -> Option<String> {
        self.gpu.lost_reason()
    }

    /// A round trip to the GPU after everything submitted so far: `DeviceLost` when the device
    /// went away meanwhile. Writes to a lost device are silently dropped, so a load ends with
    /// this instead of handing out a model whose weights never arrived.
    pub async fn confirm_alive(&self) -> Result<()> {
        self.gpu.check_alive()?;
        let probe = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("webjit device probe"),
            size: 4,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        // An empty submit orders the probe's map after every earlier submission.
        let idx = self.gpu.queue.submit([]);
        let r = self.read_mapped(&probe, 4, Some(idx)).await;
        probe.destroy();
        r?;
        self.gpu.check_alive()
    }

    /// Fill every new tensor with NaN (tests use this to catch elements a kernel never writes).
    pub fn set_poison(&self, on: bool) {
        self.poison.store(on, Ordering::Relaxed);
    }

    pub(crate) fn poisoned(&self) -> bool {
        self.poison.load(Ordering::Relaxed)
    }

    pub fn profile(&self) -> &webjit_jit::DeviceProfile {
        &self.gpu.profile
    }

    pub fn recorder(&self) -> Recorder<'_> {
        Recorder::new(self)
    }

    pub(crate) fn uniform_chunk(&self, size: u64) -> (wgpu::Buffer, u64) {
        if let Ok(mut v) = self.uniform_chunks.lock() {
            if let Some(pos) = v.iter().position(|(b, _)| b.size() >= size) {
                return v.remove(pos);
            }
        }
        let buf = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("webjit uniforms"),
            size,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        (buf, buffer::next_buffer_id())
    }

    pub(crate) fn return_uniform_chunk(&self, b: (wgpu::Buffer, u64)) {
        if let Ok(mut v) = self.uniform_chunks.lock() {
            v.push(b);
        }
    }

    /// An uninitialized tensor, split into segments if it exceeds the max storage binding.
    pub fn empty(&self, shape: &[usize], dtype: DType) -> Result<Tensor> {
        self.empty_in(shape, dtype, Source::Pool)
    }

    /// `empty` in buffers of exactly the tensor's size rather than the pool's size classes: for
    /// tensors that live as long as a model (weights, KV caches).
    pub fn empty_exact(&self, shape: &[usize], dtype: DType) -> Result<Tensor> {
        self.empty_in(shape, dtype, Source::Exact)
    }

    /// `empty`, taking buffers from `source`.
    pub(crate) fn empty_in(
        &self,
        shape: &[usize],
        dtype: DType,
        mut source: Source<'_>,
    ) -> Result<Tensor> {
        self.gpu.check_alive()?;
        let numel = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| Error::Shape {
                op: "empty",
                detail: format!("shape {shape:?} overflows"),
            })?;
        let row_len = shape.last().copied().unwrap_or(1).max(1);
        let rows = if shape.is_empty() { 1 } else { numel / row_len };
        let row_bytes = (row_len * dtype.size()) as u64;
        let max = self
            .gpu
            .max_binding()
            .min(self.gpu.profile.limits.max_buffer_size);
        if row_bytes > max {
            return Err(Error::TooLarge {
                what: format!("one row of tensor {shape:?}"),
                bytes: row_bytes,
                max,
            });
        }
        let total = numel
            .checked_mul(dtype.size())
            .ok_or_else(|| Error::Shape {
                op: "empty",
                detail: format!("shape {shape:?} overflows"),
            })? as u64;
        let budget = self.gpu.options.memory_budget;
        if total > budget {
            return Err(Error::OutOfMemory {
                what: format!("tensor {shape:?} (engine memory budget {budget} bytes)"),
                bytes: total,
            });
        }
        let rows_per_seg = ((max / row_bytes) as usize).max(1);
        let mut segments = Vec::new();
        let mut start = 0;
        loop {
            let n = (rows - start).min(rows_per_seg);
            let bytes = (n as u64 * row_bytes).max(4);
            let max_buffer = self.gpu.profile.limits.max_buffer_size;
            let buffer = match &mut source {
                Source::Pool => self
                    .pool
                    .get(&self.gpu.device, bytes, max_buffer, "tensor")?,
                Source::Exact => {
                    self.pool
                        .get_exact(&self.gpu.device, bytes, max_buffer, "tensor")?
                }
                Source::Arena(a) => a.get(self, bytes)?,
                Source::Scratch(s) => s.get(self, bytes)?,
            };
            if self.poison.load(Ordering::Relaxed) {
                let nan = vec![0xffu8; buffer.capacity() as usize];
                self.gpu.queue.write_buffer(buffer.raw(), 0, &nan);
            }
            segments.push(Segment {
                buffer,
                row_start: start,
                rows: n,
            });
            start += n;
            if start >= rows {
                break;
            }
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            dtype,
            segments,
        })
    }

    fn upload_bytes(&self, shape: &[usize], dtype: DType, data: &[u8]) -> Result<Tensor> {
        check_upload(shape, dtype, data)?;
        let t = self.empty(shape, dtype)?;
        for (buffer, bytes) in segment_bytes(&t, data) {
            self.gpu.queue.write_buffer(buffer.raw(), 0, bytes);
        }
        Ok(t)
    }

    pub fn upload_f32(&self, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        self.upload_bytes(shape, DType::F32, bytemuck::cast_slice(data))
    }

    pub fn upload_u32(&self, shape: &[usize], data: &[u32]) -> Result<Tensor> {
        self.upload_bytes(shape, DType::U32, bytemuck::cast_slice(data))
    }

    /// The codebook grid table when a kernel with `bindings` needs it and the op did not pass it
    /// in `buffers` (the kernels of the IQ2/IQ3/IQ1 formats declare `grid` last).
    pub(crate) fn codebook_grid_for(
        &self,
        bindings: &[webjit_jit::BindingDecl],
        buffers: &[recorder::Bind<'_>],
    ) -> Result<Option<Tensor>> {
        let declared = bindings.last().is_some_and(|b| b.name == "grid");
        if !declared || buffers.last().is_some_and(|b| b.name == "grid") {
            return Ok(None);
        }
        self.codebook_grid().map(Some)
    }

    /// The codebook grid table on the GPU (35 KiB, uploaded once).
    pub(crate) fn codebook_grid(&self) -> Result<Tensor> {
        let mut g = self.codebook_grid.lock().map_err(|_| Error::Gpu {
            during: "codebook grid".into(),
            message: "poisoned".into(),
        })?;
        if let Some(t) = g.as_ref() {
            return Ok(t.clone());
        }
        let words = webjit_jit::quant::wgsl::grid_table();
        let t = self.upload_u32(&[words.len()], &words)?;
        *g = Some(t.clone());
        Ok(t)
    }
}

/// Where `Engine::empty_in` takes a tensor's buffers from.
pub(crate) enum Source<'a> {
    /// The pool, in size classes (`BufferPool::get`).
    Pool,
    /// The pool, at exactly the tensor's size (`BufferPool::get_exact`).
    Exact,
    /// A step's arena: the same buffers as the step before.
    Arena(&'a mut Arena),
    /// A recording's buffers of tensors it no longer needs, else the pool.
    Scratch(&'a mut recorder::Scratch),
}

/// Checks that `data` holds exactly `shape` elements of `dtype`.
pub(crate) fn check_upload(shape: &[usize], dtype: DType, data: &[u8]) -> Result<()> {
    let numel: usize = shape.iter().product();
    if numel * dtype.size() != data.len() {
        return Err(Error::Shape {
            op: "upload",
            detail: format!(
                "shape {shape:?} needs {} elements, got {}",
                numel,
                data.len() / dtype.size()
            ),
        });
    }
    Ok(())
}

/// The bytes of `data` (row-major, `t`'s element type) that each non-empty segment of `t` holds.
pub(crate) fn segment_bytes<'a>(
    t: &'a Tensor,
    data: &'a [u8],
) -> impl Iterator<Item = (&'a std::sync::Arc<buffer::GpuBuffer>, &'a [u8])> + 'a {
    let row_bytes = t.row_len() * t.dtype().size();
    t.segments().iter().filter_map(move |seg| {
        let lo = seg.row_start * row_bytes;
        let hi = lo + seg.rows * row_bytes;
        (hi > lo).then(|| (&seg.buffer, &data[lo..hi]))
    })
}
