//! webjit-engine: the runtime. Device, pipeline cache, pooled buffers, tensors, a recorder that
//! batches ops into one command encoder, and the ops themselves.

// On wasm32, wgpu handles are neither Send nor Sync; the engine is single-threaded there.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod buffer;
pub mod device;
pub mod error;
pub mod kv_cache;
pub mod loader;
pub mod model;
pub mod ops;
pub mod pipeline;
pub mod qtensor;
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
pub use recorder::{Arena, Bind, RecordStats, Recorder};
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

pub struct Engine {
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
        Ok(Self {
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
        })
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
        self.empty_in(shape, dtype, None)
    }

    /// `empty`, taking buffers from `arena` when one is given.
    pub(crate) fn empty_in(
        &self,
        shape: &[usize],
        dtype: DType,
        mut arena: Option<&mut Arena>,
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
            let buffer = match arena.as_deref_mut() {
                Some(a) => a.get(self, bytes)?,
                None => self.pool.get(
                    &self.gpu.device,
                    bytes,
                    self.gpu.profile.limits.max_buffer_size,
                    "tensor",
                )?,
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
        self.upload_in(shape, dtype, data, None)
    }

    pub(crate) fn upload_in(
        &self,
        shape: &[usize],
        dtype: DType,
        data: &[u8],
        arena: Option<&mut Arena>,
    ) -> Result<Tensor> {
        check_upload(shape, dtype, data)?;
        let t = self.empty_in(shape, dtype, arena)?;
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

    /// Copies a tensor back to the host (all segments, in order).
    pub async fn read_bytes(&self, t: &Tensor) -> Result<Vec<u8>> {
        self.submit_and_read(self.recorder(), t).await
    }

    /// Submits `rec` with the copy of `t` into a mappable buffer recorded at its end, then
    /// reads `t` back: the work and its readback in one submit. The mappable buffer is kept
    /// for the next readback that fits (a browser backs each with shared memory, so creating
    /// one per call costs a round trip to the GPU process).
    pub async fn submit_and_read(&self, mut rec: Recorder<'_>, t: &Tensor) -> Result<Vec<u8>> {
        self.gpu.check_alive()?;
        let total = t.bytes();
        let need = total.max(4).div_ceil(4) * 4;
        let cached = self.staging.lock().ok().and_then(|mut s| s.take());
        let staging = match cached {
            Some(b) if b.size() >= need => b,
            _ => self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("webjit readback"),
                size: need.max(STAGING_MIN),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
        };
        let mut off = 0;
        for i in 0..t.segments().len() {
            let n = t.segment_bytes(i);
            if n > 0 {
                rec.copy(t.segments()[i].buffer.raw(), 0, &staging, off, n);
            }
            off += n;
        }
        rec.submit()?;
        #[cfg(target_arch = "wasm32")]
        device::deferred::check().await?;
        let done = MapSignal::default();
        let signal = done.clone();
        staging
            .slice(..need)
            .map_async(wgpu::MapMode::Read, move |r| {
                signal.set(r.map_err(|e| e.to_string()))
            });
        #[cfg(not(target_arch = "wasm32"))]
        self.gpu.wait_idle()?;
        // By default not on CPU adapters: their jobs take far longer than the poll delay, and
        // the GPU process's extra work would come out of the same cores.
        #[cfg(target_arch = "wasm32")]
        if self.readback_nudge {
            device::nudge::until(&self.gpu.queue, || done.is_set()).await;
        }
        done.await.map_err(|e| {
            self.gpu.mark_lost(e.clone());
            Error::Readback { detail: e }
        })?;
        let out = {
            let view = staging
                .slice(..need)
                .get_mapped_range()
                .map_err(|e| Error::Readback {
                    detail: e.to_string(),
                })?;
            view[..total as usize].to_vec()
        };
        staging.unmap();
        if staging.size() > STAGING_KEEP_MAX {
            // A one-off large readback: not worth holding on to.
            staging.destroy();
        } else if let Ok(mut s) = self.staging.lock() {
            // Keep the larger of the two.
            match s.as_ref() {
                Some(b) if b.size() >= staging.size() => staging.destroy(),
                _ => {
                    if let Some(old) = s.replace(staging) {
                        old.destroy();
                    }
                }
            }
        }
        Ok(out)
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_f32(&self, t: &Tensor) -> Result<Vec<f32>> {
        if t.dtype() != DType::F32 {
            return Err(Error::DType {
                op: "read_f32",
                expected: "f32",
                got: t.dtype().name(),
            });
        }
        let bytes = pollster::block_on(self.read_bytes(t))?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_u32(&self, t: &Tensor) -> Result<Vec<u32>> {
        if t.dtype() != DType::U32 {
            return Err(Error::DType {
                op: "read_u32",
                expected: "u32",
                got: t.dtype().name(),
            });
        }
        let bytes = pollster::block_on(self.read_bytes(t))?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}

/// Completion of a buffer map: set by wgpu's callback, awaited by readback. Works natively
/// (the callback runs inside `poll`) and on the web (it runs from the event loop).
#[derive(Clone, Default)]
struct MapSignal(std::sync::Arc<Mutex<MapState>>);

type MapState = (Option<Result<(), String>>, Option<std::task::Waker>);

impl MapSignal {
    /// Whether the map has finished (either way).
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    fn is_set(&self) -> bool {
        self.0.lock().map(|s| s.0.is_some()).unwrap_or(true)
    }

    fn set(&self, r: Result<(), String>) {
        if let Ok(mut s) = self.0.lock() {
            s.0 = Some(r);
            if let Some(w) = s.1.take() {
                w.wake();
            }
        }
    }
}

impl std::future::Future for MapSignal {
    type Output = Result<(), String>;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let Ok(mut s) = self.0.lock() else {
            return std::task::Poll::Ready(Err("map state poisoned".into()));
        };
        match s.0.take() {
            Some(r) => std::task::Poll::Ready(r),
            None => {
                s.1 = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        }
    }
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
