//! Quantized matrix-vector products for decode, with the dequantization fused in, plus the
//! plain dequantization kernel that tests repacking against the CPU reference.
//!
//! Weights W are [N, K] in GGUF layout (K contiguous), repacked into u32 words
//! (`crate::quant`); activations X are [M, K] f32 with M <= 8; Y = X W^T is [M, N] f32.
//! A weight larger than one storage binding is split into row segments; each segment is one
//! dispatch that writes its columns of Y at `n_offset`.

use crate::error::JitError;
use crate::kernels::qmatvec_i8::{QMatvecI8Config, QMatvecI8Spec};
use crate::kernels::{check_workgroup, illegal, linear_dispatch, MAX_GROUPS_PER_DIM};
use crate::profile::DeviceProfile;
use crate::quant::GgmlType;
use crate::render::{render, section};
use crate::shaders::{QMATVEC, QUANT};
use crate::spec::{dispatch_2d, BindingDecl, KernelSpec, UniformStruct};

crate::uniform_struct!(
    /// Uniforms of the `dequant` section of `qmatvec.wgsl`.
    QDequantParams { rows: u32, k: u32, row_words: u32, pad: u32 }
);

crate::uniform_struct!(
    /// Uniforms of the `matvec` section of `qmatvec.wgsl`. `rows` are this segment's rows,
    /// written to columns `n_offset..n_offset + rows` of Y (which has `n` columns).
    QMatvecParams { n: u32, k: u32, row_words: u32, rows: u32, n_offset: u32, part1: u32, part2: u32, eps: f32 }
);

/// The WGSL `deq4` function (and helpers) of `format`; expects `w: array<u32>` in scope.
pub fn deq_wgsl(format: GgmlType) -> Result<String, JitError> {
    let f = "quant.wgsl";
    let mut s = section(f, QUANT, "common")?.to_string();
    s.push_str(section(f, QUANT, "byte_at")?);
    if matches!(format, GgmlType::Q4K | GgmlType::Q5K) {
        s.push_str(section(f, QUANT, "kscale")?);
    }
    s.push_str(section(f, QUANT, format.name())?);
    Ok(s)
}

/// `enable` lines (and notes) heading a quantized kernel.
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

/// Checks shared by the quantized kernels: K is whole GPU blocks and a multiple of 4.
pub(crate) fn check_k(family: &str, format: GgmlType, k: u64) -> Result<(), JitError> {
    let b = format.gpu_block_elems() as u64;
    if k == 0 || !k.is_multiple_of(b) || !k.is_multiple_of(4) {
        return Err(JitError::UnsupportedProblem {
            family: family.into(),
            reason: format!(
                "K = {k} must be a positive multiple of the {} block size {} (and of 4)",
                format.name(),
                b.max(4)
            ),
        });
    }
    if k > u32::MAX as u64 {
        return Err(JitError::UnsupportedProblem {
            family: family.into(),
            reason: format!("K = {k} exceeds 2^32"),
        });
    }
    Ok(())
}

