//! Decode attention against a KV cache (one query row per head), split over the cache length
//! (split-K) with a second pass that merges the splits, plus the cache append kernel.
//!
//! Cache layout: k and v [batch, capacity, n_kv_heads, d], either f32 or f16 packed in pairs
//! into u32 words (`pack2x16float`), which needs no `shader-f16`. The query is
//! [batch, n_heads, d] f32. Logical entry `j` of `kv_len` lives in slot
//! `(kv_start + j) % capacity`, which covers both a linear cache and a ring buffer.

use crate::error::JitError;
use crate::kernels::attention::check_heads;
use crate::kernels::{check_shared, check_workgroup, groups_dispatch, illegal, linear_dispatch};
use crate::profile::DeviceProfile;
use crate::render::{render, section};
use crate::shaders::{ATTENTION_DECODE, KIVI, KIVI_DECODE, KV_QUANT, REDUCE};
use crate::spec::{BindingDecl, KernelSpec, UniformStruct};

crate::uniform_struct!(
    /// Uniforms of both decode passes.
    DecodeParams {
        batch: u32, n_heads: u32, n_kv_heads: u32, group: u32,
        capacity: u32, kv_start: u32, kv_len: u32, split_len: u32,
        n_split: u32, scale: f32, softcap: f32, pad0: u32,
    }
);

crate::uniform_struct!(
    /// Uniforms of the KV append kernel. `row4` = n_kv_heads * d / 4.
    AppendParams { batch: u32, n_new: u32, row4: u32, capacity: u32, pos: u32, first: u32, pad0: u32, pad1: u32 }
);

pub use super::kv_dtype::KvDType;
use super::kv_dtype::KIVI_G;

