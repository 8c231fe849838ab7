//! What the JIT knows about a device: limits and features that change which kernels are legal.
//!
//! A `DeviceProfile` is plain data so that kernel spaces can be enumerated and validated on a
//! machine without a GPU (see the synthetic presets below).

use serde::{Deserialize, Serialize};

/// Limits that shape kernel configs. Names follow the WebGPU spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileLimits {
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_size_x: u32,
    pub max_compute_workgroup_size_y: u32,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_workgroups_per_dimension: u32,
    pub max_storage_buffers_per_shader_stage: u32,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub min_storage_buffer_offset_alignment: u32,
    pub min_uniform_buffer_offset_alignment: u32,
}

impl ProfileLimits {
    /// The limits every WebGPU implementation must offer (the spec's defaults).
    pub fn webgpu_default() -> Self {
        Self {
            max_compute_invocations_per_workgroup: 256,
            max_compute_workgroup_size_x: 256,
            max_compute_workgroup_size_y: 256,
            max_compute_workgroup_storage_size: 16384,
            max_compute_workgroups_per_dimension: 65535,
            max_storage_buffers_per_shader_stage: 8,
            max_storage_buffer_binding_size: 128 << 20,
            max_buffer_size: 256 << 20,
            min_storage_buffer_offset_alignment: 256,
            min_uniform_buffer_offset_alignment: 256,
        }
    }
}

/// Subgroup support: the device guarantees a size in `[min_size, max_size]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subgroups {
    pub min_size: u32,
    pub max_size: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceProfile {
    /// Human-readable adapter name, e.g. "llvmpipe (LLVM 15.0.7, 256 bits)".
    pub name: String,
    pub vendor: u32,
    pub device: u32,
    /// "vulkan", "metal", "dx12", "gl", "browser-webgpu", or "synthetic".
    pub backend: String,
    pub driver: String,
    pub limits: ProfileLimits,
    /// `shader-f16` is usable.
    pub f16: bool,
    /// Subgroup operations are usable from WGSL as compiled for this device.
    pub subgroups: Option<Subgroups>,
    /// Timestamp queries may be written inside compute passes.
    pub timestamps: bool,
    /// Shaders are compiled without bounds checks (benchmarks' `--unchecked`). Kernels then
    /// run at other speeds, so tuning records made one way must not serve the other: the flag
    /// is part of the fingerprint, and absent from it (as before) when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unchecked_shaders: bool,
    /// Shaders are compiled with wgpu's loop bounding (a counter injected into every loop;
    /// `DeviceOptions::loop_bounding`). It keeps drivers from unrolling loops and from keeping
    /// small arrays in registers, so kernels run at other speeds: part of the fingerprint, and
    /// absent from it when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub loop_bounding: bool,
    /// The adapter runs shaders on the CPU (Mesa lavapipe, SwiftShader; wgpu's
    /// `DeviceType::Cpu`, a browser's fallback adapter). Workgroup barriers and many small
    /// workgroups are expensive there, so several kernels default to configs without them.
    /// Part of the fingerprint; absent when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cpu: bool,
    /// Prefill matmuls multiply in f16 (sums stay f32) by default: `None` where the device has
    /// `shader-f16` and 32-lane subgroups (GPUs, where f16 tiles are 1.3-1.5x faster),
    /// `Some(true)` on any device with `shader-f16`, `Some(false)` never. Part of the
    /// fingerprint only when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f16_prefill: Option<bool>,
}

impl DeviceProfile {
    /// Whether prefill matmuls default to f16 multiplies on this device.
    pub fn prefers_f16_prefill(&self) -> bool {
        let wide = self.subgroups.as_ref().is_some_and(|s| s.max_size >= 32);
        self.f16 && self.f16_prefill.unwrap_or(wide)
    }
}

impl DeviceProfile {
    /// SwiftShader as Chrome exposes it: the WebGPU floor, 10 storage buffers, no f16, no subgroups.
    pub fn swiftshader_like() -> Self {
        let mut limits = ProfileLimits::webgpu_default();
        limits.max_storage_buffers_per_shader_stage = 10;
        Self {
            name: "synthetic swiftshader".into(),
            vendor: 0x1AE0,
            device: 0xC0DE,
            backend: "synthetic".into(),
            driver: "synthetic".into(),
            limits,
            f16: false,
            subgroups: None,
            timestamps: false,
            unchecked_shaders: false,
            loop_bounding: false,
            cpu: true,
            f16_prefill: None,
        }
    }

