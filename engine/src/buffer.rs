//! Pooled GPU storage buffers. A released buffer goes back to a free list of its size class and
//! is handed out again, so steady-state inference allocates nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use crate::error::{Error, Result};

const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Free buffers kept for reuse, at most this many bytes in all; the rest are destroyed.
const MAX_POOLED_BYTES: u64 = 1 << 30;

#[derive(Default)]
struct PoolInner {
    /// Free buffers by size class, with their ids.
    free: HashMap<u64, Vec<(wgpu::Buffer, u64)>>,
    free_bytes: u64,
    live_bytes: u64,
    /// Most `live_bytes` since the pool was made or `reset_peak`.
    peak_live_bytes: u64,
    created: u64,
    reused: u64,
}

#[derive(Clone)]
pub struct BufferPool {
    inner: Arc<Mutex<PoolInner>>,
    budget: u64,
}

/// A storage buffer from the pool; returns itself to the pool when dropped.
pub struct GpuBuffer {
    buffer: Option<wgpu::Buffer>,
    class: u64,
    /// Unique for the life of the underlying wgpu buffer (kept through pool reuse): bind
    /// groups are cached by it.
    id: u64,
    pool: Weak<Mutex<PoolInner>>,
}

/// Ids for GPU buffers (storage and uniform chunks); never reused.
pub(crate) fn next_buffer_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl GpuBuffer {
    pub fn raw(&self) -> &wgpu::Buffer {
        // Only `Drop` takes the buffer out.
        self.buffer.as_ref().expect("buffer present until drop")
    }
    pub fn capacity(&self) -> u64 {
        self.class
    }
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        let Some(buf) = self.buffer.take() else {
            return;
        };
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        let Ok(mut p) = pool.lock() else { return };
        p.live_bytes = p.live_bytes.saturating_sub(self.class);
        // An exact-size buffer (`BufferPool::get_exact`) is not a size class: a later request
        // would seldom match it, so it is not kept.
        if size_class(self.class) == self.class && p.free_bytes + self.class <= MAX_POOLED_BYTES {
            p.free_bytes += self.class;
            p.free.entry(self.class).or_default().push((buf, self.id));
        } else {
            buf.destroy();
        }
    }
}

