//! Streaming-read probe: the device's achievable read bandwidth, the yardstick of the
//! bandwidth-bound kernels (qmatvec must reach >= 70% of it).

use crate::error::JitError;
use crate::kernels::check_workgroup;
use crate::profile::DeviceProfile;
use crate::render::{render, section};
use crate::shaders::BANDWIDTH;
use crate::spec::{dispatch_2d, BindingDecl, KernelSpec, UniformStruct};

crate::uniform_struct!(
    /// Uniforms of `bandwidth.wgsl`: `len` counts vec4<u32> elements.
    ReadParams { len: u32, pad0: u32, pad1: u32, pad2: u32 }
);

/// Reads `bytes` (a multiple of 16) with `groups` workgroups.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadProbeSpec {
    pub bytes: u64,
    pub groups: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadProbeConfig {
    pub wg: u32,
}

impl ReadProbeSpec {
    pub fn params(&self) -> ReadParams {
        ReadParams {
            len: (self.bytes / 16) as u32,
            ..Default::default()
        }
    }
    pub fn invocations(&self, cfg: &ReadProbeConfig) -> u64 {
        let [x, y, _] = self.dispatch(cfg);
        x as u64 * y as u64 * cfg.wg as u64
    }
}

impl KernelSpec for ReadProbeSpec {
    type Config = ReadProbeConfig;
    fn family(&self) -> &'static str {
        "readprobe"
    }
    fn key(&self, cfg: &ReadProbeConfig) -> String {
        format!("readprobe.vec4u32.wg{}", cfg.wg)
    }
    fn bindings(&self, _cfg: &ReadProbeConfig) -> Vec<BindingDecl> {
        vec![
            BindingDecl::uniform(0, "p"),
            BindingDecl::read(1, "src"),
            BindingDecl::read_write(2, "out"),
        ]
    }
    fn render(&self, cfg: &ReadProbeConfig) -> Result<String, JitError> {
        render(
            "bandwidth.wgsl",
            section("bandwidth.wgsl", BANDWIDTH, "main")?,
            &[
                ("KEY", self.key(cfg)),
                ("PARAMS", ReadParams::wgsl_decl()),
                ("WG", cfg.wg.to_string()),
            ],
        )
    }
    fn dispatch(&self, _cfg: &ReadProbeConfig) -> [u32; 3] {
        dispatch_2d(self.groups.max(1), 65535)
    }
    fn check(&self, profile: &DeviceProfile, cfg: &ReadProbeConfig) -> Result<(), JitError> {
        check_workgroup(self.family(), &self.key(cfg), profile, cfg.wg)?;
        if !self.bytes.is_multiple_of(16) || self.bytes / 16 > u32::MAX as u64 {
            return Err(JitError::UnsupportedProblem {
                family: self.family().into(),
                reason: format!("{} bytes: need a multiple of 16 below 2^36", self.bytes),
            });
        }
        Ok(())
    }
    fn space(&self, profile: &DeviceProfile) -> Vec<ReadProbeConfig> {
        [64, 128, 256]
            .into_iter()
            .map(|wg| ReadProbeConfig { wg })
            .filter(|c| self.check(profile, c).is_ok())
            .collect()
    }
    fn default_config(&self, _profile: &DeviceProfile) -> ReadProbeConfig {
        ReadProbeConfig { wg: 256 }
    }
}
