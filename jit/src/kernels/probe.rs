//! FMA throughput probe: measures the device's f32 FMA rate for benchmark reports.

use crate::error::JitError;
use crate::profile::DeviceProfile;
use crate::render::{render, section};
use crate::shaders::PROBE;
use crate::spec::{dispatch_2d, BindingDecl, KernelSpec};

/// `groups` workgroups of 256 invocations, `iters` iterations of 32 FMAs each.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeSpec {
    pub groups: u32,
}

impl ProbeSpec {
    pub const FLOPS_PER_ITER_PER_INVOCATION: f64 = 64.0;
    pub const WG: u32 = 256;
}

impl KernelSpec for ProbeSpec {
    type Config = ();

    fn family(&self) -> &'static str {
        "probe"
    }
    fn key(&self, _cfg: &()) -> String {
        "probe.fma.f32.wg256".into()
    }
    fn bindings(&self, _cfg: &()) -> Vec<BindingDecl> {
        vec![
            BindingDecl::uniform(0, "p"),
            BindingDecl::read_write(1, "out"),
        ]
    }
    fn render(&self, cfg: &()) -> Result<String, JitError> {
        render(
            "probe.wgsl",
            section("probe.wgsl", PROBE, "main")?,
            &[("KEY", self.key(cfg))],
        )
    }
    fn dispatch(&self, _cfg: &()) -> [u32; 3] {
        dispatch_2d(self.groups, 65535)
    }
    fn check(&self, profile: &DeviceProfile, cfg: &()) -> Result<(), JitError> {
        crate::kernels::check_workgroup(self.family(), &self.key(cfg), profile, Self::WG)
    }
    fn space(&self, _profile: &DeviceProfile) -> Vec<()> {
        vec![()]
    }
    fn default_config(&self, _profile: &DeviceProfile) {}
}
