//! Adapter and device creation, the device profile, and device-lost tracking.

use std::sync::{Arc, Mutex};

use webjit_jit::{DeviceProfile, ProfileLimits, Subgroups};

use crate::error::{Error, Result};

/// How to pick and configure the device.
#[derive(Clone, Debug)]
pub struct DeviceOptions {
    pub power_preference: wgpu::PowerPreference,
    /// Lower the max storage binding below the device's (tests use this to force tensors to
    /// be split into segments on small inputs).
    pub max_binding_override: Option<u64>,
    /// Compile shaders without any of wgpu's runtime checks (bounds checks, integer-division
    /// guards). Every webjit kernel guards its own indices, so this is safe for webjit's
    /// kernels; it is off unless asked for.
    pub unchecked_shaders: bool,
    /// Native only. By default webjit keeps wgpu's bounds checks and integer-division guards
    /// but compiles without wgpu's loop bounding (a counter and an exit test injected into every
    /// loop, against drivers that miscompile infinite loops): every loop of webjit's generated
    /// kernels is bounded by sizes the engine validates, and the injected counter stops drivers
    /// from unrolling loops and keeping the kernels' small arrays in registers. On an H100 it
    /// made Gemma decode 1.4x and prefill 3.4x slower, fused attention 7x
    /// (benchmarks/HISTORY.md, "Shader checks"). `true` restores wgpu's full default checks; the
    /// environment variable `WEBJIT_LOOP_BOUNDING=1` sets it for `DeviceOptions::default()`.
    /// Browsers apply their own checks and ignore it.
    pub loop_bounding: bool,
    /// Most bytes of GPU buffers the engine may hold at once; allocations past it fail with
    /// `OutOfMemory` before reaching the driver (browsers and software drivers crash or
    /// thrash instead of failing cleanly).
    pub memory_budget: u64,
    /// Load tuning records from the default store at creation (native: a JSON file).
    pub load_tuning: bool,
    /// f16 multiplies in prefill matmuls (`DeviceProfile::f16_prefill`): `None` lets the
    /// device decide (on for GPUs with `shader-f16` and 32-lane subgroups), `Some(false)`
    /// keeps prefill in f32, `Some(true)` asks for f16 wherever `shader-f16` exists.
    pub f16_prefill: Option<bool>,
    /// Web only: while a readback waits, send empty queue submits so the browser delivers
    /// the result sooner (see `nudge`). `None` (the default): on, except on CPU adapters.
    pub readback_nudge: Option<bool>,
}

/// Default for `DeviceOptions::memory_budget`.
pub const DEFAULT_MEMORY_BUDGET: u64 = 8 << 30;

impl Default for DeviceOptions {
    fn default() -> Self {
        Self {
            power_preference: wgpu::PowerPreference::HighPerformance,
            max_binding_override: None,
            unchecked_shaders: false,
            loop_bounding: std::env::var("WEBJIT_LOOP_BOUNDING").is_ok_and(|v| v == "1"),
            memory_budget: DEFAULT_MEMORY_BUDGET,
            load_tuning: true,
            f16_prefill: None,
            readback_nudge: None,
        }
    }
}

pub struct Gpu {
    pub instance: wgpu::Instance,
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub profile: DeviceProfile,
    pub options: DeviceOptions,
    lost: Arc<Lost>,
    /// Unique within the process: tells engines apart (wgpu ids repeat across instances).
    pub id: u64,
}

