//! The kivi2 KV cache's flush: quantizes the key and value groups that an append completed
//! (format: kv_dtype.rs and shaders/kivi.wgsl). The residual write of a prompt is
//! `KvAppendSpec` with `KvDType::Kivi2`; a decode step's is qk_rope's `kv_write_kivi`.

use crate::error::JitError;
use crate::kernels::attention_decode::check_kv_dtype;
use crate::kernels::kv_dtype::{KvDType, KIVI_G};
use crate::kernels::{check_shared, check_workgroup, groups_dispatch};
use crate::profile::DeviceProfile;
use crate::render::{render, section};
use crate::shaders::KIVI;
use crate::spec::{BindingDecl, KernelSpec, UniformStruct};

crate::uniform_struct!(
    /// Uniforms of the flush. Positions >= `pos` are rows `pos..pos + n_new` of k_new /
    /// v_new; earlier ones are in the residual window.
    KiviFlushParams { batch: u32, hk: u32, capacity: u32, pos: u32, n_new: u32, g0: u32, n_groups: u32, pad0: u32 }
);

/// Flush of `n_groups` complete groups from group `g0` on.
#[derive(Clone, Debug, PartialEq)]
pub struct KiviFlushSpec {
    pub batch: u64,
    pub n_kv_heads: u64,
    pub head_dim: u64,
    pub n_groups: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KiviFlushConfig {
    pub wg: u32,
}

impl KiviFlushSpec {
    /// The groups that appending `n_new` positions at `pos` completes: (first, count).
    pub fn completed(pos: u64, n_new: u64) -> (u64, u64) {
        let (g0, g1) = (pos / KIVI_G, (pos + n_new) / KIVI_G);
        (g0, g1 - g0)
    }

    pub fn params(&self, capacity: u32, pos: u32, n_new: u32, g0: u32) -> KiviFlushParams {
        KiviFlushParams {
            batch: self.batch as u32,
            hk: self.n_kv_heads as u32,
            capacity,
            pos,
            n_new,
            g0,
            n_groups: self.n_groups as u32,
            pad0: 0,
        }
    }
}

impl KernelSpec for KiviFlushSpec {
    type Config = KiviFlushConfig;

    fn family(&self) -> &'static str {
        "kivi_flush"
    }

    fn key(&self, cfg: &KiviFlushConfig) -> String {
        format!("kivi_flush.d{}.wg{}", self.head_dim, cfg.wg)
    }

    fn bindings(&self, _cfg: &KiviFlushConfig) -> Vec<BindingDecl> {
        vec![
            BindingDecl::uniform(0, "p"),
            BindingDecl::read(1, "k_new"),
            BindingDecl::read(2, "v_new"),
            BindingDecl::read_write(3, "kc"),
            BindingDecl::read_write(4, "vc"),
        ]
    }

    fn render(&self, cfg: &KiviFlushConfig) -> Result<String, JitError> {
        let f = "kivi.wgsl";
        render(
            f,
            section(f, KIVI, "flush")?,
            &[
                ("KEY", self.key(cfg)),
                ("PARAMS", KiviFlushParams::wgsl_decl()),
                ("WG", cfg.wg.to_string()),
                ("KV", KvDType::Kivi2.wgsl(self.head_dim, true)?),
            ],
        )
    }

    fn dispatch(&self, _cfg: &KiviFlushConfig) -> [u32; 3] {
        // One workgroup per (batch, group, kv head): its key channels' halves are shared by
        // the invocations that write the group's code words.
        groups_dispatch(self.batch * self.n_groups * self.n_kv_heads)
    }

    fn check(&self, profile: &DeviceProfile, cfg: &KiviFlushConfig) -> Result<(), JitError> {
        check_kv_dtype(self.family(), KvDType::Kivi2, self.head_dim)?;
        let key = self.key(cfg);
        check_workgroup(self.family(), &key, profile, cfg.wg)?;
        check_shared(
            self.family(),
            &key,
            profile,
            self.head_dim * 16,
            "key channel halves need",
        )
    }

    fn space(&self, profile: &DeviceProfile) -> Vec<KiviFlushConfig> {
        [64, 128]
            .into_iter()
            .map(|wg| KiviFlushConfig { wg })
            .filter(|c| self.check(profile, c).is_ok())
            .collect()
    }

    fn default_config(&self, _profile: &DeviceProfile) -> KiviFlushConfig {
        KiviFlushConfig { wg: 64 }
    }
}