/// Dequantize `rows` rows of K elements of a repacked weight to f32 [rows, K].
#[derive(Clone, Debug, PartialEq)]
pub struct QDequantSpec {
    pub format: GgmlType,
    pub rows: u64,
    pub k: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QDequantConfig {
    pub wg: u32,
}

impl QDequantSpec {
    pub fn params(&self) -> QDequantParams {
        QDequantParams {
            rows: self.rows as u32,
            k: self.k as u32,
            row_words: self.format.row_words(self.k as usize).unwrap_or(0) as u32,
            pad: 0,
        }
    }
}

impl KernelSpec for QDequantSpec {
    type Config = QDequantConfig;
    fn family(&self) -> &'static str {
        "qdequant"
    }
    fn tune_key(&self) -> String {
        use crate::tune::bucket;
        format!(
            "qdequant.{}|r{}.k{}",
            self.format.name(),
            bucket(self.rows),
            bucket(self.k)
        )
    }
    fn key(&self, cfg: &QDequantConfig) -> String {
        format!("qdequant.{}.wg{}", self.format.name(), cfg.wg)
    }
    fn bindings(&self, _cfg: &QDequantConfig) -> Vec<BindingDecl> {
        vec![
            BindingDecl::uniform(0, "p"),
            BindingDecl::read(1, "w"),
            BindingDecl::read_write(2, "out"),
        ]
    }
    fn render(&self, cfg: &QDequantConfig) -> Result<String, JitError> {
        render(
            "qmatvec.wgsl",
            section("qmatvec.wgsl", QMATVEC, "dequant")?,
            &[
                ("KEY", self.key(cfg)),
                ("PARAMS", QDequantParams::wgsl_decl()),
                ("DEQ", deq_wgsl(self.format)?),
                ("WG", cfg.wg.to_string()),
            ],
        )
    }
    fn dispatch(&self, cfg: &QDequantConfig) -> [u32; 3] {
        linear_dispatch(self.rows * (self.k / 4), cfg.wg)
    }
    fn check(&self, profile: &DeviceProfile, cfg: &QDequantConfig) -> Result<(), JitError> {
        check_workgroup(self.family(), &self.key(cfg), profile, cfg.wg)?;
        check_k(self.family(), self.format, self.k)?;
        if self.rows * (self.k / 4) > u32::MAX as u64 {
            return Err(illegal(
                self.family(),
                &self.key(cfg),
                "more than 2^32 outputs",
            ));
        }
        Ok(())
    }
    fn space(&self, profile: &DeviceProfile) -> Vec<QDequantConfig> {
        [64, 256]
            .into_iter()
            .map(|wg| QDequantConfig { wg })
            .filter(|c| self.check(profile, c).is_ok())
            .collect()
    }
    fn default_config(&self, _profile: &DeviceProfile) -> QDequantConfig {
        QDequantConfig { wg: 64 }
    }
}

/// How a workgroup's partial sums are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reduce {
    /// Tree reduction in workgroup memory: works everywhere (browsers included).
    Workgroup,
    /// `subgroupAdd`, then one workgroup-memory pass over the subgroup sums. Only where the
    /// device has subgroups.
    Subgroup,
    /// No reduction: each invocation owns R whole rows and walks all of K. Uncoalesced on a
    /// GPU, but on CPU-backed adapters (lavapipe, SwiftShader) each SIMD lane streams its own
    /// row and the per-workgroup overhead is paid once per WG * R rows.
    None,
}

/// The activation of a gated matvec: `y = act(x W^T) * (x W2^T)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Gate {
    /// Gemma's GeGLU (tanh GELU).
    GeluTanh,
    /// llama's SwiGLU.
    Silu,
}

impl Gate {
    pub fn name(self) -> &'static str {
        match self {
            Gate::GeluTanh => "gelu_tanh",
            Gate::Silu => "silu",
        }
    }
}

/// Y[M, N] = X[M, K] W[N, K]^T for one weight segment of `rows` rows (N total columns); with
/// `gate`, Y = act(X W^T) * (X W2^T) for a second weight W2 of the same shape and format.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QMatvecSpec {
    pub format: GgmlType,
    /// Activation rows, 1..=8.
    pub m: u32,
    pub n: u64,
    pub k: u64,
    /// Rows of W in the segment one dispatch covers (N when unsegmented).
    pub rows: u64,
    /// Gated form (two weights, one output).
    pub gate: Option<Gate>,
    /// Stacked form: this many weights (2 or 3) stacked by rows; 0 for one weight. `n` and
    /// `rows` count the rows of all of them.
    pub stacked: u32,
    /// The input formed in the kernel from the previous block's outputs (decode, M = 1).
    pub prenorm: Option<PreNorm>,
}

/// A matvec whose input is the next pre-norm of a residual stream, computed in the kernel:
/// the `x` binding holds the previous op's output `o`; every workgroup forms
/// `h = res + post(o)` and `x = rmsnorm(h) * nw` (eps in the uniforms) in workgroup memory
/// before its dot products, and workgroup 0 also writes `h` (the new residual stream) and `x`
/// (for another matvec of the same input). This
/// takes the separate add-and-norm dispatch out of a decode step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PreNorm {
    /// `post(o) = o` (llama: residual add, then the pre-norm).
    Add,
    /// `post(o) = rmsnorm(o) * pw` (Gemma's post-attention / post-FFN norms).
    PostNormAdd,
}

