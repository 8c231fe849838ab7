//! A decode step's q/k preparation fused into one dispatch: per-head RMSNorm of q and k
//! (optional: Gemma 3 has q/k norms, llama does not), RoPE on both, and the new K and V rows
//! written into the KV cache at their slots (linear or ring). Decoding runs this once per
//! layer instead of up to five dispatches (q norm, k norm, q rope, k rope, KV append).

use crate::error::JitError;
use crate::kernels::attention_decode::KvDType;
use crate::kernels::hadamard::{butterfly_wgsl, check_block};
use crate::kernels::rope::RopeLayout;
use crate::kernels::{check_workgroup, illegal, MAX_GROUPS_PER_DIM, WORKGROUP_SIZES};
use crate::profile::DeviceProfile;
use crate::render::{render, section};
use crate::shaders::{QK_ROPE, REDUCE};
use crate::spec::{dispatch_2d, BindingDecl, KernelSpec, UniformStruct};

crate::uniform_struct!(
    /// Uniforms of `qk_rope.wgsl`: the new rows go to slots `(pos + t) % capacity`.
    QkRopeParams { tokens: u32, capacity: u32, pos: u32, eps: f32, w_offset: f32, q_off: u32, k_off: u32, v_off: u32 }
);

/// q [tokens, n_heads, head_dim], k and v [tokens, n_kv_heads, head_dim] f32, a cache of one
/// batch row; the first `rot` dims of each head are rotated.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QkRopeSpec {
    pub layout: RopeLayout,
    pub tokens: u64,
    pub n_heads: u64,
    pub n_kv_heads: u64,
    pub head_dim: u64,
    pub rot: u64,
    /// Per-head RMSNorm of q and k before the rotation.
    pub norm: bool,
    pub kv_dtype: KvDType,
    /// q and k rotated after RoPE by the orthonormal Walsh-Hadamard matrix of this many dims,
    /// in blocks along the head (`KvDType::key_rotation`); 0: not rotated.
    pub hadamard: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QkRopeConfig {
    pub wg: u32,
}

impl QkRopeSpec {
    pub fn params(&self, capacity: u32, pos: u32, eps: f32, w_offset: f32) -> QkRopeParams {
        QkRopeParams {
            tokens: self.tokens as u32,
            capacity: capacity.max(1),
            pos,
            eps,
            w_offset,
            ..Default::default()
        }
    }

    /// ".wht<n>" in keys when q and k are rotated.
    fn wht_infix(&self) -> String {
        if self.hadamard == 0 {
            String::new()
        } else {
            format!(".wht{}", self.hadamard)
        }
    }

    /// Binding numbers of q_out, the K cache and the V cache (after the optional norms).
    fn out_bindings(&self) -> [u32; 3] {
        let b = if self.norm { 7 } else { 5 };
        [b, b + 1, b + 2]
    }
}

impl KernelSpec for QkRopeSpec {
    type Config = QkRopeConfig;

    fn memo_key(&self) -> Option<u64> {
        Some(crate::spec::hash_of(self))
    }

