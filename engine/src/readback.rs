//! Reading results back to the host: a copy into a mappable buffer, its map awaited. Natively
//! the map completes inside a device poll; in the browser from the event loop, with empty
//! queue submits while it waits (`device::nudge`) so the GPU process notices sooner.

use std::sync::Mutex;

#[cfg(target_arch = "wasm32")]
use crate::device;
use crate::error::{Error, Result};
use crate::recorder::Recorder;
#[cfg(not(target_arch = "wasm32"))]
use crate::tensor::DType;
use crate::tensor::Tensor;
use crate::{Engine, STAGING_KEEP_MAX, STAGING_MIN};

impl Engine {
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
                rec.copy_raw(t.segments()[i].buffer.raw(), 0, &staging, off, n);
            }
            off += n;
        }
        let idx = rec.submit()?;
        let out = self.read_mapped(&staging, total, Some(idx)).await?;
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

    /// Maps the first `bytes` of `staging` (MAP_READ) once the work that writes it has run, and
    /// copies them out. `after`: the submission that writes it (natively, the wait is for that
    /// submission only, so a later one may still run: a decode step submitted ahead).
    pub(crate) async fn read_mapped(
        &self,
        staging: &wgpu::Buffer,
        bytes: u64,
        after: Option<wgpu::SubmissionIndex>,
    ) -> Result<Vec<u8>> {
        let need = bytes.max(4).div_ceil(4) * 4;
        // A deferred error (validation, out of memory) of work on a device that has gone since
        // is the loss, not its symptom.
        #[cfg(target_arch = "wasm32")]
        if let Err(e) = device::deferred::check().await {
            self.gpu.check_alive()?;
            return Err(e);
        }
        let done = MapSignal::default();
        let signal = done.clone();
        staging
            .slice(..need)
            .map_async(wgpu::MapMode::Read, move |r| {
                signal.set(r.map_err(|e| e.to_string()))
            });
        #[cfg(not(target_arch = "wasm32"))]
        self.wait_mapped(&done, after)?;
        #[cfg(target_arch = "wasm32")]
        let _ = after;
        // By default not on CPU adapters: their jobs take far longer than the poll delay, and
        // the GPU process's extra work would come out of the same cores.
        #[cfg(target_arch = "wasm32")]
        if self.readback_nudge {
            device::nudge::until(&self.gpu.queue, || done.is_set()).await;
        }
        // A map fails only when the device is gone (webjit never unmaps or destroys a buffer
        // with a map pending): the error is the device's, so callers see `DEVICE_LOST`.
        done.await.map_err(|e| {
            self.gpu
                .lost_error(format!("mapping a readback buffer failed: {e}"))
        })?;
        let out = {
            let view = staging
                .slice(..need)
                .get_mapped_range()
                .map_err(|e| Error::Readback {
                    detail: e.to_string(),
                })?;
            view[..bytes as usize].to_vec()
        };
        staging.unmap();
        Ok(out)
    }

    /// Polls the device until the map behind `done` has completed (natively the callback runs
    /// inside a poll).
    #[cfg(not(target_arch = "wasm32"))]
    fn wait_mapped(&self, done: &MapSignal, after: Option<wgpu::SubmissionIndex>) -> Result<()> {
        let wait = |poll: wgpu::PollType| -> Result<()> {
            self.gpu
                .device
                .poll(poll)
                .map(|_| ())
                .map_err(|e| self.gpu.lost_error(e.to_string()))
        };
        match after {
            Some(idx) => wait(wgpu::PollType::Wait {
                submission_index: Some(idx),
                timeout: None,
            })?,
            None => wait(wgpu::PollType::wait_indefinitely())?,
        }
        if !done.is_set() {
            // The map callback can land one maintenance pass after its submission completes
            // (seen on lavapipe): wait for everything submitted.
            wait(wgpu::PollType::wait_indefinitely())?;
        }
        // Rarely (lavapipe under load) it lands later still: keep polling for up to 2 s.
        let t0 = std::time::Instant::now();
        while !done.is_set() && t0.elapsed().as_secs_f64() < 2.0 {
            wait(wgpu::PollType::Poll)?;
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if !done.is_set() {
            return Err(Error::Readback {
                detail: "the buffer was not mapped after its submission finished".into(),
            });
        }
        Ok(())
    }
}

/// Completion of a buffer map: set by wgpu's callback, awaited by readback. Works natively
/// (the callback runs inside `poll`) and on the web (it runs from the event loop).
#[derive(Clone, Default)]
struct MapSignal(std::sync::Arc<Mutex<MapState>>);

type MapState = (Option<Result<(), String>>, Option<std::task::Waker>);

impl MapSignal {
    /// Whether the map has finished (either way).
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
