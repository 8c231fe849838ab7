//! Kernel families, one file each.

pub mod attention;
pub mod attention_decode;
pub mod bandwidth;
pub mod block_sparse;
pub mod elementwise;
pub mod embedding;
pub mod matmul;
mod matmul_render;
pub mod neighborhood;
pub mod pool;
pub mod probe;
pub mod qk_rope;
pub mod qmatmul;
pub mod qmatvec;
pub mod qmatvec_i8;
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
