//! The quantized matvec as a `KernelSpec`: keys, bindings, legality, the tuning space and the
//! default config. Rendering is the paths' (`float`, `int8`).

use super::blocks::render_blocks;
use super::float::{render_float, shared_bytes};
use super::int8::{check_int8, render_int8};
use super::lanes::render_lanes;
use super::problem::{
    check_k, Form, Path, Prologue, QMatvecConfig, QMatvecSpec, Reduce, QMATVEC_MAX_M,
};
use super::prologue::prologue_bindings;
use crate::error::JitError;
use crate::kernels::{check_workgroup, illegal};
use crate::profile::DeviceProfile;
use crate::spec::{BindingDecl, KernelSpec};

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
            self.infix(),
            self.m,
            bucket(self.rows),
            bucket(self.k)
        )
    }
    fn key(&self, cfg: &QMatvecConfig) -> String {
        let red = match cfg.reduce {
            Reduce::Workgroup => "wgred",
            Reduce::Subgroup => "sgred",
            Reduce::None => "rowthread",
        };
        let (fmt, m, wg, r) = (self.format.name(), self.m, cfg.wg, cfg.r);
        let mul = match cfg.path {
            Path::Int8 => return format!("qmatvec_i8.{fmt}.m{m}.dot4i8.wg{wg}.r{r}.{red}"),
            Path::F32 => "f32mul",
            Path::F16 => "f16mul",
            Path::Blocks => "blk32",
            Path::BlocksX => "blk32x",
            Path::Lanes => "lanes8",
        };
        let form = self.infix();
        format!("qmatvec.{fmt}{form}.m{m}.{mul}.f32acc.wg{wg}.r{r}.{red}")
    }
    fn bindings(&self, cfg: &QMatvecConfig) -> Vec<BindingDecl> {
        if cfg.path == Path::Int8 {
            let mut b = vec![
                BindingDecl::uniform(0, "p"),
                BindingDecl::read(1, "w"),
                BindingDecl::read(2, "xq"),
                BindingDecl::read(3, "xs"),
                BindingDecl::read_write(4, "y"),
            ];
            b.extend(crate::quant::wgsl::grid_binding(self.format));
            return b;
        }
        let mut b = vec![
            BindingDecl::uniform(0, "p"),
            BindingDecl::read(1, "w"),
            BindingDecl::read(2, "x"),
            BindingDecl::read_write(3, "y"),
        ];
        if self.weights() >= 2 {
            b.push(BindingDecl::read(4, "w2"));
        }
        if self.weights() >= 3 {
            b.push(BindingDecl::read(5, "w3"));
        }
        b.extend(prologue_bindings(self));
        b.extend(crate::quant::wgsl::grid_binding(self.format));
        b
    }
    fn render(&self, cfg: &QMatvecConfig) -> Result<String, JitError> {
        match cfg.path {
            Path::F32 | Path::F16 => render_float(self, cfg, self.key(cfg)),
            Path::Blocks | Path::BlocksX => render_blocks(self, cfg, self.key(cfg)),
            Path::Lanes => render_lanes(self, cfg, self.key(cfg)),
            Path::Int8 => render_int8(self, cfg, self.key(cfg)),
        }
    }
    fn dispatch(&self, cfg: &QMatvecConfig) -> [u32; 3] {
        self.dispatch_rows(cfg, self.rows)
    }
    fn check(&self, profile: &DeviceProfile, cfg: &QMatvecConfig) -> Result<(), JitError> {
        let fam = self.family();
        let key = self.key(cfg);
        self.check_problem()?;
        check_workgroup(fam, &key, profile, cfg.wg)?;
        let storage = self
            .bindings(cfg)
            .iter()
            .filter(|b| b.access != crate::spec::Access::Uniform)
            .count() as u32;
        let max_storage = profile.limits.max_storage_buffers_per_shader_stage;
        if storage > max_storage {
            // A stacked matvec of three weights with the norm prologue binds 9 (10 with a
            // codebook's grid); WebGPU's default limit is 8.
            return Err(illegal(
                fam,
                &key,
                format!("binds {storage} storage buffers, the device allows {max_storage}"),
            ));
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
        if cfg.reduce == Reduce::Subgroup && profile.subgroups.is_none() {
            return Err(illegal(
                fam,
                &key,
                "subgroup reduction needs subgroup support",
            ));
        }
        match cfg.path {
            Path::Int8 => {
                if self.prologue != Prologue::None {
                    return Err(illegal(
                        fam,
                        &key,
                        "the int8 path reads X quantized by its own pass: no norm prologue",
                    ));
                }
                if self.form != Form::Plain {
                    return Err(illegal(
                        fam,
                        &key,
                        "the int8 path has plain (not gated, not stacked) matvecs only",
                    ));
                }
                if !Path::int8_supports(self.format) {
                    return Err(illegal(
                        fam,
                        &key,
                        format!(
                            "no int8 path for {} (Q4_0, Q5_0, Q8_0, Q4_K, Q6_K, IQ4_NL, \
                             IQ4_XS, TQ1_0, TQ2_0, MXFP4 and the IQ1/IQ2/IQ3 formats have one)",
                            self.format.name()
                        ),
                    ));
                }
                check_int8(self, profile, cfg, &key)
            }
            Path::Lanes => {
                if !Path::lanes_supports(self.format) {
                    return Err(illegal(
                        fam,
                        &key,
                        format!(
                            "no lane decoder for {} (Q4_K and Q6_K have one)",
                            self.format.name()
                        ),
                    ));
                }
                if !self.k.is_multiple_of(256) {
                    return Err(illegal(
                        fam,
                        &key,
                        "the lane path needs K in super-blocks of 256",
                    ));
                }
                if self.m != 1 {
                    return Err(illegal(fam, &key, "the lane path takes one activation row"));
                }
                if cfg.reduce == Reduce::None || cfg.wg < 8 {
                    return Err(illegal(
                        fam,
                        &key,
                        "the lane path spreads K over 8 or more lanes and sums them",
                    ));
                }
                self.check_shared(profile, cfg, &key)
            }
            Path::F32 | Path::F16 | Path::Blocks | Path::BlocksX => {
                let blocks = matches!(cfg.path, Path::Blocks | Path::BlocksX);
                if blocks && !Path::int8_supports(self.format) {
                    return Err(illegal(
                        fam,
                        &key,
                        format!(
                            "no block decoder for {} (the formats of the int8 path have one)",
                            self.format.name()
                        ),
                    ));
                }
                if blocks && !self.k.is_multiple_of(32) {
                    return Err(illegal(fam, &key, "the block path needs K in blocks of 32"));
                }
                if cfg.path == Path::F16 && !profile.f16 {
                    return Err(illegal(fam, &key, "the f16 path needs shader-f16"));
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
                self.check_shared(profile, cfg, &key)
            }
        }
    }
    fn space(&self, profile: &DeviceProfile) -> Vec<QMatvecConfig> {
        // The int8 path first (plain matvecs of its formats): where the device has a fast
        // packed dot product it wins by 2-3x (H100), and a budget-bound tuning run should not
        // run out before reaching it.
        let mut out = Vec::new();
        if self.form == Form::Plain
            && self.prologue == Prologue::None
            && Path::int8_supports(self.format)
        {
            for reduce in [Reduce::Subgroup, Reduce::Workgroup] {
                for wg in [64, 128, 256] {
                    for r in [1, 2, 4] {
                        out.push(QMatvecConfig {
                            path: Path::Int8,
                            wg,
                            r,
                            reduce,
                        });
                    }
                }
            }
        }
        if Path::int8_supports(self.format) {
            for reduce in [Reduce::Subgroup, Reduce::Workgroup, Reduce::None] {
                for wg in [32, 64, 128, 256] {
                    for r in [1, 2, 4] {
                        out.push(QMatvecConfig {
                            path: Path::Blocks,
                            wg,
                            r,
                            reduce,
                        });
                    }
                }
            }
        }
        if Path::lanes_supports(self.format) {
            for reduce in [Reduce::Subgroup, Reduce::Workgroup] {
                for wg in [32, 64, 128] {
                    for r in [1, 2, 4, 8] {
                        out.push(QMatvecConfig {
                            path: Path::Lanes,
                            wg,
                            r,
                            reduce,
                        });
                    }
                }
            }
        }
        if Path::int8_supports(self.format) {
            for reduce in [Reduce::Subgroup, Reduce::Workgroup] {
                for wg in [32, 64, 128] {
                    for r in [2, 4] {
                        out.push(QMatvecConfig {
                            path: Path::BlocksX,
                            wg,
                            r,
                            reduce,
                        });
                    }
                }
            }
        }
        for path in [Path::F32, Path::F16] {
            for reduce in [Reduce::Workgroup, Reduce::Subgroup, Reduce::None] {
                for wg in [32, 64, 128, 256] {
                    for r in [1, 2, 4, 8] {
                        out.push(QMatvecConfig {
                            path,
                            wg,
                            r,
                            reduce,
                        });
                    }
                }
            }
        }
        out.retain(|c| self.check(profile, c).is_ok());
        out
    }
    fn arithmetic(&self, cfg: &QMatvecConfig) -> &'static str {
        match cfg.path {
            Path::F16 => "f16",
            Path::F32 | Path::Blocks | Path::BlocksX | Path::Lanes | Path::Int8 => "f32",
        }
    }
    fn approximate(&self, cfg: &QMatvecConfig) -> Option<f64> {
        // Rounding activations to 8 bits (half a step of max|x| / 127 per block of 32) gives
        // an NMSE of about 1e-5 on spread-out inputs; 1e-3 leaves room for peaky ones while
        // still rejecting wrong kernels.
        (cfg.path == Path::Int8).then_some(1e-3)
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
        // 950-953 to 992 tok/s (`bench model --profile` with one tuning record).
        // CPU adapters (lavapipe, SwiftShader): no reduction at all, each invocation walks
        // whole rows, 4 or 8 of them, in workgroups of 32. Measured with `webjit bench qmatmul
        // --m 1 --config ...` at Gemma 3 270M's shapes: on
        // SwiftShader 2.4-8.7x faster than 128 invocations over 2 rows with a workgroup-memory
        // tree (the 262144 x 640 Q8_0 output projection 10.4 s -> 1.19 s), on lavapipe
        // 1.3-2.8x faster than its subgroup reduction.
        let wide_sg = profile.subgroups.as_ref().is_some_and(|s| s.max_size >= 32);
        // GPUs with wide subgroups, K of 2048 or more, formats with a block decoder: the block
        // path (`Path::Blocks`). On an H200 (`webjit bench qmatmul --m 1 --sweep --cold-mib
        // 512`, Llama-3.1-8B's shapes) it took Q4_K 14336 x 4096 from 73.5 us (best f32
        // config) to 43.5, Q6_K 4096 x 14336 from 101.7 to 48.4, and 8B decode from 108 to 144
        // tok/s. Q4_K (two blocks a step) best with 4 rows per workgroup of 64, the others
        // with 2; vocabulary-sized outputs with workgroups of 32 and a workgroup-memory tree.
        // At Gemma 3 270M's K of 640-1024 it was no faster than the f32 defaults below, and
        // its decode slower (996 -> 869 tok/s with 64 over 2 everywhere), so they keep those.
        // CPU adapters, formats with a block decoder, up to 16384 rows: the block path with no
        // reduction, 1 row per invocation for Q4_K, 2 for the others. On lavapipe (`bench
        // qmatmul --m 1 --config ...`, Gemma 3 270M's shapes) that took Q4_K 2048 x 1024 from
        // 5.3 to 1.8 ms, Q6_K 640 x 2048 from 2.1 to 1.6 and Q5_0 2048 x 640 from 1.6 to 0.9
        // against the f32 rowthread defaults; the 262144-row Q8_0 output projection was slower
        // (155 against 141 ms) and keeps them. Gemma's decode went from 1.95-1.99 to 2.47-2.90
        // tok/s. One activation row only: 16-token prompts (8-row slices) were slower with it.
        if profile.cpu && self.rows <= 16384 && self.m == 1 {
            let r = if self.format == crate::quant::GgmlType::Q4K {
                1
            } else {
                2
            };
            let c = QMatvecConfig {
                path: Path::Blocks,
                wg: 32,
                r,
                reduce: Reduce::None,
            };
            if self.check(profile, &c).is_ok() {
                return c;
            }
        }
        let big_k = self.k >= 2048;
        if wide_sg && !profile.cpu && big_k && self.m == 1 {
            let (wg, r, red0) = match (self.rows <= 16384, self.format) {
                (false, _) => (32, 2, Reduce::Workgroup),
                (true, crate::quant::GgmlType::Q4K) => (64, 4, reduce),
                (true, _) => (64, 2, reduce),
            };
            for red in [red0, Reduce::Workgroup] {
                let c = QMatvecConfig {
                    path: Path::Blocks,
                    wg,
                    r,
                    reduce: red,
                };
                if self.check(profile, &c).is_ok() {
                    return c;
                }
            }
        }
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
                    path: Path::F32,
                    wg,
                    r,
                    reduce: red,
                };
                if self.check(profile, &c).is_ok() {
                    return c;
                }
            }
        }
        QMatvecConfig {
            path: Path::F32,
            wg: 32,
            r: 1,
            reduce: Reduce::Workgroup,
        }
    }
}

