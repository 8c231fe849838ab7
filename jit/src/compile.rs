//! Compiling one config of a spec: check, render, validate, and the result the engine builds a
//! pipeline from. Kept apart from `spec` so that `validate` (which reads the binding types of
//! `spec`) and `spec` do not import each other.

use crate::error::JitError;
use crate::profile::DeviceProfile;
use crate::spec::{BindingDecl, KernelSpec};
use crate::validate;

/// A rendered, validated kernel: everything the engine needs to build a pipeline.
#[derive(Clone, Debug)]
pub struct CompiledKernel {
    pub key: String,
    pub wgsl: String,
    pub bindings: Vec<BindingDecl>,
    pub overrides: Vec<(String, f64)>,
    pub entry: &'static str,
    pub dispatch: [u32; 3],
}

/// Check, render and validate one config of a spec.
pub fn compile<S: KernelSpec>(
    spec: &S,
    profile: &DeviceProfile,
    cfg: &S::Config,
) -> Result<CompiledKernel, JitError> {
    spec.check(profile, cfg)?;
    let key = spec.key(cfg);
    let wgsl = spec.render(cfg)?;
    let bindings = spec.bindings(cfg);
    validate::validate(&key, &wgsl, &bindings, profile)?;
    Ok(CompiledKernel {
        key,
        wgsl,
        bindings,
        overrides: spec.overrides(cfg),
        entry: "main",
        dispatch: spec.dispatch(cfg),
    })
}