/// Pass 1: one workgroup per (batch, head, split).
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeSpec {
    pub batch: u64,
    pub n_heads: u64,
    pub n_kv_heads: u64,
    pub head_dim: u64,
    pub kv_dtype: KvDType,
    /// Cache entries attended this step.
    pub kv_len: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeConfig {
    pub wg: u32,
    /// Most splits per (batch, head); fewer are used when the cache is short (every split gets
    /// at least `MIN_SPLIT_KEYS` keys). 1 is the single-pass kernel: one workgroup per
    /// (batch, head) writes the output itself and no merge pass runs.
    pub max_splits: u32,
}

impl DecodeConfig {
    /// One dispatch, no merge pass (`max_splits` 1).
    pub fn single_pass(&self) -> bool {
        self.max_splits == 1
    }
}

/// Fewest cache entries per split. A split shorter than the workgroup leaves invocations idle
/// in the score phase, but a short cache then still spreads over many workgroups: with splits
/// of at least a workgroup's worth of keys, a 513-entry cache of 4 heads ran as 20 workgroups
/// and took 41 us per layer on an H100.
pub const MIN_SPLIT_KEYS: u64 = 16;

/// Invocations that share one key's dot product in the score phase of pass 1 (each sums every
/// 8th vec4 of the head). One invocation per key made each walk a whole 256-wide row alone.
pub const SCORE_LANES: u32 = 8;

/// Keys per score block of the kivi2 kernel (see `DecodeSpec::score_lanes`).
pub const KIVI_KEYS_PER_BLOCK: u32 = 64;

impl DecodeSpec {
    /// Invocations per key in the score phase (`TPK`). A quantized kivi2 key is only head_dim
    /// / 16 words of codes scored against a query scaled once per group, so one invocation
    /// takes a whole key and a block holds more keys, with fewer barriers per key: blocks of
    /// KIVI_KEYS_PER_BLOCK keys (fewer for a workgroup under that), never more than KIVI_G so
    /// that a block spans at most two key groups. On lavapipe (32 heads over 8, d 128, 8192
    /// entries, wg 64) 8 invocations per key took 197 ms, 4 138, 2 117, 1 93.
    pub fn score_lanes(&self, cfg: &DecodeConfig) -> u32 {
        if self.kv_dtype != KvDType::Kivi2 {
            return SCORE_LANES.min(cfg.wg);
        }
        let keys = KIVI_KEYS_PER_BLOCK.min(KIVI_G as u32);
        (cfg.wg / keys).max(1)
    }

    /// (number of splits, entries per split) for this cache length. Long caches get splits
    /// that are whole multiples of the workgroup size.
    pub fn splits(&self, cfg: &DecodeConfig) -> (u32, u32) {
        let kv = self.kv_len.max(1);
        let wg = cfg.wg as u64;
        let n = kv
            .div_ceil(MIN_SPLIT_KEYS)
            .clamp(1, cfg.max_splits.max(1) as u64);
        let mut len = kv.div_ceil(n);
        if len >= wg {
            len = len.div_ceil(wg) * wg;
        }
        let n = kv.div_ceil(len).max(1);
        (
            n.min(u32::MAX as u64) as u32,
            len.min(u32::MAX as u64) as u32,
        )
    }

    pub fn params(
        &self,
        cfg: &DecodeConfig,
        capacity: u32,
        kv_start: u32,
        scale: f32,
        softcap: f32,
    ) -> DecodeParams {
        let (n_split, split_len) = self.splits(cfg);
        DecodeParams {
            batch: self.batch as u32,
            n_heads: self.n_heads as u32,
            n_kv_heads: self.n_kv_heads as u32,
            group: (self.n_heads / self.n_kv_heads.max(1)) as u32,
            capacity: capacity.max(1),
            kv_start,
            kv_len: self.kv_len as u32,
            split_len,
            n_split,
            scale,
            softcap,
            pad0: 0,
        }
    }
}

impl KernelSpec for DecodeSpec {
    type Config = DecodeConfig;

    fn family(&self) -> &'static str {
        "attention_decode"
    }

    fn tune_key(&self) -> String {
        use crate::tune::bucket;
        format!(
            "attention_decode.{}.d{}|b{}.h{}.g{}.kv{}",
            self.kv_dtype.name(),
            self.head_dim,
            bucket(self.batch),
            self.n_heads,
            self.n_heads / self.n_kv_heads.max(1),
            bucket(self.kv_len)
        )
    }

    fn key(&self, cfg: &DecodeConfig) -> String {
        if cfg.single_pass() {
            return format!(
                "attention_decode.single.{}.d{}.wg{}",
                self.kv_dtype.name(),
                self.head_dim,
                cfg.wg
            );
        }
        format!(
            "attention_decode.split.{}.d{}.wg{}.s{}",
            self.kv_dtype.name(),
            self.head_dim,
            cfg.wg,
            cfg.max_splits
        )
    }

    fn bindings(&self, cfg: &DecodeConfig) -> Vec<BindingDecl> {
        let mut b = vec![
            BindingDecl::uniform(0, "p"),
            BindingDecl::read(1, "q"),
            BindingDecl::read(2, "kc"),
            BindingDecl::read(3, "vc"),
        ];
        if cfg.single_pass() {
            b.push(BindingDecl::read_write(4, "out"));
        } else {
            b.push(BindingDecl::read_write(4, "part_ml"));
            b.push(BindingDecl::read_write(5, "part_acc"));
        }
        b
    }

    fn render(&self, cfg: &DecodeConfig) -> Result<String, JitError> {
        let f = "attention_decode.wgsl";
        let (out_decl, store) = if cfg.single_pass() {
            ("out_single", "store_single")
        } else {
            ("out_split", "store_split")
        };
        // kivi2 has its own pass 1 (the same split-K walk and outputs).
        let (name, template) = match self.kv_dtype {
            KvDType::Kivi2 => (
                "kivi_decode.wgsl",
                section("kivi_decode.wgsl", KIVI_DECODE, "decode")?,
            ),
            _ => (f, section(f, ATTENTION_DECODE, "decode_split")?),
        };
        render(
            name,
            template,
            &[
                ("KEY", self.key(cfg)),
                ("OUT_DECL", section(f, ATTENTION_DECODE, out_decl)?.into()),
                ("STORE_OUT", section(f, ATTENTION_DECODE, store)?.into()),
                ("PARAMS", DecodeParams::wgsl_decl()),
                ("D4", (self.head_dim / 4).to_string()),
                ("WG", cfg.wg.to_string()),
                ("TPK", self.score_lanes(cfg).to_string()),
                ("KV", self.kv_dtype.wgsl(self.head_dim, false)?),
            ],
        )
    }

    fn dispatch(&self, cfg: &DecodeConfig) -> [u32; 3] {
        groups_dispatch(self.splits(cfg).0 as u64 * self.n_heads * self.batch)
    }

    fn check(&self, profile: &DeviceProfile, cfg: &DecodeConfig) -> Result<(), JitError> {
        let fam = self.family();
        check_heads(fam, self.n_heads, self.n_kv_heads, self.head_dim)?;
        check_kv_dtype(fam, self.kv_dtype, self.head_dim)?;
        let key = self.key(cfg);
        check_workgroup(fam, &key, profile, cfg.wg)?;
        let d4 = self.head_dim / 4;
        if (cfg.wg as u64) < d4 {
            return Err(illegal(
                fam,
                &key,
                format!(
                    "workgroup of {} cannot cover {d4} vec4 columns of a head",
                    cfg.wg
                ),
            ));
        }
        if cfg.max_splits == 0 || cfg.max_splits > 1024 {
            return Err(illegal(fam, &key, "max splits must be 1..=1024"));
        }
        let mut shared = d4 * 16 + cfg.wg as u64 * (4 + 4 + 4 + 4 + 16);
        if self.kv_dtype == KvDType::Kivi2 {
            // Two key groups' scaled queries and biases (kivi_decode.wgsl).
            shared += 2 * d4 * (16 + 4) + 8;
        }
        check_shared(fam, &key, profile, shared, "needs")
    }

    fn space(&self, profile: &DeviceProfile) -> Vec<DecodeConfig> {
        let mut out = Vec::new();
        for wg in [32, 64, 128, 256] {
            for max_splits in [1, 4, 16, 32, 64, 128, 256] {
                let c = DecodeConfig { wg, max_splits };
                if self.check(profile, &c).is_ok() {
                    out.push(c);
                }
            }
        }
        // Wide single-pass workgroups: a whole short cache in one or two score blocks.
        for wg in [512, 1024] {
            let c = DecodeConfig { wg, max_splits: 1 };
            if self.check(profile, &c).is_ok() {
                out.push(c);
            }
        }
        out
    }

    fn default_config(&self, profile: &DeviceProfile) -> DecodeConfig {
        // Splits grow with the square root of the cache: more splits fill the GPU but make
        // the merge pass longer. Measured on an H100 (4 heads, d 256, f16 cache; `webjit bench
        // attention --decode --sweep`), the fastest were 16 splits at 513 and 640 entries, 32
        // at 2048 and 128 at 32768: about 0.75 * sqrt(len), rounded down in this list. At
        // most ~512 workgroups in all, and never the single-pass kernel by default (one
        // workgroup per head was 1.4-24x slower there).
        // CPU adapters: 4 splits of 64 invocations, the fastest of the sweep at Gemma's decode
        // shape (4 heads, d 256, 512 entries) on SwiftShader and on lavapipe (BENCHMARKS.md,
        // "CPU adapters"; the GPU default below was 2.4x / 1.4x slower there).
        if profile.cpu {
            let c = DecodeConfig {
                wg: 64,
                max_splits: 4,
            };
            if self.check(profile, &c).is_ok() {
                return c;
            }
        }
        let heads = (self.batch * self.n_heads).max(1);
        let want = (512 / heads).clamp(4, 256) as f64;
        let target = (0.75 * (self.kv_len.max(1) as f64).sqrt()).min(want);
        let max_splits = [256, 128, 64, 32, 16, 4]
            .into_iter()
            .find(|&s| s as f64 <= target)
            .unwrap_or(4);
        for wg in [256, 128, 64, 32] {
            let c = DecodeConfig { wg, max_splits };
            if self.check(profile, &c).is_ok() {
                return c;
            }
        }
        DecodeConfig {
            wg: 128,
            max_splits,
        }
    }
}