static NEXT_GPU_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Gpu {
    pub async fn create(options: DeviceOptions) -> Result<Self> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: wgpu::Backends::all(),
            ..wgpu::InstanceDescriptor::new_without_display_handle_from_env()
        });
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: options.power_preference,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::NoAdapter {
                detail: e.to_string(),
            })?;
        let info = adapter.get_info();
        let available = adapter.features();
        let mut features = wgpu::Features::empty();
        for f in [
            wgpu::Features::SHADER_F16,
            wgpu::Features::TIMESTAMP_QUERY,
            wgpu::Features::SUBGROUP,
        ] {
            if available.contains(f) {
                features |= f;
            }
        }
        // Ask for everything the adapter offers; if that fails (some drivers refuse their own
        // maxima), fall back to the WebGPU defaults, which every device supports.
        let attempts = [
            (features, adapter.limits()),
            (wgpu::Features::empty(), wgpu::Limits::default()),
        ];
        let mut last_err = String::new();
        for (feats, limits) in attempts {
            let desc = wgpu::DeviceDescriptor {
                label: Some("webjit"),
                required_features: feats,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            };
            match adapter.request_device(&desc).await {
                Ok((device, queue)) => {
                    let lost = Arc::new(Lost::default());
                    let lost_cb = lost.clone();
                    device.set_device_lost_callback(move |reason, msg| {
                        lost_cb.set(format!("{reason:?}: {msg}"));
                    });
                    let profile = make_profile(&info, &device, &options);
                    return Ok(Self {
                        instance,
                        adapter,
                        device,
                        queue,
                        info,
                        profile,
                        options,
                        lost,
                        id: NEXT_GPU_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                    });
                }
                Err(e) => last_err = e.to_string(),
            }
        }
        Err(Error::DeviceRequest { detail: last_err })
    }

    /// Errors with `DeviceLost` once the device is gone; ops call this before recording.
    pub fn check_alive(&self) -> Result<()> {
        match self.lost.reason() {
            Some(reason) => Err(Error::DeviceLost { reason }),
            None => Ok(()),
        }
    }

    /// Why the device was lost, once it is.
    pub fn lost_reason(&self) -> Option<String> {
        self.lost.reason()
    }

    /// Resolves with the reason once the device is lost (wgpu's device-lost callback, or a
    /// failed poll or map); never while it lives. Holds no borrow of the device.
    pub fn when_lost(&self) -> impl std::future::Future<Output = String> + 'static {
        LostFuture(self.lost.clone())
    }

    /// Marks the device lost (a poll or map reported it) and returns `DeviceLost` with the
    /// first reason recorded.
    pub(crate) fn lost_error(&self, reason: String) -> Error {
        self.lost.set(reason);
        Error::DeviceLost {
            reason: self.lost.reason().unwrap_or_default(),
        }
    }

    /// Block until all submitted work is done (native); a no-op on the web.
    pub fn wait_idle(&self) -> Result<()> {
        match self.device.poll(wgpu::PollType::wait_indefinitely()) {
            Ok(_) => Ok(()),
            Err(e) => Err(self.lost_error(e.to_string())),
        }
    }

    pub fn max_binding(&self) -> u64 {
        self.profile.limits.max_storage_buffer_binding_size
    }
}

/// The device-lost state: the first reason, and the wakers of `when_lost` futures.
#[derive(Default)]
struct Lost {
    state: Mutex<(Option<String>, Vec<std::task::Waker>)>,
}

impl Lost {
    fn set(&self, reason: String) {
        let wakers = match self.state.lock() {
            Ok(mut st) => {
                st.0.get_or_insert(reason);
                std::mem::take(&mut st.1)
            }
            Err(_) => return,
        };
        for w in wakers {
            w.wake();
        }
    }

    fn reason(&self) -> Option<String> {
        match self.state.lock() {
            Ok(st) => st.0.clone(),
            Err(_) => Some("device state poisoned".into()),
        }
    }
}

struct LostFuture(Arc<Lost>);

impl std::future::Future for LostFuture {
    type Output = String;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<String> {
        let Ok(mut st) = self.0.state.lock() else {
            return std::task::Poll::Ready("device state poisoned".into());
        };
        match &st.0 {
            Some(r) => std::task::Poll::Ready(r.clone()),
            None => {
                if !st.1.iter().any(|w| w.will_wake(cx.waker())) {
                    st.1.push(cx.waker().clone());
                }
                std::task::Poll::Pending
            }
        }
    }
}

fn make_profile(
    info: &wgpu::AdapterInfo,
    device: &wgpu::Device,
    options: &DeviceOptions,
) -> DeviceProfile {
    let l = device.limits();
    let f = device.features();
    let mut binding = l.max_storage_buffer_binding_size;
    if let Some(o) = options.max_binding_override {
        binding = binding.min(o.max(256));
    }
    DeviceProfile {
        name: info.name.clone(),
        vendor: info.vendor,
        device: info.device,
        backend: format!("{:?}", info.backend).to_lowercase(),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
        limits: ProfileLimits {
            max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            max_compute_workgroup_size_x: l.max_compute_workgroup_size_x,
            max_compute_workgroup_size_y: l.max_compute_workgroup_size_y,
            max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
            max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
            max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
            max_storage_buffer_binding_size: binding,
            max_buffer_size: l.max_buffer_size,
            min_storage_buffer_offset_alignment: l.min_storage_buffer_offset_alignment,
            min_uniform_buffer_offset_alignment: l.min_uniform_buffer_offset_alignment,
        },
        f16: f.contains(wgpu::Features::SHADER_F16),
        subgroups: f.contains(wgpu::Features::SUBGROUP).then_some(Subgroups {
            min_size: info.subgroup_min_size,
            max_size: info.subgroup_max_size,
        }),
        timestamps: f.contains(wgpu::Features::TIMESTAMP_QUERY),
        unchecked_shaders: options.unchecked_shaders,
        loop_bounding: options.loop_bounding && !options.unchecked_shaders,
        cpu: info.device_type == wgpu::DeviceType::Cpu,
        f16_prefill: options.f16_prefill,
    }
}

