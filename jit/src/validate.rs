//! naga parsing and validation of rendered WGSL, with binding reflection compared to the spec.

use naga::valid::{Capabilities, ValidationFlags, Validator};

use crate::error::JitError;
use crate::profile::DeviceProfile;
use crate::spec::{Access, BindingDecl};

/// Parse and validate `wgsl` for `profile`, then compare its group-0 bindings with `expected`.
pub fn validate(
    key: &str,
    wgsl: &str,
    expected: &[BindingDecl],
    profile: &DeviceProfile,
) -> Result<(), JitError> {
    let module = naga::front::wgsl::parse_str(wgsl).map_err(|e| JitError::Parse {
        key: key.into(),
        message: e.emit_to_string(wgsl),
    })?;
    // pack2x16float/unpack2x16float are core WGSL (every WebGPU device has them); naga gates
    // them behind this capability, which wgpu grants on Vulkan, Metal and DX12.
    let mut caps = Capabilities::SHADER_FLOAT16_IN_FLOAT32;
    if profile.f16 {
        caps |= Capabilities::SHADER_FLOAT16;
    }
    if profile.subgroups.is_some() {
        caps |= Capabilities::SUBGROUP;
    }
    let mut validator = Validator::new(ValidationFlags::all(), caps);
    validator
        .validate(&module)
        .map_err(|e| JitError::Validate {
            key: key.into(),
            message: e.emit_to_string(wgsl),
        })?;

    let mut found: Vec<(u32, Access, String)> = Vec::new();
    for (_, var) in module.global_variables.iter() {
        let Some(rb) = &var.binding else { continue };
        let access = match var.space {
            naga::AddressSpace::Uniform => Access::Uniform,
            naga::AddressSpace::Storage { access } => {
                if access.contains(naga::StorageAccess::STORE) {
                    Access::ReadWrite
                } else {
                    Access::ReadOnly
                }
            }
            other => {
                return Err(JitError::BindingMismatch {
                    key: key.into(),
                    detail: format!(
                        "binding {} is in unsupported address space {other:?}",
                        rb.binding
                    ),
                })
            }
        };
        if rb.group != 0 {
            return Err(JitError::BindingMismatch {
                key: key.into(),
                detail: format!(
                    "binding {} uses group {}, only group 0 is allowed",
                    rb.binding, rb.group
                ),
            });
        }
        found.push((rb.binding, access, var.name.clone().unwrap_or_default()));
    }
    found.sort_by_key(|f| f.0);
    let mut want: Vec<&BindingDecl> = expected.iter().collect();
    want.sort_by_key(|b| b.binding);
    if found.len() != want.len() {
        return Err(JitError::BindingMismatch {
            key: key.into(),
            detail: format!(
                "shader declares {} bindings, spec lists {}",
                found.len(),
                want.len()
            ),
        });
    }
    for (f, w) in found.iter().zip(want) {
        if f.0 != w.binding || f.1 != w.access {
            return Err(JitError::BindingMismatch {
                key: key.into(),
                detail: format!(
                    "shader has binding {} `{}` as {:?}, spec expects binding {} `{}` as {:?}",
                    f.0, f.2, f.1, w.binding, w.name, w.access
                ),
            });
        }
    }
    let storage = found.iter().filter(|f| f.1 != Access::Uniform).count() as u32;
    if storage > profile.limits.max_storage_buffers_per_shader_stage {
        return Err(JitError::Validate {
            key: key.into(),
            message: format!(
                "{storage} storage buffers exceed the device's {} per stage",
                profile.limits.max_storage_buffers_per_shader_stage
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "@group(0) @binding(0) var<storage, read> a: array<f32>;\n\
        @group(0) @binding(1) var<storage, read_write> b: array<f32>;\n\
        @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) { b[g.x] = a[g.x]; }";

    #[test]
    fn accepts_matching_bindings_and_rejects_drift() {
        let p = DeviceProfile::swiftshader_like();
        let good = [BindingDecl::read(0, "a"), BindingDecl::read_write(1, "b")];
        validate("t", OK, &good, &p).unwrap();
        let wrong_access = [
            BindingDecl::read_write(0, "a"),
            BindingDecl::read_write(1, "b"),
        ];
        assert!(matches!(
            validate("t", OK, &wrong_access, &p),
            Err(JitError::BindingMismatch { .. })
        ));
        let missing = [BindingDecl::read(0, "a")];
        assert!(matches!(
            validate("t", OK, &missing, &p),
            Err(JitError::BindingMismatch { .. })
        ));
    }

    #[test]
    fn reports_parse_and_validation_errors() {
        let p = DeviceProfile::swiftshader_like();
        assert!(matches!(
            validate("t", "fn main( {", &[], &p),
            Err(JitError::Parse { .. })
        ));
        let bad_type = "@compute @workgroup_size(1) fn main() { let x: f32 = 1u; }";
        assert!(matches!(
            validate("t", bad_type, &[], &p),
            Err(JitError::Parse { .. })
        ));
        let missing_return = "@compute @workgroup_size(64) fn main() { let x = f(); }\n\
            fn f() -> f32 { }";
        let r = validate("t", missing_return, &[], &p);
        assert!(matches!(r, Err(JitError::Validate { .. })), "{r:?}");
        let f16 = "enable f16;\n@compute @workgroup_size(1) fn main() { let x: f16 = 1.0h; }";
        assert!(
            validate("t", f16, &[], &p).is_err(),
            "f16 must be rejected without the feature"
        );
        validate("t", f16, &[], &DeviceProfile::lavapipe_like()).unwrap();
    }
}
