//! webjit-web: the wasm-bindgen facade of the engine. Options and reports cross the boundary
//! as JSON strings, bulk data as typed arrays; every error is a JS `Error` with a stable
//! `code` (see `js_error`). The npm package (web/js) wraps these exports in the public API
//! and runs them in a Web Worker.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use webjit_engine::{DeviceOptions, Engine, Error};

mod chat;
mod embed;
mod load;
mod ops;
mod state;
mod text;
mod tune;

pub use chat::{builtin_chat_template, render_chat};
pub use embed::WebEmbedder;
pub use load::WebModelLoad;
pub use text::WebTextModel;

/// The stable JS code of an engine error (a public contract, listed in web/README.md: WEBGPU_UNAVAILABLE,
/// BAD_MODEL_FILE, UNSUPPORTED_TENSOR_TYPE, OUT_OF_MEMORY, DEVICE_LOST, INVALID_ARGUMENT ...).
fn js_code(e: &Error) -> &'static str {
    use webjit_engine::loader::LoaderError as L;
    match e {
        Error::NoAdapter { .. } | Error::DeviceRequest { .. } => "WEBGPU_UNAVAILABLE",
        Error::Shape { .. } | Error::DType { .. } | Error::TooLarge { .. } => "INVALID_ARGUMENT",
        Error::Load(L::UnsupportedDType { .. } | L::UnknownTensorType { .. }) => {
            "UNSUPPORTED_TENSOR_TYPE"
        }
        Error::Load(L::Sink { code, .. })
            if matches!(
                *code,
                "OUT_OF_MEMORY" | "DEVICE_LOST" | "UNSUPPORTED_TENSOR_TYPE"
            ) =>
        {
            code
        }
        Error::Load(_) => "BAD_MODEL_FILE",
        other => other.code(),
    }
}

/// Converts an engine error into a JS `Error` with `code` (stable, for programs) and
/// `detail` (the engine's finer code, for bug reports).
pub(crate) fn js_error(e: Error) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    let _ = js_sys::Reflect::set(&err, &"code".into(), &js_code(&e).into());
    let _ = js_sys::Reflect::set(&err, &"detail".into(), &e.code().into());
    err.into()
}

/// A JS `Error` with `code` for problems found in the facade itself (bad JSON options ...).
pub(crate) fn js_err(code: &str, msg: impl AsRef<str>) -> JsValue {
    let err = js_sys::Error::new(msg.as_ref());
    let _ = js_sys::Reflect::set(&err, &"code".into(), &code.into());
    err.into()
}

pub(crate) fn invalid(msg: impl AsRef<str>) -> JsValue {
    js_err("INVALID_ARGUMENT", msg)
}

/// Parses a JSON options string (empty = `{}`).
pub(crate) fn parse_opts<T: serde::de::DeserializeOwned>(
    what: &str,
    json: &str,
) -> Result<T, JsValue> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    serde_json::from_str(json).map_err(|e| invalid(format!("{what} options: {e}")))
}

/// Milliseconds from `performance.now()` (window or worker), or `Date.now()` without it.
pub(crate) fn now_ms() -> f64 {
    let perf = js_sys::Reflect::get(&js_sys::global(), &"performance".into()).ok();
    if let Some(p) = perf.filter(|p| !p.is_undefined()) {
        if let Ok(f) = js_sys::Reflect::get(&p, &"now".into()) {
            if let Ok(f) = f.dyn_into::<js_sys::Function>() {
                if let Some(t) = f.call0(&p).ok().and_then(|v| v.as_f64()) {
                    return t;
                }
            }
        }
    }
    js_sys::Date::now()
}

/// Sets `key` on a JS object (building reports).
pub(crate) fn set(obj: &js_sys::Object, key: &str, v: impl Into<JsValue>) {
    let _ = js_sys::Reflect::set(obj, &key.into(), &v.into());
}

#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// Turns panics into console errors with a message instead of an opaque `unreachable`.
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        web_log(&format!("webjit panicked: {info}"));
    }));
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn web_log(s: &str);
}