    /// Mesa lavapipe: f16, subgroups of 8, 128 MiB bindings.
    pub fn lavapipe_like() -> Self {
        let mut limits = ProfileLimits::webgpu_default();
        limits.max_compute_invocations_per_workgroup = 1024;
        limits.max_compute_workgroup_size_x = 1024;
        limits.max_compute_workgroup_size_y = 1024;
        limits.max_compute_workgroup_storage_size = 32768;
        limits.max_storage_buffers_per_shader_stage = 16;
        limits.max_buffer_size = 1 << 31;
        Self {
            name: "synthetic lavapipe".into(),
            vendor: 0x10005,
            device: 0,
            backend: "synthetic".into(),
            driver: "synthetic".into(),
            limits,
            f16: true,
            subgroups: Some(Subgroups {
                min_size: 8,
                max_size: 8,
            }),
            timestamps: true,
            unchecked_shaders: false,
            loop_bounding: false,
            cpu: true,
            f16_prefill: None,
        }
    }

    /// A discrete GPU: f16, subgroups of 32, 1024 invocations, 2 GiB bindings.
    pub fn discrete_like() -> Self {
        let mut limits = ProfileLimits::webgpu_default();
        limits.max_compute_invocations_per_workgroup = 1024;
        limits.max_compute_workgroup_size_x = 1024;
        limits.max_compute_workgroup_size_y = 1024;
        limits.max_compute_workgroup_storage_size = 49152;
        limits.max_storage_buffers_per_shader_stage = 16;
        limits.max_storage_buffer_binding_size = (2u64 << 30) - 4;
        limits.max_buffer_size = 1 << 40;
        Self {
            name: "synthetic discrete".into(),
            vendor: 0x10DE,
            device: 0x2330,
            backend: "synthetic".into(),
            driver: "synthetic".into(),
            limits,
            f16: true,
            subgroups: Some(Subgroups {
                min_size: 32,
                max_size: 32,
            }),
            timestamps: true,
            unchecked_shaders: false,
            loop_bounding: false,
            cpu: false,
            f16_prefill: None,
        }
    }

    /// The three synthetic profiles every kernel space is validated against.
    pub fn synthetic_profiles() -> Vec<Self> {
        vec![
            Self::swiftshader_like(),
            Self::lavapipe_like(),
            Self::discrete_like(),
        ]
    }

    /// Stable identifier for tuning records: changes when anything that affects kernel
    /// legality or speed changes (adapter, driver, backend, limits, features).
    pub fn fingerprint(&self) -> String {
        // FNV-1a over the canonical JSON: stable across runs and platforms, no extra dependency.
        let canonical = serde_json::to_string(self).unwrap_or_default();
        let mut h: u64 = 0xcbf29ce484222325;
        for b in canonical.as_bytes() {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        format!(
            "{:04x}-{:04x}-{:016x}",
            self.vendor & 0xffff,
            self.device & 0xffff,
            h
        )
    }

    /// Largest number of elements of `elem_bytes` that one storage binding can hold.
    pub fn max_binding_elems(&self, elem_bytes: u64) -> u64 {
        self.limits.max_storage_buffer_binding_size / elem_bytes.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_differ_between_profiles_and_are_stable() {
        let a = DeviceProfile::swiftshader_like();
        let b = DeviceProfile::lavapipe_like();
        assert_eq!(
            a.fingerprint(),
            DeviceProfile::swiftshader_like().fingerprint()
        );
        assert_ne!(a.fingerprint(), b.fingerprint());
        let mut c = a.clone();
        c.f16 = true;
        assert_ne!(a.fingerprint(), c.fingerprint());
        // Unchecked shaders get records of their own; checked ones keep the old fingerprint.
        let mut u = a.clone();
        u.unchecked_shaders = true;
        assert_ne!(a.fingerprint(), u.fingerprint());
        assert!(!serde_json::to_string(&a).unwrap().contains("unchecked"));
        let mut lb = a.clone();
        lb.loop_bounding = true;
        assert_ne!(a.fingerprint(), lb.fingerprint());
        assert!(!serde_json::to_string(&a).unwrap().contains("loop_bounding"));
    }
}
