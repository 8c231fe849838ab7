//! What every `--json` report records about its run, as llama-bench records its build: the
//! git revision the CLI was built from, the device, backend and driver, the shader checks in
//! force, and the command line.

use serde_json::{json, Value};
use webjit_engine::Engine;

/// The run's facts for `engine` (`None`: a command that made no engine).
pub fn run_info(engine: Option<&Engine>) -> Value {
    let mut v = json!({
        "revision": env!("WEBJIT_GIT_REV"),
        "version": env!("CARGO_PKG_VERSION"),
        "args": std::env::args().skip(1).collect::<Vec<_>>(),
    });
    if let Some(e) = engine {
        let p = e.profile();
        let o = &e.gpu.options;
        v["device"] = p.name.clone().into();
        v["backend"] = p.backend.clone().into();
        v["driver"] = p.driver.clone().into();
        v["fingerprint"] = p.fingerprint().into();
        v["unchecked_shaders"] = o.unchecked_shaders.into();
        v["loop_bounding"] = o.loop_bounding.into();
    }
    v
}

/// `report` with the run's facts added under `"run"`.
pub fn stamped(mut report: Value, engine: Option<&Engine>) -> Value {
    if let Some(obj) = report.as_object_mut() {
        obj.insert("run".into(), run_info(engine));
    }
    report
}
