//! The `KernelSpec` trait: a problem (what to compute) plus a config (how) becomes a readable
//! key, a binding list, WGSL, override constants and a dispatch size.

use std::fmt::Debug;

use crate::error::JitError;
use crate::profile::DeviceProfile;

/// How a shader sees one binding of bind group 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Uniform,
    ReadOnly,
    ReadWrite,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingDecl {
    pub binding: u32,
    /// The WGSL variable name (informational; reflection compares index and access).
    pub name: &'static str,
    pub access: Access,
}

impl BindingDecl {
    pub const fn uniform(binding: u32, name: &'static str) -> Self {
        Self {
            binding,
            name,
            access: Access::Uniform,
        }
    }
    pub const fn read(binding: u32, name: &'static str) -> Self {
        Self {
            binding,
            name,
            access: Access::ReadOnly,
        }
    }
    pub const fn read_write(binding: u32, name: &'static str) -> Self {
        Self {
            binding,
            name,
            access: Access::ReadWrite,
        }
    }
}

/// A 64-bit hash of a problem, for `KernelSpec::memo_key`.
pub fn hash_of<T: std::hash::Hash>(x: &T) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    x.hash(&mut h);
    h.finish()
}

/// A kernel family. `Self` is the problem: formats, flags and sizes. Sizes that vary between
/// calls go to uniforms and never into the WGSL, so one pipeline serves every size.
pub trait KernelSpec {
    type Config: Clone + Debug + PartialEq + Send + Sync + 'static;

    /// Family name, the first component of every key (e.g. `matmul`).
    fn family(&self) -> &'static str;
    /// Stable readable key: family, the problem's structural flags, and the config.
    fn key(&self, cfg: &Self::Config) -> String;
    fn bindings(&self, cfg: &Self::Config) -> Vec<BindingDecl>;
    /// WGSL source. Must begin with a comment carrying the key.
    fn render(&self, cfg: &Self::Config) -> Result<String, JitError>;
    /// Values for the WGSL `override` constants.
    fn overrides(&self, _cfg: &Self::Config) -> Vec<(String, f64)> {
        Vec::new()
    }
    /// Workgroup counts for this problem's sizes.
    fn dispatch(&self, cfg: &Self::Config) -> [u32; 3];
    /// Rejects configs that are illegal for this problem on this device, saying why.
    fn check(&self, profile: &DeviceProfile, cfg: &Self::Config) -> Result<(), JitError>;
    /// Every legal config for this problem on this device: the tuner's search space.
    fn space(&self, profile: &DeviceProfile) -> Vec<Self::Config>;
    /// The heuristic config served before (or without) tuning. Always legal.
    fn default_config(&self, profile: &DeviceProfile) -> Self::Config;
    /// What a tuning record is filed under: the family, the problem's structural flags and its
    /// sizes rounded to power-of-two buckets (`matmul.f32.nt|m128.n1024.k1024`). Problems with
    /// the same tune key share a winner. The default files everything of a family together.
    fn tune_key(&self) -> String {
        format!("{}|any", self.family())
    }
    /// A cheap hash of the whole problem (every field that `check`, `default_config` or
    /// `tune_key` reads), letting the engine remember the config and pipeline it chose for
    /// this exact problem instead of formatting keys on every dispatch. `None` (the default)
    /// opts out.
    fn memo_key(&self) -> Option<u64> {
        None
    }
    /// The output tolerance (NMSE against the default config's output) of an approximate
    /// config, such as the int8 matvec whose activations are rounded to 8 bits; `None` (the
    /// default) for configs that compute the same sums as the default up to f32 rounding.
    fn approximate(&self, _cfg: &Self::Config) -> Option<f64> {
        None
    }
    /// The arithmetic a config multiplies in ("f32", "f16"). The tuner compares only
    /// candidates of the default's arithmetic: the others' outputs differ from the default's
    /// by more than summation order and would be rejected after a wasted run.
    fn arithmetic(&self, _cfg: &Self::Config) -> &'static str {
        "f32"
    }
    /// Config named by `key` (as printed by `key`), if it is in this problem's space.
    fn config_by_key(&self, profile: &DeviceProfile, key: &str) -> Result<Self::Config, JitError> {
        self.space(profile)
            .into_iter()
            .find(|c| self.key(c) == key)
            .ok_or_else(|| JitError::UnknownConfigKey {
                family: self.family().into(),
                key: key.into(),
            })
    }
}

/// WGSL declaration of a `#[repr(C)]` uniform struct, generated from its Rust definition.
pub trait UniformStruct: bytemuck::Pod {
    fn wgsl_decl() -> String;
}

/// Defines a `#[repr(C)]` uniform struct of 4-byte scalars (`u32`, `i32`, `f32`) together with its
/// WGSL declaration, so the Rust and WGSL layouts cannot drift apart.
#[macro_export]
macro_rules! uniform_struct {
    ($(#[$m:meta])* $name:ident { $($field:ident : $ty:ident),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name { $(pub $field: $ty),* }
        impl $crate::spec::UniformStruct for $name {
            fn wgsl_decl() -> String {
                let mut s = format!("struct {} {{\n", stringify!($name));
                $( s.push_str(&format!("    {}: {},\n", stringify!($field), stringify!($ty))); )*
                s.push_str("}\n");
                s
            }
        }
    };
}

/// Ceil division for dispatch sizes.
pub fn div_ceil(a: u64, b: u64) -> u32 {
    a.div_ceil(b.max(1)).min(u32::MAX as u64) as u32
}

/// Spreads `groups` workgroups over x and y so neither exceeds the per-dimension limit.
/// Kernels recover the linear index as `wid.x + wid.y * num_workgroups.x`.
pub fn dispatch_2d(groups: u32, max_per_dim: u32) -> [u32; 3] {
    if groups <= max_per_dim {
        [groups.max(1), 1, 1]
    } else {
        let y = groups.div_ceil(max_per_dim);
        [groups.div_ceil(y), y, 1]
    }
}