impl PreNorm {
    pub fn name(self) -> &'static str {
        match self {
            PreNorm::Add => "add_norm",
            PreNorm::PostNormAdd => "rmsnorm_add_norm",
        }
    }
}

/// Longest K the fused pre-norm holds in workgroup memory (16 KiB of f32).
pub const PRENORM_MAX_K: u64 = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QMatvecConfig {
    pub wg: u32,
    /// Products in f16 (sums stay f32); only where the device has `shader-f16`.
    pub f16: bool,
    /// Rows of W per workgroup (per invocation with `Reduce::None`).
    pub r: u32,
    pub reduce: Reduce,
    /// The int8 dot-product path (`crate::kernels::qmatvec_i8`): X quantized to 8 bits per
    /// block of 32 by a separate pass, weights unpacked to bytes, `dot4I8Packed`. Plain
    /// matvecs of its formats only; approximate, so only the tuner picks it.
    pub int8: bool,
}

pub const QMATVEC_MAX_M: u32 = 8;

impl QMatvecSpec {
    pub fn params(&self, n_offset: u64, rows: u64) -> QMatvecParams {
        QMatvecParams {
            n: self.n as u32,
            k: self.k as u32,
            row_words: self.format.row_words(self.k as usize).unwrap_or(0) as u32,
            rows: rows as u32,
            n_offset: n_offset as u32,
            part1: 0,
            part2: 0,
            eps: 0.0,
        }
    }
    /// Uniforms of the stacked form: `parts` are the row counts of W, W2 (and W3).
    pub fn params_stacked(&self, parts: &[u64]) -> QMatvecParams {
        let total: u64 = parts.iter().sum();
        let first = parts.first().copied().unwrap_or(0);
        let mut p = self.params(0, total);
        p.part1 = first as u32;
        p.part2 = (first + parts.get(1).copied().unwrap_or(0)) as u32;
        p
    }
    /// The int8 path's spec for this (plain) problem.
    pub fn i8_spec(&self) -> QMatvecI8Spec {
        QMatvecI8Spec {
            format: self.format,
            m: self.m,
            n: self.n,
            k: self.k,
            rows: self.rows,
        }
    }
    /// Workgroups for a segment of `rows` rows.
    pub fn dispatch_rows(&self, cfg: &QMatvecConfig, rows: u64) -> [u32; 3] {
        if cfg.int8 {
            return self.i8_spec().dispatch_rows(&i8_config(cfg), rows);
        }
        let per_group = match cfg.reduce {
            Reduce::None => cfg.r * cfg.wg,
            _ => cfg.r,
        };
        dispatch_2d(
            crate::spec::div_ceil(rows, per_group as u64),
            MAX_GROUPS_PER_DIM,
        )
    }
    fn shared_bytes(&self, cfg: &QMatvecConfig) -> u64 {
        let per = match cfg.reduce {
            Reduce::Workgroup => cfg.wg,
            Reduce::Subgroup => self.sg_bound(cfg),
            Reduce::None => 0,
        };
        let pre = match self.prenorm {
            Some(_) => 4 * (self.k + cfg.wg as u64),
            None => 0,
        };
        4 * (cfg.r * self.m * per * self.accumulators()) as u64 + pre
    }
    /// The key infix of the gated and stacked forms.
    fn variant(&self) -> String {
        let mut v = match (self.gate, self.stacked) {
            (Some(g), _) => format!(".gated_{}", g.name()),
            (None, s) if s > 1 => format!(".stacked{s}"),
            _ => String::new(),
        };
        if let Some(pn) = self.prenorm {
            v.push_str(&format!(".pre_{}", pn.name()));
        }
        v
    }
    /// Accumulators per output: 2 for the gated form (W and W2).
    fn accumulators(&self) -> u32 {
        if self.gate.is_some() {
            2
        } else {
            1
        }
    }
}