impl QMatvecSpec {
    /// Whether this problem's default config is legal on `profile` (with a norm prologue:
    /// whether X fits the workgroup memory beside the reduction).
    pub fn prologue_fits(&self, profile: &DeviceProfile) -> bool {
        self.check(profile, &self.default_config(profile)).is_ok()
    }

    /// What no config can fix: sizes, the form's weight count, K's blocks.
    fn check_problem(&self) -> Result<(), JitError> {
        let fam = self.family();
        let unsupported = |reason: String| JitError::UnsupportedProblem {
            family: fam.into(),
            reason,
        };
        check_k(fam, self.format, self.k)?;
        if let Form::Stacked(n) = self.form {
            if !(2..=3).contains(&n) {
                return Err(unsupported(format!("{n} stacked weights: 2 or 3")));
            }
        }
        if self.prologue != Prologue::None && self.m != 1 {
            return Err(unsupported(format!(
                "the norm prologue takes one activation row, got M = {}",
                self.m
            )));
        }
        if self.m == 0 || self.m > QMATVEC_MAX_M {
            return Err(unsupported(format!(
                "M = {} activation rows; qmatvec takes 1..={QMATVEC_MAX_M} (use qmatmul)",
                self.m
            )));
        }
        if self.n == 0 || self.rows == 0 || self.rows > self.n || self.n > u32::MAX as u64 {
            return Err(unsupported(format!(
                "N = {} with a segment of {} rows",
                self.n, self.rows
            )));
        }
        Ok(())
    }
}

impl QMatvecSpec {
    /// The float, block and lane paths' workgroup memory (reductions, grids, the prologue's X)
    /// against the device's limit.
    fn check_shared(
        &self,
        profile: &DeviceProfile,
        cfg: &QMatvecConfig,
        key: &str,
    ) -> Result<(), JitError> {
        let bytes = shared_bytes(self, cfg);
        let max = profile.limits.max_compute_workgroup_storage_size as u64;
        if bytes > max {
            return Err(illegal(
                self.family(),
                key,
                format!("needs {bytes} bytes of workgroup memory, the device has {max}"),
            ));
        }
        Ok(())
    }
}