    fn family(&self) -> &'static str {
        "qk_rope"
    }

    fn tune_key(&self) -> String {
        use crate::tune::bucket;
        format!(
            "qk_rope.{}.{}.{}{}|t{}.h{}.d{}",
            self.layout.name(),
            if self.norm { "norm" } else { "plain" },
            self.kv_dtype.name(),
            self.wht_infix(),
            bucket(self.tokens),
            bucket(self.n_heads + self.n_kv_heads),
            bucket(self.head_dim)
        )
    }

    fn key(&self, cfg: &QkRopeConfig) -> String {
        format!(
            "qk_rope.{}.{}.kv{}{}.h{}x{}.d{}.r{}.wg{}",
            self.layout.name(),
            if self.norm { "norm" } else { "plain" },
            self.kv_dtype.name(),
            self.wht_infix(),
            self.n_heads,
            self.n_kv_heads,
            self.head_dim,
            self.rot,
            cfg.wg
        )
    }

    fn bindings(&self, _cfg: &QkRopeConfig) -> Vec<BindingDecl> {
        let mut b = vec![
            BindingDecl::uniform(0, "p"),
            BindingDecl::read(1, "q"),
            BindingDecl::read(2, "k"),
            BindingDecl::read(3, "v"),
            BindingDecl::read(4, "cs"),
        ];
        if self.norm {
            b.push(BindingDecl::read(5, "qn"));
            b.push(BindingDecl::read(6, "kn"));
        }
        let [qo, kc, vc] = self.out_bindings();
        b.push(BindingDecl::read_write(qo, "q_out"));
        b.push(BindingDecl::read_write(kc, "kc"));
        b.push(BindingDecl::read_write(vc, "vc"));
        b
    }

    fn render(&self, cfg: &QkRopeConfig) -> Result<String, JitError> {
        let f = "qk_rope.wgsl";
        let (i0, i1) = match self.layout {
            RopeLayout::Neox => ("j", "j + HALF_ROT"),
            RopeLayout::Normal => ("2u * j", "2u * j + 1u"),
        };
        let (decl, norm) = if self.norm {
            (
                section(f, QK_ROPE, "norm_decl")?,
                section(f, QK_ROPE, "norm")?,
            )
        } else {
            ("", "")
        };
        let [qo, kc, vc] = self.out_bindings();
        let (wht_consts, wht) = if self.hadamard == 0 {
            (String::new(), "")
        } else {
            butterfly_wgsl(self.hadamard)?
        };
        render(
            f,
            section(f, QK_ROPE, "main")?,
            &[
                ("KEY", self.key(cfg)),
                ("PARAMS", QkRopeParams::wgsl_decl()),
                ("WG", cfg.wg.to_string()),
                ("HD", self.head_dim.to_string()),
                ("HQ", self.n_heads.to_string()),
                ("HK", self.n_kv_heads.to_string()),
                ("HALF_ROT", (self.rot / 2).to_string()),
                ("KV", self.kv_dtype.wgsl(self.head_dim, true)?),
                (
                    "KV_WRITE",
                    section(f, QK_ROPE, kv_write(self.kv_dtype))?.into(),
                ),
                (
                    "REDUCE",
                    section("reduce.wgsl", REDUCE, "workgroup")?.into(),
                ),
                ("NORM_DECL", decl.into()),
                ("NORM", norm.into()),
                ("B_QOUT", qo.to_string()),
                ("B_KC", kc.to_string()),
                ("B_VC", vc.to_string()),
                ("I0", i0.into()),
                ("I1", i1.into()),
                ("WHT_CONSTS", wht_consts),
                ("WHT", wht.into()),
            ],
        )
    }

    fn dispatch(&self, _cfg: &QkRopeConfig) -> [u32; 3] {
        let groups = self.tokens * (self.n_heads + self.n_kv_heads);
        dispatch_2d(groups.min(u32::MAX as u64) as u32, MAX_GROUPS_PER_DIM)
    }

    fn check(&self, profile: &DeviceProfile, cfg: &QkRopeConfig) -> Result<(), JitError> {
        let fam = self.family();
        let key = self.key(cfg);
        check_workgroup(fam, &key, profile, cfg.wg)?;
        if !cfg.wg.is_power_of_two() {
            return Err(illegal(
                fam,
                &key,
                "the tree reduction needs a power-of-two workgroup",
            ));
        }
        let d = self.head_dim;
        if d == 0
            || !d.is_multiple_of(4)
            || self.rot == 0
            || !self.rot.is_multiple_of(2)
            || self.rot > d
        {
            return Err(JitError::UnsupportedProblem {
                family: fam.into(),
                reason: format!(
                    "head dim {d} must be a positive multiple of 4 and rotary dims {} even, \
                     positive and <= head dim",
                    self.rot
                ),
            });
        }
        if self.n_heads == 0
            || self.n_kv_heads == 0
            || !self.n_heads.is_multiple_of(self.n_kv_heads)
        {
            return Err(JitError::UnsupportedProblem {
                family: fam.into(),
                reason: format!(
                    "{} query heads must be a positive multiple of {} kv heads",
                    self.n_heads, self.n_kv_heads
                ),
            });
        }
        crate::kernels::attention_decode::check_kv_dtype(fam, self.kv_dtype, d)?;
        if self.hadamard != 0 {
            check_block(d, self.hadamard).map_err(|reason| JitError::UnsupportedProblem {
                family: fam.into(),
                reason,
            })?;
        }
        let groups = self.tokens * (self.n_heads + self.n_kv_heads);
        if self.tokens == 0 || groups > MAX_GROUPS_PER_DIM as u64 * MAX_GROUPS_PER_DIM as u64 {
            return Err(JitError::UnsupportedProblem {
                family: fam.into(),
                reason: format!("{} tokens", self.tokens),
            });
        }
        let shared = 4 * (d + cfg.wg as u64);
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

    fn space(&self, profile: &DeviceProfile) -> Vec<QkRopeConfig> {
        WORKGROUP_SIZES
            .iter()
            .map(|&wg| QkRopeConfig { wg })
            .filter(|c| self.check(profile, c).is_ok())
            .collect()
    }

    fn default_config(&self, profile: &DeviceProfile) -> QkRopeConfig {
        // About one invocation per rotated pair, within 32..=256.
        let want = (self.head_dim / 2).next_power_of_two().clamp(32, 256) as u32;
        for wg in [want, 64, 32] {
            let c = QkRopeConfig { wg };
            if self.check(profile, &c).is_ok() {
                return c;
            }
        }
        QkRopeConfig { wg: 32 }
    }
}

/// The qk_rope.wgsl section that writes a k workgroup's K and V rows into the cache.
fn kv_write(dtype: KvDType) -> &'static str {
    match (dtype.quantized(), dtype) {
        (_, KvDType::Kivi2) => "kv_write_kivi",
        (true, _) => "kv_write_quant",
        (false, _) => "kv_write_dense",
    }
}
