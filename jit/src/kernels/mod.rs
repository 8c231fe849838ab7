//! Kernel families, one file each.

pub mod attention;
pub mod attention_decode;
pub mod bandwidth;
pub mod block_sparse;
pub mod elementwise;
pub mod embedding;
pub mod hadamard;
pub mod kivi;
pub mod kv_dtype;
pub mod matmul;
pub mod neighborhood;
pub mod pool;
pub mod probe;
pub mod qk_rope;
pub mod qmatmul;
pub mod qmatvec;
pub mod rope;
pub mod rowwise;
pub mod sample;

use crate::error::JitError;
use crate::profile::DeviceProfile;

/// Floats one invocation of an attention kernel may hold in registers (query rows,
/// accumulators, scores); beyond this configs spill on every GPU we target, so they are left
/// out of the spaces.
pub(crate) const MAX_REGISTER_FLOATS: u64 = 1024;

/// Workgroup sizes offered to 1-D kernels' spaces.
pub const WORKGROUP_SIZES: [u32; 4] = [32, 64, 128, 256];

/// The (vector width x workgroup size) grid of the simple 1-D kernels, vector width outer, kept
/// where `legal` says so: their whole tuning space.
pub(crate) fn wg_vec_space<C>(make: impl Fn(u32, u32) -> C, legal: impl Fn(&C) -> bool) -> Vec<C> {
    [1u32, 4]
        .into_iter()
        .flat_map(|vec| WORKGROUP_SIZES.into_iter().map(move |wg| (wg, vec)))
        .map(|(wg, vec)| make(wg, vec))
        .filter(|c| legal(c))
        .collect()
}

/// Common legality check for a 1-D workgroup of `wg` invocations.
pub(crate) fn check_workgroup(
    family: &str,
    config: &str,
    profile: &DeviceProfile,
    wg: u32,
) -> Result<(), JitError> {
    let l = &profile.limits;
    if wg == 0
        || wg > l.max_compute_invocations_per_workgroup
        || wg > l.max_compute_workgroup_size_x
    {
        return Err(JitError::IllegalConfig {
            family: family.into(),
            config: config.into(),
            reason: format!(
                "workgroup of {wg} invocations exceeds the device limit of {} (x limit {})",
                l.max_compute_invocations_per_workgroup, l.max_compute_workgroup_size_x
            ),
        });
    }
    Ok(())
}

/// Common check of a 1-D kernel's vector width: 1 or 4, and 4 only when `divisible` (the
/// lengths it reads as vec4, named `what` in the error, are multiples of 4).
pub(crate) fn check_vec(
    family: &str,
    config: &str,
    vec: u32,
    divisible: bool,
    what: &str,
) -> Result<(), JitError> {
    if vec != 1 && vec != 4 {
        return Err(illegal(family, config, "vector width must be 1 or 4"));
    }
    if vec == 4 && !divisible {
        return Err(illegal(
            family,
            config,
            format!("vec4 needs {what} divisible by 4"),
        ));
    }
    Ok(())
}

pub(crate) fn illegal(family: &str, config: &str, reason: impl Into<String>) -> JitError {
    JitError::IllegalConfig {
        family: family.into(),
        config: config.into(),
        reason: reason.into(),
    }
}

/// Workgroups per dispatch dimension that every WebGPU device allows.
pub const MAX_GROUPS_PER_DIM: u32 = 65535;

/// Workgroup counts for `groups` workgroups spread over x and y within the limit (none for 0;
/// counts past 2^32 are clamped).
pub(crate) fn groups_dispatch(groups: u64) -> [u32; 3] {
    if groups == 0 {
        return [0, 1, 1];
    }
    crate::spec::dispatch_2d(groups.min(u32::MAX as u64) as u32, MAX_GROUPS_PER_DIM)
}

/// Rejects configs that need `shared` bytes of workgroup memory, more than the device has;
/// `what` says what needs them ("K and V tiles need").
pub(crate) fn check_shared(
    family: &str,
    config: &str,
    profile: &DeviceProfile,
    shared: u64,
    what: &str,
) -> Result<(), JitError> {
    let limit = profile.limits.max_compute_workgroup_storage_size as u64;
    if shared > limit {
        return Err(illegal(
            family,
            config,
            format!("{what} {shared} bytes of workgroup memory, above {limit}"),
        ));
    }
    Ok(())
}

/// Number of workgroups for `n` invocations of `wg`, spread over x and y within the limit.
pub(crate) fn linear_dispatch(n: u64, wg: u32) -> [u32; 3] {
    crate::spec::dispatch_2d(crate::spec::div_ceil(n, wg as u64), MAX_GROUPS_PER_DIM)
}

/// `enable` lines (and notes) heading a kernel that may multiply in f16.
pub(crate) fn enables(f16: bool, note: &str) -> String {
    let mut s = String::new();
    if f16 {
        s.push_str("enable f16;\n");
    }
    s.push_str(note);
    s
}

/// The vector type products are taken in.
pub(crate) fn vec_type(f16: bool) -> &'static str {
    if f16 {
        "vec4<f16>"
    } else {
        "vec4<f32>"
    }
}

/// Kernel variants that the workspace's space sweep (tests/tests/spaces.rs) does not render:
/// every config of each, on every synthetic profile, must render and validate.
#[cfg(test)]
mod variant_tests {
    use super::pool::PoolSpec;
    use super::rowwise::{RowOp, RowwiseSpec};
    use crate::{compile, DeviceProfile, KernelSpec};

    fn every_config_compiles<S: KernelSpec>(spec: &S) {
        for profile in DeviceProfile::synthetic_profiles() {
            let space = spec.space(&profile);
            assert!(!space.is_empty(), "{}: empty space", spec.family());
            for cfg in &space {
                compile(spec, &profile, cfg)
                    .unwrap_or_else(|e| panic!("{} on {}: {e}", spec.key(cfg), profile.name));
            }
        }
    }

    #[test]
    fn pool_rows_forms_compile() {
        for (norm, l2) in [(true, false), (false, true), (true, true)] {
            for dim in [384, 13] {
                every_config_compiles(&PoolSpec {
                    batch: 3,
                    seq: 17,
                    dim,
                    norm,
                    l2,
                });
            }
        }
    }

    #[test]
    fn fused_rowwise_ops_compile() {
        for op in [RowOp::RmsNormAdd, RowOp::RmsNormAddNorm, RowOp::AddNorm] {
            for cols in [384, 13] {
                every_config_compiles(&RowwiseSpec { op, rows: 3, cols });
            }
        }
    }
}