/// Browsers report shader-compilation and allocation failures asynchronously (error scopes
/// resolve later), and the web cannot block on them. Each creation registers its check here;
/// every readback awaits the pending checks first, so a failure surfaces as a typed error at
/// the next `await` instead of as silently wrong results.
#[cfg(target_arch = "wasm32")]
pub(crate) mod deferred {
    use std::cell::RefCell;
    use std::future::Future;
    use std::pin::Pin;

    use crate::error::{Error, Result};

    type Check = Pin<Box<dyn Future<Output = Option<Error>>>>;

    thread_local! {
        static PENDING: RefCell<Vec<Check>> = const { RefCell::new(Vec::new()) };
    }

    pub(crate) fn push(check: impl Future<Output = Option<Error>> + 'static) {
        PENDING.with(|p| p.borrow_mut().push(Box::pin(check)));
    }

    /// Awaits every registered check; the first failure comes back.
    pub(crate) async fn check() -> Result<()> {
        let pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
        let mut first = None;
        for c in pending {
            if let Some(e) = c.await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// Chromium delivers a finished `mapAsync` when its GPU process next polls for finished work,
/// which, with nothing else to do, it does on a timer about a millisecond or two apart: a
/// readback of a job that takes 0.3 ms of GPU time resolves 1-2 ms after the work is done.
/// Any traffic to the GPU process makes it poll sooner, so while a readback waits this sends
/// an empty `queue.submit([])` every `EVERY_MS` for the first `FOR_MS` (measured on
/// SwiftShader here: 32 small dispatches plus a readback, median 2.5 -> 0.9 ms;
/// `benchmarks/web/device/floor.mjs --variants`; on an H100, 32 dispatches plus a readback,
/// median 2.7 -> 0.5 ms, and MiniLM at batch 1 3.3-3.96 -> 2.12-2.38 ms). Past `FOR_MS` the
/// job is long enough that the poll delay no longer matters, and the wait goes on quietly.
/// Not used on CPU adapters (see `Engine::submit_and_read`).
#[cfg(target_arch = "wasm32")]
pub(crate) mod nudge {
    use js_sys::{Array, Function, Promise, Reflect};
    use wasm_bindgen::{JsCast, JsValue};

    const EVERY_MS: f64 = 0.25;
    const FOR_MS: f64 = 16.0;

    fn global_fn(name: &str) -> Option<(JsValue, Function)> {
        let g = js_sys::global();
        let f = Reflect::get(&g, &name.into())
            .ok()?
            .dyn_into::<Function>()
            .ok()?;
        Some((g.into(), f))
    }

    fn now_ms() -> Option<f64> {
        let perf = Reflect::get(&js_sys::global(), &"performance".into()).ok()?;
        let now = Reflect::get(&perf, &"now".into())
            .ok()?
            .dyn_into::<Function>()
            .ok()?;
        now.call0(&perf).ok()?.as_f64()
    }

    /// Resolves on the event loop's next task: a MessageChannel message (no timer clamp),
    /// or a zero timeout where there is no MessageChannel.
    async fn next_task() {
        let promise = Promise::new(&mut |resolve, _reject| {
            let via_channel = || -> Option<()> {
                let (_, ctor) = global_fn("MessageChannel")?;
                let ch = Reflect::construct(&ctor, &Array::new()).ok()?;
                let port1 = Reflect::get(&ch, &"port1".into()).ok()?;
                let port2 = Reflect::get(&ch, &"port2".into()).ok()?;
                Reflect::set(&port1, &"onmessage".into(), &resolve).ok()?;
                let post = Reflect::get(&port2, &"postMessage".into())
                    .ok()?
                    .dyn_into::<Function>()
                    .ok()?;
                post.call1(&port2, &JsValue::from(0)).ok()?;
                Some(())
            };
            if via_channel().is_none() {
                if let Some((g, set_timeout)) = global_fn("setTimeout") {
                    let _ = set_timeout.call2(&g, &resolve, &JsValue::from(0));
                } else {
                    let _ = resolve.call0(&JsValue::NULL);
                }
            }
        });
        let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
    }

    /// Returns once `done()` holds or `FOR_MS` have passed, submitting nothing but empty
    /// queue submits meanwhile.
    pub(crate) async fn until(queue: &wgpu::Queue, done: impl Fn() -> bool) {
        let Some(t0) = now_ms() else { return };
        let mut last = t0;
        while !done() {
            let t = now_ms().unwrap_or(t0 + FOR_MS);
            if t - t0 >= FOR_MS {
                return;
            }
            if t - last >= EVERY_MS {
                queue.submit(std::iter::empty());
                last = t;
            }
            next_task().await;
        }
    }
}