impl KernelSpec for QMatvecSpec {
    type Config = QMatvecConfig;
    fn family(&self) -> &'static str {
        "qmatvec"
    }
    fn memo_key(&self) -> Option<u64> {
        Some(crate::spec::hash_of(self))
    }

    fn tune_key(&self) -> String {
        use crate::tune::bucket;
        format!(
            "qmatvec.{}{}|m{}.n{}.k{}",
            self.format.name(),
            self.variant(),
            self.m,
            bucket(self.rows),
            bucket(self.k)
        )
    }
    fn key(&self, cfg: &QMatvecConfig) -> String {
        if cfg.int8 {
            return self.i8_spec().key(&i8_config(cfg));
        }
        let red = match cfg.reduce {
            Reduce::Workgroup => "wgred",
            Reduce::Subgroup => "sgred",
            Reduce::None => "rowthread",
        };
        format!(
            "qmatvec.{}{}.m{}.{}.f32acc.wg{}.r{}.{red}",
            self.format.name(),
            self.variant(),
            self.m,
            if cfg.f16 { "f16mul" } else { "f32mul" },
            cfg.wg,
            cfg.r
        )
    }
    fn bindings(&self, cfg: &QMatvecConfig) -> Vec<BindingDecl> {
        if cfg.int8 {
            return self.i8_spec().bindings(&i8_config(cfg));
        }
        let mut b = vec![
            BindingDecl::uniform(0, "p"),
            BindingDecl::read(1, "w"),
            BindingDecl::read(2, "x"),
            BindingDecl::read_write(3, "y"),
        ];
        if self.gate.is_some() || self.stacked >= 2 {
            b.push(BindingDecl::read(4, "w2"));
        }
        if self.stacked >= 3 {
            b.push(BindingDecl::read(5, "w3"));
        }
        if let Some(pn) = self.prenorm {
            b.push(BindingDecl::read(6, "res"));
            b.push(BindingDecl::read(7, "nw"));
            b.push(BindingDecl::read_write(8, "xo"));
            if pn == PreNorm::PostNormAdd {
                b.push(BindingDecl::read(9, "pw"));
            }
            b.push(BindingDecl::read_write(10, "xn"));
        }
        b
    }
    fn render(&self, cfg: &QMatvecConfig) -> Result<String, JitError> {
        if cfg.int8 {
            return self.i8_spec().render(&i8_config(cfg));
        }
        let f = "qmatvec.wgsl";
        let mut deq = deq_wgsl(self.format)?;
        let (w2_decl, epilogue, acc2, out_none, out_wg, t2_sg, out_sg) = match self.gate {
            None => (
                String::new(),
                String::new(),
                String::new(),
                "acc[i]".to_string(),
                "red[lid * WG]".to_string(),
                String::new(),
                "t".to_string(),
            ),
            Some(g) => {
                // A second copy of the dequantization reading w2 (WGSL has no pointers to
                // storage arrays as function arguments everywhere).
                deq.push_str(&weight_copy(&deq, 2));
                let act = g.name();
                (
                    "@group(0) @binding(4) var<storage, read> w2: array<u32>;                               // [rows, row_words] W2's segment"
                        .to_string(),
                    section(f, QMATVEC, "gate_epilogue")?.to_string(),
                    section(f, QMATVEC, "gate_acc")?.to_string(),
                    format!("{act}(acc[i]) * acc[R * M + i]"),
                    format!("{act}(red[lid * WG]) * red[(R * M + lid) * WG]"),
                    "            t2 += red[(R * M + lid) * MAX_SG + g];".to_string(),
                    format!("{act}(t) * t2"),
                )
            }
        };
        let (sg_note, name, decl, body, extra) = match cfg.reduce {
            Reduce::None => (
                String::new(),
                "",
                String::new(),
                section(f, QMATVEC, "reduce_none_body")?,
                String::new(),
            ),
            Reduce::Workgroup => (
                String::new(),
                "workgroup memory",
                section(f, QMATVEC, "reduce_workgroup")?.to_string(),
                section(f, QMATVEC, "reduce_workgroup_body")?,
                String::new(),
            ),
            Reduce::Subgroup => (
                // naga 30 rejects `enable subgroups;` (not yet implemented) and accepts the
                // builtins under Capabilities::SUBGROUP; browsers would need the enable.
                "// subgroup builtins: naga accepts them with Capabilities::SUBGROUP".to_string(),
                "subgroupAdd and workgroup memory",
                render(
                    f,
                    section(f, QMATVEC, "reduce_subgroup")?,
                    &[("MAX_SG", self.sg_bound(cfg).to_string())],
                )?,
                section(f, QMATVEC, "reduce_subgroup_body")?,
                ",\n        @builtin(subgroup_invocation_id) sg_lane: u32,\n        \
                 @builtin(subgroup_id) sg_id: u32,\n        \
                 @builtin(num_subgroups) n_sg: u32"
                    .to_string(),
            ),
        };
        let mut load_w = "            let wv = V(deq4(row * p.row_words, k4));".to_string();
        let mut w2_decl = w2_decl;
        if self.stacked >= 2 {
            let base = deq.clone();
            deq.push_str(&weight_copy(&base, 2));
            w2_decl = "@group(0) @binding(4) var<storage, read> w2: array<u32>; \
                       // [rows of part 2, row_words] the second stacked weight"
                .to_string();
            let mut l = String::from(
                "            var wv: V;\n            if (row < p.part1) {\n                \
                 wv = V(deq4(row * p.row_words, k4));\n",
            );
            if self.stacked >= 3 {
                deq.push_str(&weight_copy(&base, 3));
                w2_decl.push_str(
                    "\n@group(0) @binding(5) var<storage, read> w3: array<u32>; \
                     // [rows of part 3, row_words] the third stacked weight",
                );
                l.push_str(
                    "            } else if (row < p.part2) {\n                \
                     wv = V(deq4_2((row - p.part1) * p.row_words, k4));\n            \
                     } else {\n                \
                     wv = V(deq4_3((row - p.part2) * p.row_words, k4));\n            }",
                );
            } else {
                l.push_str(
                    "            } else {\n                \
                     wv = V(deq4_2((row - p.part1) * p.row_words, k4));\n            }",
                );
            }
            load_w = l;
        }
        let (pre_decl, pre_body, load_x) = match self.prenorm {
            None => (
                String::new(),
                String::new(),
                "xv[m] = V(x[m * k4n + k4]);".to_string(),
            ),
            Some(pn) => {
                // Sums by subgroup where the config reduces by subgroup (its builtins are
                // declared), else a tree in workgroup memory.
                let (sum, args) = match cfg.reduce {
                    Reduce::Subgroup => (
                        section(f, QMATVEC, "prenorm_sum_subgroup")?.to_string(),
                        ", sg_lane, sg_id, n_sg",
                    ),
                    _ => (
                        render(
                            f,
                            section(f, QMATVEC, "prenorm_sum_workgroup")?,
                            &[("WG", cfg.wg.to_string())],
                        )?,
                        ", lid",
                    ),
                };
                let (post, post_o) = match pn {
                    PreNorm::Add => (String::new(), "x[i]"),
                    PreNorm::PostNormAdd => (
                        render(
                            f,
                            section(f, QMATVEC, "prenorm_post_add")?,
                            &[("PRE_ARGS", args.into())],
                        )?,
                        "x[i] * inv * pw[i]",
                    ),
                };
                let mut decl = render(
                    f,
                    section(f, QMATVEC, "prenorm_decl")?,
                    &[
                        ("K4", (self.k / 4).to_string()),
                        ("WG", cfg.wg.to_string()),
                        ("PRE_SUM", sum),
                    ],
                )?;
                if pn == PreNorm::PostNormAdd {
                    decl.push_str(
                        "\n@group(0) @binding(9) var<storage, read> pw: array<vec4<f32>>; // [k / 4] post-norm weight",
                    );
                }
                (
                    decl,
                    render(
                        f,
                        section(f, QMATVEC, "prenorm_body")?,
                        &[
                            ("POST", post),
                            ("POST_O", post_o.into()),
                            ("PRE_ARGS", args.into()),
                        ],
                    )?,
                    "xv[m] = V(xs[k4]);".to_string(),
                )
            }
        };
        let (row0, k0, kstep) = match cfg.reduce {
            Reduce::None => ("((wid.x + wid.y * nwg.x) * WG + lid) * R", "0u", "1u"),
            _ => ("(wid.x + wid.y * nwg.x) * R", "lid", "WG"),
        };
        render(
            f,
            section(f, QMATVEC, "matvec")?,
            &[
                ("KEY", self.key(cfg)),
                ("SPLIT_NOTE", split_note(cfg.reduce, name)),
                ("ROW0", row0.into()),
                ("K0", k0.into()),
                ("KSTEP", kstep.into()),
                ("ENABLES", enables(cfg.f16, &sg_note)),
                ("V", vec_type(cfg.f16).into()),
                ("PARAMS", QMatvecParams::wgsl_decl()),
                ("WG", cfg.wg.to_string()),
                ("R", cfg.r.to_string()),
                ("M", self.m.to_string()),
                ("G", self.accumulators().to_string()),
                ("DEQ", deq),
                ("W2_DECL", w2_decl),
                ("PRE_DECL", pre_decl),
                ("PRE_BODY", pre_body),
                ("LOAD_X", load_x),
                ("EPILOGUE", epilogue),
                ("ACC2", acc2),
                ("LOAD_W", load_w),
                ("REDUCE_DECL", decl),
                ("EXTRA_BUILTINS", extra),
                (
                    "REDUCE",
                    render_reduce(body, &out_none, &out_wg, &t2_sg, &out_sg)?,
                ),
            ],
        )
    }
    fn dispatch(&self, cfg: &QMatvecConfig) -> [u32; 3] {
        self.dispatch_rows(cfg, self.rows)
    }
    fn check(&self, profile: &DeviceProfile, cfg: &QMatvecConfig) -> Result<(), JitError> {
        let fam = self.family();
        let key = self.key(cfg);
        if cfg.int8 {
            if self.gate.is_some() || self.stacked > 1 || self.prenorm.is_some() || cfg.f16 {
                return Err(illegal(
                    fam,
                    &key,
                    "the int8 path has plain (not gated, not stacked, f32-scaled) matvecs only",
                ));
            }
            return self.i8_spec().check(profile, &i8_config(cfg));
        }
        check_workgroup(fam, &key, profile, cfg.wg)?;
        check_k(fam, self.format, self.k)?;
        if self.stacked > 3 || (self.stacked > 1 && self.gate.is_some()) {
            return Err(JitError::UnsupportedProblem {
                family: fam.into(),
                reason: format!(
                    "{} stacked weights{}: 2 or 3, and not gated",
                    self.stacked,
                    if self.gate.is_some() {
                        " with a gate"
                    } else {
                        ""
                    }
                ),
            });
        }
        if self.prenorm.is_some()
            && (self.m != 1 || !self.k.is_multiple_of(4) || self.k > PRENORM_MAX_K)
        {
            return Err(JitError::UnsupportedProblem {
                family: fam.into(),
                reason: format!(
                    "the fused pre-norm takes one activation row of K <= {PRENORM_MAX_K} (a multiple of 4), got M = {} and K = {}",
                    self.m, self.k
                ),
            });
        }
        if self.m == 0 || self.m > QMATVEC_MAX_M {
            return Err(JitError::UnsupportedProblem {
                family: fam.into(),
                reason: format!(
                    "M = {} activation rows; qmatvec takes 1..={QMATVEC_MAX_M} (use qmatmul)",
                    self.m
                ),
            });
        }
        if self.n == 0 || self.rows == 0 || self.rows > self.n || self.n > u32::MAX as u64 {
            return Err(JitError::UnsupportedProblem {
                family: fam.into(),
                reason: format!("N = {} with a segment of {} rows", self.n, self.rows),
            });
        }
        if !cfg.wg.is_power_of_two() {
            return Err(illegal(
                fam,
                &key,
                "the tree reduction needs a power-of-two workgroup",
            ));
        }
        if ![1, 2, 4, 8].contains(&cfg.r) {
            return Err(illegal(
                fam,
                &key,
                "rows per workgroup must be 1, 2, 4 or 8",
            ));
        }
        if cfg.f16 && !profile.f16 {
            return Err(illegal(fam, &key, "the f16 path needs shader-f16"));
        }
        if cfg.reduce == Reduce::Subgroup && profile.subgroups.is_none() {
            return Err(illegal(
                fam,
                &key,
                "subgroup reduction needs subgroup support",
            ));
        }
        if cfg.reduce != Reduce::None && (cfg.r * self.m) > cfg.wg {
            return Err(illegal(
                fam,
                &key,
                format!(
                    "R*M = {} outputs exceed the {} invocations that write them",
                    cfg.r * self.m,
                    cfg.wg
                ),
            ));
        }
        let bytes = self.shared_bytes(cfg);
        let max = profile.limits.max_compute_workgroup_storage_size as u64;
        if bytes > max {
            return Err(illegal(
                fam,
                &key,
                format!("needs {bytes} bytes of workgroup memory, the device has {max}"),
            ));
        }
        Ok(())
    }
    fn space(&self, profile: &DeviceProfile) -> Vec<QMatvecConfig> {
        let mut out = Vec::new();
        for f16 in [false, true] {
            for reduce in [Reduce::Workgroup, Reduce::Subgroup, Reduce::None] {
                for wg in [32, 64, 128, 256] {
                    for r in [1, 2, 4, 8] {
                        let c = QMatvecConfig {
                            wg,
                            f16,
                            r,
                            reduce,
                            int8: false,
                        };
                        if self.check(profile, &c).is_ok() {
                            out.push(c);
                        }
                    }
                }
            }
        }
        // The int8 path (plain matvecs of its formats), first: where the device has a fast
        // packed dot product it wins by 2-3x (H100: `benchmarks/h100/i8/`), and a budget-bound
        // tuning run should not run out before reaching it.
        if self.gate.is_none()
            && self.stacked <= 1
            && self.prenorm.is_none()
            && QMatvecI8Spec::supports(self.format)
        {
            let mut i8s: Vec<QMatvecConfig> = Vec::new();
            for reduce in [Reduce::Subgroup, Reduce::Workgroup] {
                for wg in [64, 128, 256] {
                    for r in [1, 2, 4] {
                        let c = QMatvecConfig {
                            wg,
                            f16: false,
                            r,
                            reduce,
                            int8: true,
                        };
                        if self.check(profile, &c).is_ok() {
                            i8s.push(c);
                        }
                    }
                }
            }
            i8s.append(&mut out);
            out = i8s;
        }
        out
    }
    fn arithmetic(&self, cfg: &QMatvecConfig) -> &'static str {
        if cfg.f16 {
            "f16"
        } else {
            "f32"
        }
    }
    fn approximate(&self, cfg: &QMatvecConfig) -> Option<f64> {
        // Rounding activations to 8 bits (half a step of max|x| / 127 per block of 32) gives
        // an NMSE of about 1e-5 on spread-out inputs; 1e-3 leaves room for peaky ones while
        // still rejecting wrong kernels.
        cfg.int8.then_some(1e-3)
    }
    fn default_config(&self, profile: &DeviceProfile) -> QMatvecConfig {
        let reduce = if profile.subgroups.is_some() {
            Reduce::Subgroup
        } else {
            Reduce::Workgroup
        };
        // GPUs with wide subgroups (32 or more lanes), up to 16384 rows: one row per
        // workgroup of 256. On an H100 (`webjit bench qmatmul --m 1 --sweep`, Gemma 3 270M's
        // six layer matvec shapes) that was the fastest or within 10% of it on every shape,
        // and 7-25% faster than 128 invocations over 2 rows; on the 262144-row output
        // projection it took twice as long (see below for larger outputs).
        // Elsewhere (browsers, CPU-backed adapters) 128 invocations over 2 rows.
        // Larger outputs (the vocabulary-sized output projection, 262144 x 640 Q8_0): 8 rows
        // per workgroup of 32 with a workgroup-memory reduction. In Gemma 3 270M's decode step
        // on an H100 that took the step's GPU time from 1005 to 966 us and decode from
        // 950-953 to 992 tok/s (`bench model --profile` with one record, `benchmarks/h100/i8/`).
        // CPU adapters (lavapipe, SwiftShader): no reduction at all, each invocation walks
        // whole rows, 4 or 8 of them, in workgroups of 32. Measured with `webjit bench qmatmul
        // --m 1 --config ...` at Gemma 3 270M's shapes (BENCHMARKS.md, "CPU adapters"): on
        // SwiftShader 2.4-8.7x faster than 128 invocations over 2 rows with a workgroup-memory
        // tree (the 262144 x 640 Q8_0 output projection 10.4 s -> 1.19 s), on lavapipe
        // 1.3-2.8x faster than its subgroup reduction.
        let wide_sg = profile.subgroups.as_ref().is_some_and(|s| s.max_size >= 32);
        let cpu_r = if self.rows >= 1024 { 8 } else { 4 };
        let first: &[(u32, u32, Reduce)] = match (wide_sg, self.rows <= 16384) {
            _ if profile.cpu => &[(32, cpu_r, Reduce::None), (32, 4, Reduce::None)],
            (true, true) => &[(256, 1, reduce), (128, 1, reduce)],
            (true, false) => &[(32, 8, Reduce::Workgroup)],
            _ => &[],
        };
        let rest = [(128, 2), (64, 2), (64, 1), (32, 1)].map(|(wg, r)| (wg, r, reduce));
        for &(wg, r, red0) in first.iter().chain(&rest) {
            for red in [red0, Reduce::Workgroup] {
                let c = QMatvecConfig {
                    wg,
                    f16: false,
                    r,
                    reduce: red,
                    int8: false,
                };
                if self.check(profile, &c).is_ok() {
                    return c;
                }
            }
        }
        QMatvecConfig {
            wg: 32,
            f16: false,
            r: 1,
            reduce: Reduce::Workgroup,
            int8: false,
        }
    }
}

