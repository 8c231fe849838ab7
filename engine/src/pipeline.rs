//! Kernel key -> compiled pipeline cache. Shader creation runs inside an error scope and the
//! compiler's messages are read, since browsers compile WGSL with their own compiler.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use webjit_jit::{Access, BindingDecl, KernelSpec};

use crate::device::Gpu;
use crate::error::Error;
use crate::error::Result;

pub struct Kernel {
    /// Unique per compiled pipeline (bind groups are cached by it).
    pub id: u64,
    pub key: String,
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub bindings: Vec<BindingDecl>,
}

#[derive(Default)]
pub struct PipelineCache {
    map: Mutex<HashMap<String, Arc<Kernel>>>,
}

impl PipelineCache {
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every pipeline (they are compiled again on next use).
    pub fn clear(&self) {
        if let Ok(mut m) = self.map.lock() {
            m.clear();
        }
    }

    /// The pipeline for `cfg` of `spec`, compiling it on first use. `check` runs on every call
    /// because a config's legality can depend on the problem's sizes.
    pub fn get<S: KernelSpec>(&self, gpu: &Gpu, spec: &S, cfg: &S::Config) -> Result<Arc<Kernel>> {
        gpu.check_alive()?;
        spec.check(&gpu.profile, cfg)?;
        let key = spec.key(cfg);
        if let Some(k) = self.map.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(k);
        }
        let compiled = webjit_jit::compile(spec, &gpu.profile, cfg)?;
        dump_wgsl(&compiled.key, &compiled.wgsl);
        let kernel = Arc::new(build(gpu, &compiled)?);
        if let Ok(mut m) = self.map.lock() {
            m.insert(key, kernel.clone());
        }
        Ok(kernel)
    }
}

/// `WEBJIT_DUMP_WGSL=dir` writes every compiled shader as `dir/KEY.wgsl`.
fn dump_wgsl(key: &str, wgsl: &str) {
    #[cfg(not(target_arch = "wasm32"))]
    if let Some(dir) = std::env::var_os("WEBJIT_DUMP_WGSL") {
        let dir = std::path::PathBuf::from(dir);
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(format!("{key}.wgsl")), wgsl);
    }
    #[cfg(target_arch = "wasm32")]
    let _ = (key, wgsl);
}

fn layout_entries(bindings: &[BindingDecl]) -> Vec<wgpu::BindGroupLayoutEntry> {
    bindings
        .iter()
        .map(|b| wgpu::BindGroupLayoutEntry {
            binding: b.binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: match b.access {
                    Access::Uniform => wgpu::BufferBindingType::Uniform,
                    Access::ReadOnly => wgpu::BufferBindingType::Storage { read_only: true },
                    Access::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect()
}

/// The shader's validation error (from its error scope) or compilation errors, if any.
async fn compile_check(
    key: String,
    scope: impl std::future::Future<Output = Option<wgpu::Error>>,
    module: wgpu::ShaderModule,
) -> Option<Error> {
    if let Some(e) = scope.await {
        return Some(Error::ShaderCompile {
            key,
            message: e.to_string(),
        });
    }
    let info = module.get_compilation_info().await;
    let errors: Vec<String> = info
        .messages
        .iter()
        .filter(|m| m.message_type == wgpu::CompilationMessageType::Error)
        .map(|m| m.message.clone())
        .collect();
    (!errors.is_empty()).then(|| Error::ShaderCompile {
        key,
        message: errors.join("; "),
    })
}

fn build(gpu: &Gpu, k: &webjit_jit::CompiledKernel) -> Result<Kernel> {
    let device = &gpu.device;
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let desc = wgpu::ShaderModuleDescriptor {
        label: Some(&k.key),
        source: wgpu::ShaderSource::Wgsl(k.wgsl.as_str().into()),
    };
    let module = if gpu.options.unchecked_shaders {
        // SAFETY: webjit kernels guard every buffer index against the sizes in their uniforms,
        // and loops are bounded by those sizes; the option is off unless the user asks for it.
        unsafe { device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
    } else if gpu.options.loop_bounding || cfg!(target_arch = "wasm32") {
        device.create_shader_module(desc)
    } else {
        let mut checks = wgpu::ShaderRuntimeChecks::checked();
        checks.force_loop_bounding = false;
        // SAFETY: the only check dropped is loop bounding, which guards against infinite
        // loops. Every loop in webjit's generated kernels runs over a range computed from sizes
        // the engine validated before dispatch (counts read from buffers are clamped to them,
        // bit loops clear one bit per turn), so none is infinite; bounds checks and
        // integer-division guards stay on.
        unsafe { device.create_shader_module_trusted(desc, checks) }
    };
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(&k.key),
        entries: &layout_entries(&k.bindings),
    });
    let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(&k.key),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let constants: Vec<(&str, f64)> = k.overrides.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(&k.key),
        layout: Some(&pl),
        module: &module,
        entry_point: Some(k.entry),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants: &constants,
            // Every webjit kernel writes workgroup memory before reading it.
            zero_initialize_workgroup_memory: false,
        },
        cache: None,
    });
    let check = compile_check(k.key.clone(), scope.pop(), module.clone());
    // Natively the check is awaited here; browsers answer later, so it runs at the next
    // readback (see `device::deferred`).
    #[cfg(not(target_arch = "wasm32"))]
    if let Some(e) = pollster::block_on(check) {
        return Err(e);
    }
    #[cfg(target_arch = "wasm32")]
    crate::device::deferred::push(check);
    Ok(Kernel {
        id: crate::buffer::next_buffer_id(),
        key: k.key.clone(),
        pipeline,
        layout,
        bindings: k.bindings.clone(),
    })
}
