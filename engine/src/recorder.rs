//! Records many ops into one command encoder and as few compute passes as possible. Within one
//! pass, WebGPU orders dispatches and makes each one's storage writes visible to the next, so
//! only copies end a pass. Uniforms of all dispatches go to 256-byte slots of shared chunks
//! written once at submit.

use std::sync::Arc;

use webjit_jit::Access;

use crate::buffer::GpuBuffer;
use crate::error::{Error, Result};
use crate::pipeline::Kernel;
use crate::tensor::Tensor;
use crate::Engine;

const SLOT: u64 = 256;
const CHUNK: u64 = 64 * 1024;

/// One buffer binding: `size` bytes of a pooled buffer from offset 0.
#[derive(Clone, Copy)]
pub struct Bind<'b> {
    pub buffer: &'b Arc<GpuBuffer>,
    pub size: u64,
}

impl<'b> Bind<'b> {
    /// Segment `i` of a tensor.
    pub fn segment(t: &'b Tensor, i: usize) -> Self {
        Bind {
            buffer: &t.segments()[i].buffer,
            size: t.segment_bytes(i).max(4),
        }
    }
    /// A single-segment tensor.
    pub fn whole(t: &'b Tensor) -> Self {
        Self::segment(t, 0)
    }
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct RecordStats {
    pub dispatches: u32,
    pub passes: u32,
    pub copies: u32,
}

pub struct Recorder<'e> {
    engine: &'e Engine,
    encoder: wgpu::CommandEncoder,
    pass: Option<wgpu::ComputePass<'static>>,
    chunks: Vec<(wgpu::Buffer, Vec<u8>)>,
    /// Every buffer a recorded command uses stays out of the pool until submit: a queue write
    /// into a recycled buffer would otherwise land before commands recorded earlier run.
    keep: Vec<Arc<GpuBuffer>>,
    pub stats: RecordStats,
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
            chunks: Vec::new(),
            keep: Vec::new(),
            stats: RecordStats::default(),
        }
    }

    pub fn engine(&self) -> &'e Engine {
        self.engine
    }

    fn uniform_slot(&mut self, params: &[u8]) -> (usize, u64) {
        let need = (params.len() as u64).div_ceil(SLOT) * SLOT;
        let fits = self
            .chunks
            .last()
            .map(|(_, bytes)| bytes.len() as u64 + need <= CHUNK)
            .unwrap_or(false);
        if !fits {
            let buf = self.engine.uniform_chunk(CHUNK.max(need));
            self.chunks.push((buf, Vec::with_capacity(CHUNK as usize)));
        }
        let idx = self.chunks.len() - 1;
        let bytes = &mut self.chunks[idx].1;
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
        let storage: Vec<_> = kernel
            .bindings
            .iter()
            .filter(|b| b.access != Access::Uniform)
            .collect();
        if storage.len() != buffers.len() {
            return Err(Error::InvalidArgument {
                op: "dispatch",
                detail: format!(
                    "kernel {} has {} storage bindings, got {} buffers",
                    kernel.key,
                    storage.len(),
                    buffers.len()
                ),
            });
        }
        let max = self.engine.gpu.max_binding();
        for (decl, b) in storage.iter().zip(buffers) {
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
        let (chunk, offset) = self.uniform_slot(params);
        let uniform_size = (params.len() as u64).div_ceil(16) * 16;
        let mut entries = Vec::with_capacity(kernel.bindings.len());
        let mut it = buffers.iter();
        for decl in &kernel.bindings {
            let (buffer, off, size) = if decl.access == Access::Uniform {
                (&self.chunks[chunk].0, offset, uniform_size)
            } else {
                let b = it.next().ok_or_else(|| Error::InvalidArgument {
                    op: "dispatch",
                    detail: "missing buffer".into(),
                })?;
                self.keep.push(b.buffer.clone());
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
        if self.pass.is_none() {
            let pass = self
                .encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("webjit"),
                    timestamp_writes: None,
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

    /// Copies bytes between buffers; ends the current compute pass.
    pub fn copy(
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

    /// Writes the uniforms and submits everything recorded.
    pub fn submit(mut self) -> Result<wgpu::SubmissionIndex> {
        self.pass = None;
        let gpu = &self.engine.gpu;
        gpu.check_alive()?;
        for (buf, bytes) in &self.chunks {
            if !bytes.is_empty() {
                gpu.queue.write_buffer(buf, 0, bytes);
            }
        }
        let idx = gpu.queue.submit(Some(self.encoder.finish()));
        // Uniform chunks can be reused at once: the queue orders the next write after this
        // submission's work.
        for (buf, _) in self.chunks.drain(..) {
            self.engine.return_uniform_chunk(buf);
        }
        self.keep.clear();
        Ok(idx)
    }
}