/// Pass 2: one workgroup per (batch, head) merges `n_split` partial states.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DecodeReduceSpec {
    pub batch: u64,
    pub n_heads: u64,
    pub head_dim: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeReduceConfig {
    pub wg: u32,
}

impl KernelSpec for DecodeReduceSpec {
    type Config = DecodeReduceConfig;

    fn memo_key(&self) -> Option<u64> {
        Some(crate::spec::hash_of(self))
    }

    fn family(&self) -> &'static str {
        "attention_decode_reduce"
    }

    fn tune_key(&self) -> String {
        format!(
            "attention_decode_reduce.d{}|rows{}",
            self.head_dim,
            crate::tune::bucket(self.batch * self.n_heads)
        )
    }

    fn key(&self, cfg: &DecodeReduceConfig) -> String {
        format!("attention_decode.reduce.d{}.wg{}", self.head_dim, cfg.wg)
    }

    fn bindings(&self, _cfg: &DecodeReduceConfig) -> Vec<BindingDecl> {
        vec![
            BindingDecl::uniform(0, "p"),
            BindingDecl::read(1, "part_ml"),
            BindingDecl::read(2, "part_acc"),
            BindingDecl::read_write(3, "out"),
        ]
    }

    fn render(&self, cfg: &DecodeReduceConfig) -> Result<String, JitError> {
        let f = "attention_decode.wgsl";
        render(
            f,
            section(f, ATTENTION_DECODE, "decode_reduce")?,
            &[
                ("KEY", self.key(cfg)),
                (
                    "REDUCE",
                    section("reduce.wgsl", REDUCE, "workgroup")?.into(),
                ),
                ("PARAMS", DecodeParams::wgsl_decl()),
                ("D4", (self.head_dim / 4).to_string()),
                ("WG", cfg.wg.to_string()),
            ],
        )
    }

    fn dispatch(&self, _cfg: &DecodeReduceConfig) -> [u32; 3] {
        groups_dispatch(self.batch * self.n_heads)
    }

    fn check(&self, profile: &DeviceProfile, cfg: &DecodeReduceConfig) -> Result<(), JitError> {
        check_heads(self.family(), self.n_heads, self.n_heads, self.head_dim)?;
        check_workgroup(self.family(), &self.key(cfg), profile, cfg.wg)
    }

    fn space(&self, profile: &DeviceProfile) -> Vec<DecodeReduceConfig> {
        [32, 64, 128]
            .into_iter()
            .map(|wg| DecodeReduceConfig { wg })
            .filter(|c| self.check(profile, c).is_ok())
            .collect()
    }

    fn default_config(&self, profile: &DeviceProfile) -> DecodeReduceConfig {
        // One invocation per vec4 column of the head, within 32..=128.
        let wg = (self.head_dim / 4).next_power_of_two().clamp(32, 128) as u32;
        let c = DecodeReduceConfig { wg };
        if self.check(profile, &c).is_ok() {
            c
        } else {
            DecodeReduceConfig { wg: 32 }
        }
    }
}

