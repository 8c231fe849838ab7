//! webjit-web: the wasm-bindgen facade of the engine. Thin for now: device creation, device
//! info, and the error convention (every error is a JS `Error` with a stable `code`).

use wasm_bindgen::prelude::*;
use webjit_engine::{DeviceOptions, Engine, Error};

/// Converts an engine error into a JS `Error` whose `code` property is stable.
fn js_error(e: Error) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    let code = match &e {
        Error::NoAdapter { .. } => "WEBGPU_UNAVAILABLE",
        other => other.code(),
    };
    let _ = js_sys::Reflect::set(&err, &"code".into(), &code.into());
    err.into()
}

#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

#[wasm_bindgen(js_name = Engine)]
pub struct WebEngine {
    inner: Engine,
}

#[wasm_bindgen(js_class = Engine)]
impl WebEngine {
    /// `await Engine.create()`: picks the WebGPU adapter and creates the device.
    pub async fn create() -> Result<WebEngine, JsValue> {
        let inner = Engine::create(DeviceOptions::default())
            .await
            .map_err(js_error)?;
        Ok(WebEngine { inner })
    }

    /// Adapter, features, limits and profile fingerprint, as a JSON string.
    pub fn info(&self) -> String {
        let p = self.inner.profile();
        serde_json::json!({
            "adapter": p.name,
            "backend": p.backend,
            "features": { "shader_f16": p.f16, "timestamp_query": p.timestamps },
            "limits": p.limits,
            "fingerprint": p.fingerprint(),
        })
        .to_string()
    }
}