/// Size class: the size rounded up to 1, 1.25, 1.5 or 1.75 times a power of two (at most 25%
/// waste), at least 256 bytes.
pub fn size_class(bytes: u64) -> u64 {
    let b = bytes.max(256);
    let p = 63 - b.leading_zeros() as u64; // floor(log2)
    let step = 1u64 << p.saturating_sub(2);
    b.div_ceil(step) * step
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct PoolStats {
    /// Bytes of buffers in use: what the memory budget limits.
    pub live_bytes: u64,
    /// Most `live_bytes` since the engine was made or `BufferPool::reset_peak`.
    pub peak_live_bytes: u64,
    pub free_bytes: u64,
    pub created: u64,
    pub reused: u64,
}

impl BufferPool {
    /// A pool that refuses to hold more than `budget` bytes of live buffers.
    pub fn new(budget: u64) -> Self {
        Self {
            inner: Arc::new(Mutex::new(PoolInner::default())),
            budget,
        }
    }

    pub fn stats(&self) -> PoolStats {
        match self.inner.lock() {
            Ok(p) => PoolStats {
                live_bytes: p.live_bytes,
                peak_live_bytes: p.peak_live_bytes,
                free_bytes: p.free_bytes,
                created: p.created,
                reused: p.reused,
            },
            Err(_) => PoolStats::default(),
        }
    }

    /// Starts `PoolStats::peak_live_bytes` again from the bytes in use now.
    pub fn reset_peak(&self) {
        if let Ok(mut p) = self.inner.lock() {
            p.peak_live_bytes = p.live_bytes;
        }
    }

    /// A buffer of at least `bytes` bytes, of the size class above them (so that it can be
    /// reused for other sizes). `max_buffer` is the device limit.
    pub fn get(
        &self,
        device: &wgpu::Device,
        bytes: u64,
        max_buffer: u64,
        what: &str,
    ) -> Result<Arc<GpuBuffer>> {
        let class = size_class(bytes);
        let class = if class > max_buffer && bytes <= max_buffer {
            bytes.div_ceil(4) * 4
        } else {
            class
        };
        self.get_sized(device, class, bytes, max_buffer, what)
    }

    /// A buffer of exactly `bytes` bytes (rounded up to 4): for buffers that live as long as a
    /// model (weights, KV caches), which a size class would make up to a quarter larger
    /// (Llama-3.1-8B IQ2_XS's weights took 14% more), while they would seldom be reused.
    pub fn get_exact(
        &self,
        device: &wgpu::Device,
        bytes: u64,
        max_buffer: u64,
        what: &str,
    ) -> Result<Arc<GpuBuffer>> {
        let size = bytes.max(4).div_ceil(4) * 4;
        self.get_sized(device, size, bytes, max_buffer, what)
    }

    fn get_sized(
        &self,
        device: &wgpu::Device,
        class: u64,
        bytes: u64,
        max_buffer: u64,
        what: &str,
    ) -> Result<Arc<GpuBuffer>> {
        if class > max_buffer {
            return Err(Error::TooLarge {
                what: what.into(),
                bytes,
                max: max_buffer,
            });
        }
        let mut p = self.inner.lock().map_err(|_| Error::Gpu {
            during: "buffer pool".into(),
            message: "poisoned".into(),
        })?;
        if let Some((buf, id)) = p.free.get_mut(&class).and_then(|v| v.pop()) {
            p.free_bytes -= class;
            p.live_bytes += class;
            p.peak_live_bytes = p.peak_live_bytes.max(p.live_bytes);
            p.reused += 1;
            return Ok(Arc::new(GpuBuffer {
                buffer: Some(buf),
                class,
                id,
                pool: Arc::downgrade(&self.inner),
            }));
        }
        if p.live_bytes + class > self.budget {
            // Free pooled buffers first; fail only if live buffers alone exceed the budget.
            for (_, v) in p.free.drain() {
                for (b, _) in v {
                    b.destroy();
                }
            }
            p.free_bytes = 0;
            if p.live_bytes + class > self.budget {
                return Err(Error::OutOfMemory {
                    what: format!(
                        "{what} (engine memory budget {} bytes, {} in use)",
                        self.budget, p.live_bytes
                    ),
                    bytes: class,
                });
            }
        }
        drop(p);
        let buf = create_checked(device, class, what)?;
        let mut p = self.inner.lock().map_err(|_| Error::Gpu {
            during: "buffer pool".into(),
            message: "poisoned".into(),
        })?;
        p.created += 1;
        p.live_bytes += class;
        p.peak_live_bytes = p.peak_live_bytes.max(p.live_bytes);
        Ok(Arc::new(GpuBuffer {
            buffer: Some(buf),
            class,
            id: next_buffer_id(),
            pool: Arc::downgrade(&self.inner),
        }))
    }

    /// Destroys every pooled (free) buffer.
    pub fn trim(&self) {
        if let Ok(mut p) = self.inner.lock() {
            for (_, v) in p.free.drain() {
                for (b, _) in v {
                    b.destroy();
                }
            }
            p.free_bytes = 0;
        }
    }
}

/// Creates a buffer inside an out-of-memory error scope so exhaustion becomes a typed error.
fn create_checked(device: &wgpu::Device, size: u64, what: &str) -> Result<wgpu::Buffer> {
    let scope = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let buf = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(what),
        size,
        usage: USAGE,
        mapped_at_creation: false,
    });
    #[cfg(not(target_arch = "wasm32"))]
    {
        if let Some(e) = pollster::block_on(scope.pop()) {
            buf.destroy();
            return Err(Error::OutOfMemory {
                what: format!("{what}: {e}"),
                bytes: size,
            });
        }
    }
    #[cfg(target_arch = "wasm32")]
    {
        let what = what.to_string();
        let pop = scope.pop();
        crate::device::deferred::push(async move {
            pop.await.map(|e| Error::OutOfMemory {
                what: format!("{what}: {e}"),
                bytes: size,
            })
        });
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_waste_at_most_a_quarter() {
        for b in [
            1u64,
            255,
            256,
            257,
            1000,
            4096,
            5000,
            1 << 20,
            (1 << 20) + 1,
            170 << 20,
        ] {
            let c = size_class(b);
            assert!(c >= b && c >= 256);
            assert!(c as f64 <= (b.max(256) as f64) * 1.25 + 1.0, "{b} -> {c}");
            assert_eq!(size_class(c), c, "classes are fixed points");
        }
    }
}