/// The GPU device and everything on it. Models, loads and embedders hold handles to it; `free()`
/// disposes it: they refuse work from then on, its device is destroyed (all GPU memory freed
/// at once), and the rest of its state goes with the last handle.
#[wasm_bindgen(js_name = Engine)]
pub struct WebEngine {
    pub(crate) inner: Engine,
    /// Shared with models and loads: set when the engine is freed, so they refuse work.
    pub(crate) alive: Rc<RefCell<bool>>,
    /// The text model loaded last (what `tune` tunes), while it lives.
    pub(crate) current: state::CurrentModel,
    /// The adapter's name for `info()` (see `adapter_name`).
    adapter: String,
}

#[wasm_bindgen(js_class = Engine)]
impl WebEngine {
    /// `await Engine.create(powerPreference, readbackNudge)`: picks the WebGPU adapter,
    /// creates the device. `readbackNudge` (undefined: on except on CPU adapters) sends empty
    /// queue submits while a readback waits, so the browser delivers it sooner.
    /// `WEBGPU_UNAVAILABLE` when there is no `navigator.gpu` or no adapter.
    pub async fn create(
        power_preference: Option<String>,
        readback_nudge: Option<bool>,
    ) -> Result<WebEngine, JsValue> {
        let gpu = js_sys::Reflect::get(&js_sys::global(), &"navigator".into())
            .ok()
            .filter(|n| !n.is_undefined())
            .and_then(|n| js_sys::Reflect::get(&n, &"gpu".into()).ok())
            .filter(|g| !g.is_undefined() && !g.is_null());
        let Some(gpu) = gpu else {
            return Err(js_err(
                "WEBGPU_UNAVAILABLE",
                "WebGPU is not available here (no navigator.gpu): use a browser with WebGPU \
                 enabled (Chrome/Edge 113+, Safari 26+, Firefox 141+ on Windows) over https or \
                 localhost",
            ));
        };
        let (power_preference, power_name) = match power_preference.as_deref() {
            None | Some("") | Some("high-performance") => {
                (wgpu::PowerPreference::HighPerformance, "high-performance")
            }
            Some("low-power") => (wgpu::PowerPreference::LowPower, "low-power"),
            Some(other) => {
                return Err(invalid(format!(
                    "powerPreference `{other}`: expected 'high-performance' or 'low-power'"
                )))
            }
        };
        let inner = Engine::create(DeviceOptions {
            power_preference,
            readback_nudge,
            ..DeviceOptions::default()
        })
        .await
        .map_err(|e| match e {
            // wgpu's reason lists native backends and the engine's hint is about Vulkan
            // drivers: neither helps in a browser.
            Error::NoAdapter { .. } => js_err(
                "WEBGPU_UNAVAILABLE",
                "this browser has WebGPU but gave no GPU adapter: it may block WebGPU on this \
                 GPU or driver (see chrome://gpu in Chromium), or run with hardware \
                 acceleration off",
            ),
            e => js_error(e),
        })?;
        let adapter = adapter_name(&inner.profile().name, &gpu, power_name).await;
        Ok(WebEngine {
            inner,
            alive: Rc::new(RefCell::new(true)),
            current: Default::default(),
            adapter,
        })
    }

    /// Adapter, features, limits, fingerprint, GPU memory held and tuning records, as JSON.
    pub fn info(&self) -> String {
        let p = self.inner.profile();
        let m = self.inner.pool.stats();
        serde_json::json!({
            "adapter": self.adapter,
            "backend": p.backend,
            "readback_nudge": self.inner.readback_nudge(),
            "features": {
                "shader_f16": p.f16,
                "timestamp_query": p.timestamps,
                "subgroups": p.subgroups,
            },
            "limits": p.limits,
            "fingerprint": p.fingerprint(),
            "memory": {
                "live_bytes": m.live_bytes,
                "pooled_bytes": m.free_bytes,
                "buffers_created": m.created,
                "buffers_reused": m.reused,
            },
            "tuning": { "records": self.inner.export_tuning().len() },
            "device_lost": self.inner.device_lost(),
        })
        .to_string()
    }

    /// Starts a streaming load (see `ModelLoad`). `format`: 'gguf', 'safetensors' or '' to
    /// sniff; `total_bytes`: the file size, 0 when unknown; options: `{maxContext}`.
    #[wasm_bindgen(js_name = beginLoad)]
    pub fn begin_load(
        &self,
        format: &str,
        total_bytes: f64,
        options_json: &str,
    ) -> Result<WebModelLoad, JsValue> {
        self.check()?;
        WebModelLoad::new(self, format, total_bytes, options_json)
    }