/// The int8 path's config of an `int8` config.
pub fn i8_config(cfg: &QMatvecConfig) -> QMatvecI8Config {
    QMatvecI8Config {
        wg: cfg.wg,
        r: cfg.r,
        reduce: cfg.reduce,
    }
}

/// Fills the output expressions of a reduce body (plain or gated).
fn render_reduce(
    body: &str,
    out_none: &str,
    out_wg: &str,
    t2_sg: &str,
    out_sg: &str,
) -> Result<String, JitError> {
    let mut vars: Vec<(&str, String)> = Vec::new();
    for (name, value) in [
        ("OUT_NONE", out_none),
        ("OUT_WG", out_wg),
        ("T2_SG", t2_sg),
        ("OUT_SG", out_sg),
    ] {
        if body.contains(&format!("{{{{{name}}}}}")) {
            vars.push((name, value.to_string()));
        }
    }
    render("qmatvec.wgsl", body, &vars)
}

/// The dequantization code again, reading `w{n}` instead of `w`, with every function renamed
/// `NAME_{n}` (identifier-level rewrite of the generated WGSL).
fn weight_copy(deq: &str, n: u32) -> String {
    let mut fns: Vec<String> = Vec::new();
    let mut rest = deq;
    while let Some(i) = rest.find("fn ") {
        let after = &rest[i + 3..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            fns.push(name);
        }
        rest = after;
    }
    let mut out = String::with_capacity(deq.len() + 64);
    let mut chars = deq.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '/' && chars.peek() == Some(&'/') {
            // A comment: copied up to the end of the line.
            out.push(c);
            for d in chars.by_ref() {
                out.push(d);
                if d == '\n' {
                    break;
                }
            }
        } else if c.is_ascii_digit() {
            // A number literal (`0x33800000u`, `1.5e3`): no identifiers inside.
            out.push(c);
            while let Some(&d) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '.' || d == '_' {
                    out.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut ident = String::from(c);
            while let Some(&d) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '_' {
                    ident.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            if ident == "w" {
                out.push_str(&format!("w{n}"));
            } else {
                out.push_str(&ident);
                if fns.contains(&ident) {
                    out.push_str(&format!("_{n}"));
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn split_note(reduce: Reduce, name: &str) -> String {
    match reduce {
        Reduce::None => {
            "Each invocation owns R consecutive rows and walks all of K (no reduction).".into()
        }
        _ => format!(
            "A workgroup owns R consecutive rows; its invocations split K in strides of 4 \
             elements, so\n// neighbours read neighbouring words of the same blocks; partial \
             sums meet in {name}."
        ),
    }
}

impl QMatvecSpec {
    /// Bound on subgroups per workgroup baked into the shader: WG / 4, the smallest subgroup
    /// size WebGPU allows, so the shader is correct for any size the driver picks.
    fn sg_bound(&self, cfg: &QMatvecConfig) -> u32 {
        cfg.wg.div_ceil(4)
    }
}