/// Appends `n_new` rows of K and V to a cache of `capacity` slots.
#[derive(Clone, Debug, PartialEq)]
pub struct KvAppendSpec {
    pub batch: u64,
    pub n_new: u64,
    pub n_kv_heads: u64,
    pub head_dim: u64,
    pub kv_dtype: KvDType,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvAppendConfig {
    pub wg: u32,
}

impl KvAppendSpec {
    pub fn params(&self, capacity: u32, pos: u32) -> AppendParams {
        let first = self.n_new.saturating_sub(capacity as u64) as u32;
        AppendParams {
            batch: self.batch as u32,
            n_new: self.n_new as u32,
            row4: (self.n_kv_heads * self.head_dim / 4) as u32,
            capacity: capacity.max(1),
            pos,
            first,
            pad0: 0,
            pad1: 0,
        }
    }
}

impl KernelSpec for KvAppendSpec {
    type Config = KvAppendConfig;

    fn family(&self) -> &'static str {
        "kv_append"
    }

    fn tune_key(&self) -> String {
        use crate::tune::bucket;
        format!(
            "kv_append.{}|n{}.row{}",
            self.kv_dtype.name(),
            bucket(self.batch * self.n_new),
            bucket(self.n_kv_heads * self.head_dim)
        )
    }