    /// The tuning records of this device as JSON (persist them; `importTuning` restores them).
    #[wasm_bindgen(js_name = exportTuning)]
    pub fn export_tuning(&self) -> Result<String, JsValue> {
        serde_json::to_string(&self.inner.export_tuning())
            .map_err(|e| js_err("INTERNAL", e.to_string()))
    }

    /// Adds tuning records (from `exportTuning`, here or on a device like this one); records
    /// of other devices or other kernel versions are kept but never used.
    #[wasm_bindgen(js_name = importTuning)]
    pub fn import_tuning(&self, json: &str) -> Result<(), JsValue> {
        let recs =
            serde_json::from_str(json).map_err(|e| invalid(format!("tuning records: {e}")))?;
        self.inner.import_tuning(recs);
        Ok(())
    }

    /// `await engine.confirmAlive()`: a round trip to the GPU after everything submitted;
    /// rejects with `DEVICE_LOST` when the device went away meanwhile (the package calls it at
    /// the end of every load: writes to a lost device vanish without an error).
    #[wasm_bindgen(js_name = confirmAlive)]
    pub fn confirm_alive(&self) -> Result<js_sys::Promise, JsValue> {
        self.check()?;
        let engine = self.inner.clone();
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            engine.confirm_alive().await.map_err(js_error)?;
            Ok(JsValue::UNDEFINED)
        }))
    }

    /// A promise that resolves with the reason once the GPU device is lost (never while it
    /// lives; also when `free()` destroys it, which the package tells apart).
    #[wasm_bindgen(js_name = whenLost)]
    pub fn when_lost(&self) -> js_sys::Promise {
        let lost = self.inner.gpu.when_lost();
        wasm_bindgen_futures::future_to_promise(async move { Ok(lost.await.into()) })
    }

    /// Releases pooled (unused) GPU buffers.
    #[wasm_bindgen(js_name = releaseMemory)]
    pub fn release_memory(&self) {
        self.inner.pool.trim();
    }
}

/// The adapter's name: wgpu's (from `GPUAdapterInfo.description`), else what the browser tells
/// of the adapter it gives for the same request: Chromium leaves `description` empty unless
/// its WebGPU developer features are on, but names the vendor and architecture (SwiftShader:
/// "google swiftshader"). Never empty.
async fn adapter_name(wgpu_name: &str, gpu: &JsValue, power_preference: &str) -> String {
    if !wgpu_name.trim().is_empty() {
        return wgpu_name.to_string();
    }
    let opts = js_sys::Object::new();
    set(&opts, "powerPreference", power_preference);
    let adapter = match js_sys::Reflect::get(gpu, &"requestAdapter".into())
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .and_then(|f| f.call1(gpu, &opts).ok())
        .and_then(|p| p.dyn_into::<js_sys::Promise>().ok())
    {
        Some(p) => wasm_bindgen_futures::JsFuture::from(p).await.ok(),
        None => None,
    };
    let info = adapter
        .filter(|a| a.is_object())
        .and_then(|a| js_sys::Reflect::get(&a, &"info".into()).ok())
        .filter(|i| i.is_object());
    let mut parts: Vec<String> = Vec::new();
    for key in ["vendor", "architecture", "device", "description"] {
        let v = info
            .as_ref()
            .and_then(|i| js_sys::Reflect::get(i, &key.into()).ok())
            .and_then(|v| v.as_string())
            .map(|v| v.trim().to_string())
            .unwrap_or_default();
        if !v.is_empty() && !parts.contains(&v) {
            parts.push(v);
        }
    }
    if parts.is_empty() {
        "WebGPU adapter (the browser gives no name)".into()
    } else {
        parts.join(" ")
    }
}

impl WebEngine {
    pub(crate) fn check(&self) -> Result<(), JsValue> {
        if !*self.alive.borrow() {
            return Err(js_err("DISPOSED", "the engine was disposed"));
        }
        self.inner.gpu.check_alive().map_err(js_error)
    }
}

impl Drop for WebEngine {
    /// Models and loads of this engine refuse work from now on (`DISPOSED`); the device is
    /// destroyed, which frees all of its GPU memory at once, and the engine's caches are
    /// emptied. The engine itself is freed with the last model or load that holds it.
    fn drop(&mut self) {
        *self.alive.borrow_mut() = false;
        self.inner.pool.trim();
        self.inner.release_caches();
        self.inner.gpu.device.destroy();
    }
}
