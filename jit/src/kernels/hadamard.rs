//! The Walsh-Hadamard rotation of rows in blocks (`shaders/hadamard.wgsl`): what a quantized KV
//! cache's keys and the queries meeting them go through (llama.cpp does the same before its
//! quantized caches), so attention logits are unchanged while the keys' blocks of 32 lose
//! their outliers and round with less error. The decode step does it inside `qk_rope`; this
//! kernel serves prompts.

use crate::error::JitError;
use crate::kernels::{check_workgroup, illegal, MAX_GROUPS_PER_DIM, WORKGROUP_SIZES};
use crate::profile::DeviceProfile;
use crate::render::{render, section};
use crate::shaders::HADAMARD;
use crate::spec::{dispatch_2d, BindingDecl, KernelSpec, UniformStruct};

crate::uniform_struct!(
    /// Uniforms of `hadamard.wgsl`.
    HadamardParams { rows: u32 }
);

/// x [rows, width] f32 times the orthonormal `block` x `block` Walsh-Hadamard matrix in blocks
/// along each row; `block` is a power of two dividing `width`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HadamardSpec {
    pub rows: u64,
    pub width: u64,
    pub block: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HadamardConfig {
    pub wg: u32,
}

impl HadamardSpec {
    pub fn params(&self) -> HadamardParams {
        HadamardParams {
            rows: self.rows as u32,
        }
    }
}

/// The WGSL constants of a `block`-wide rotation (`HW`, `HW_SCALE`) that the `butterflies`
/// section needs, for kernels that hold a row of `HD` values in a workgroup array `row`.
pub fn butterfly_wgsl(block: u64) -> Result<(String, &'static str), JitError> {
    let f = "hadamard.wgsl";
    let consts = render(
        f,
        section(f, HADAMARD, "consts")?,
        &[
            ("HW", block.to_string()),
            (
                "HW_SCALE",
                format!("{:?}", (1.0 / (block as f64).sqrt()) as f32),
            ),
        ],
    )?;
    Ok((consts, section(f, HADAMARD, "butterflies")?))
}

/// Why a rotation of `block` dims does not fit rows of `width`, if it does not.
pub fn check_block(width: u64, block: u64) -> Result<(), String> {
    if block < 2 || !block.is_power_of_two() || width == 0 || !width.is_multiple_of(block) {
        return Err(format!(
            "a Walsh-Hadamard rotation of {block} dims needs a power of two >= 2 dividing the \
             row's {width}"
        ));
    }
    Ok(())
}

impl KernelSpec for HadamardSpec {
    type Config = HadamardConfig;

    fn memo_key(&self) -> Option<u64> {
        Some(crate::spec::hash_of(self))
    }

    fn family(&self) -> &'static str {
        "hadamard"
    }

    fn tune_key(&self) -> String {
        use crate::tune::bucket;
        format!(
            "hadamard.b{}|r{}.w{}",
            self.block,
            bucket(self.rows),
            bucket(self.width)
        )
    }

    fn key(&self, cfg: &HadamardConfig) -> String {
        format!("hadamard.w{}.b{}.wg{}", self.width, self.block, cfg.wg)
    }

    fn bindings(&self, _cfg: &HadamardConfig) -> Vec<BindingDecl> {
        vec![
            BindingDecl::uniform(0, "p"),
            BindingDecl::read(1, "x"),
            BindingDecl::read_write(2, "y"),
        ]
    }

    fn render(&self, cfg: &HadamardConfig) -> Result<String, JitError> {
        let f = "hadamard.wgsl";
        let (consts, butterflies) = butterfly_wgsl(self.block)?;
        render(
            f,
            section(f, HADAMARD, "main")?,
            &[
                ("KEY", self.key(cfg)),
                ("PARAMS", HadamardParams::wgsl_decl()),
                ("WG", cfg.wg.to_string()),
                ("HD", self.width.to_string()),
                ("CONSTS", consts),
                ("BUTTERFLIES", butterflies.into()),
            ],
        )
    }

    fn dispatch(&self, _cfg: &HadamardConfig) -> [u32; 3] {
        dispatch_2d(self.rows.min(u32::MAX as u64) as u32, MAX_GROUPS_PER_DIM)
    }

    fn check(&self, profile: &DeviceProfile, cfg: &HadamardConfig) -> Result<(), JitError> {
        let fam = self.family();
        let key = self.key(cfg);
        check_block(self.width, self.block).map_err(|reason| JitError::UnsupportedProblem {
            family: fam.into(),
            reason,
        })?;
        if self.rows > MAX_GROUPS_PER_DIM as u64 * MAX_GROUPS_PER_DIM as u64 {
            return Err(JitError::UnsupportedProblem {
                family: fam.into(),
                reason: format!("{} rows", self.rows),
            });
        }
        check_workgroup(fam, &key, profile, cfg.wg)?;
        let shared = 4 * self.width;
        let max = profile.limits.max_compute_workgroup_storage_size as u64;
        if shared > max {
            return Err(illegal(
                fam,
                &key,
                format!("needs {shared} bytes of workgroup memory, the device has {max}"),
            ));
        }
        Ok(())
    }

    fn space(&self, profile: &DeviceProfile) -> Vec<HadamardConfig> {
        WORKGROUP_SIZES
            .iter()
            .map(|&wg| HadamardConfig { wg })
            .filter(|c| self.check(profile, c).is_ok())
            .collect()
    }

    fn default_config(&self, profile: &DeviceProfile) -> HadamardConfig {
        // One invocation per butterfly of a stage, within 32..=256.
        let want = (self.width / 2).next_power_of_two().clamp(32, 256) as u32;
        for wg in [want, 64, 32] {
            let c = HadamardConfig { wg };
            if self.check(profile, &c).is_ok() {
                return c;
            }
        }
        HadamardConfig { wg: 32 }
    }
}