    fn key(&self, cfg: &KvAppendConfig) -> String {
        // The quantized kernels bake the head dim in (blocks per row).
        if self.kv_dtype.quantized() || self.kv_dtype == KvDType::Kivi2 {
            return format!(
                "kv_append.{}.d{}.wg{}",
                self.kv_dtype.name(),
                self.head_dim,
                cfg.wg
            );
        }
        format!("kv_append.{}.wg{}", self.kv_dtype.name(), cfg.wg)
    }

    fn bindings(&self, _cfg: &KvAppendConfig) -> Vec<BindingDecl> {
        // A quantized cache's append writes the rounded rows back (kv_quant.wgsl, `append`).
        let new = |b, name| match self.kv_dtype.quantized() {
            true => BindingDecl::read_write(b, name),
            false => BindingDecl::read(b, name),
        };
        vec![
            BindingDecl::uniform(0, "p"),
            new(1, "k_new"),
            new(2, "v_new"),
            BindingDecl::read_write(3, "kc"),
            BindingDecl::read_write(4, "vc"),
        ]
    }

    fn render(&self, cfg: &KvAppendConfig) -> Result<String, JitError> {
        let (f, template) = match (self.kv_dtype.quantized(), self.kv_dtype) {
            (_, KvDType::Kivi2) => ("kivi.wgsl", section("kivi.wgsl", KIVI, "append")?),
            (true, _) => (
                "kv_quant.wgsl",
                section("kv_quant.wgsl", KV_QUANT, "append")?,
            ),
            (false, _) => (
                "attention_decode.wgsl",
                section("attention_decode.wgsl", ATTENTION_DECODE, "kv_append")?,
            ),
        };
        render(
            f,
            template,
            &[
                ("KEY", self.key(cfg)),
                ("PARAMS", AppendParams::wgsl_decl()),
                ("WG", cfg.wg.to_string()),
                ("KV", self.kv_dtype.wgsl(self.head_dim, true)?),
            ],
        )
    }

    fn dispatch(&self, cfg: &KvAppendConfig) -> [u32; 3] {
        // Quantized: one invocation per pair of 32-value blocks; kivi2: one per residual word
        // (f16 pair); dense: one per vec4.
        let per_row = match (self.kv_dtype.quantized(), self.kv_dtype) {
            (_, KvDType::Kivi2) => self.head_dim / 2,
            (true, _) => (self.head_dim / 32).div_ceil(2),
            (false, _) => self.head_dim / 4,
        };
        let n = self.batch * self.n_new * self.n_kv_heads * per_row;
        if n == 0 {
            return [0, 1, 1];
        }
        linear_dispatch(n, cfg.wg)
    }

    fn check(&self, profile: &DeviceProfile, cfg: &KvAppendConfig) -> Result<(), JitError> {
        check_heads(
            self.family(),
            self.n_kv_heads,
            self.n_kv_heads,
            self.head_dim,
        )?;
        check_kv_dtype(self.family(), self.kv_dtype, self.head_dim)?;
        check_workgroup(self.family(), &self.key(cfg), profile, cfg.wg)
    }

    fn space(&self, profile: &DeviceProfile) -> Vec<KvAppendConfig> {
        [64, 128, 256]
            .into_iter()
            .map(|wg| KvAppendConfig { wg })
            .filter(|c| self.check(profile, c).is_ok())
            .collect()
    }

    fn default_config(&self, _profile: &DeviceProfile) -> KvAppendConfig {
        KvAppendConfig { wg: 64 }
    }
}

/// The problem error when `dtype` cannot store rows of `head_dim` values.
pub(crate) fn check_kv_dtype(family: &str, dtype: KvDType, head_dim: u64) -> Result<(), JitError> {
    dtype
        .check_head_dim(head_dim)
        .map_err(|reason| JitError::UnsupportedProblem {
            family: family.into(),
            reason,
        })
}
