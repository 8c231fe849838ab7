//! Kernel families, one file each.

pub mod attention;
pub mod attention_decode;
pub mod bandwidth;
pub mod block_sparse;
pub mod elementwise;
pub mod embedding;
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

pub(crate) fn illegal(family: &str, config: &str, reason: impl Into<String>) -> JitError {
    JitError::IllegalConfig {
        family: family.into(),
        config: config.into(),
        reason: reason.into(),
    }
}

/// Workgroups per dispatch dimension that every WebGPU device allows.
pub const MAX_GROUPS_PER_DIM: u32 = 65535;

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
