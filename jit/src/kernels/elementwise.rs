//! Elementwise ops: add, mul (with a repeated second operand, e.g. a bias row), scale, GELU
//! (tanh and erf forms), SiLU.

use crate::error::JitError;
use crate::kernels::{check_vec, check_workgroup, illegal, linear_dispatch};
use crate::profile::DeviceProfile;
use crate::render::{render, section};
use crate::shaders::ELEMENTWISE;
use crate::spec::{BindingDecl, KernelSpec, UniformStruct};

crate::uniform_struct!(
    /// Uniforms of `elementwise.wgsl`. Lengths count elements of the shader's vector type.
    EwParams { len: u32, b_len: u32, scale: f32, pad: u32 }
);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EwOp {
    Add,
    Mul,
    Scale,
    GeluTanh,
    GeluErf,
    Silu,
    /// `gelu_tanh(x) * y`: GeGLU's gate (Gemma's FFN) in one pass.
    GeluTanhMul,
    /// `silu(x) * y`: SwiGLU's gate (llama's FFN) in one pass.
    SiluMul,
    /// `scale * tanh(x / scale)`: Gemma 2's soft-capping of the output logits.
    Softcap,
}

impl EwOp {
    pub fn name(self) -> &'static str {
        match self {
            EwOp::Add => "add",
            EwOp::Mul => "mul",
            EwOp::Scale => "scale",
            EwOp::GeluTanh => "gelu_tanh",
            EwOp::GeluErf => "gelu_erf",
            EwOp::Silu => "silu",
            EwOp::GeluTanhMul => "gelu_tanh_mul",
            EwOp::SiluMul => "silu_mul",
            EwOp::Softcap => "softcap",
        }
    }
    pub fn is_binary(self) -> bool {
        matches!(
            self,
            EwOp::Add | EwOp::Mul | EwOp::GeluTanhMul | EwOp::SiluMul
        )
    }
    fn expr(self) -> &'static str {
        match self {
            EwOp::Add => "a + y[i % p.b_len]",
            EwOp::Mul => "a * y[i % p.b_len]",
            EwOp::Scale => "a * p.scale",
            EwOp::GeluTanh => "gelu_tanh(a)",
            EwOp::GeluErf => "gelu_erf(a)",
            EwOp::Silu => "silu(a)",
            EwOp::GeluTanhMul => "gelu_tanh(a) * y[i % p.b_len]",
            EwOp::SiluMul => "silu(a) * y[i % p.b_len]",
            EwOp::Softcap => "softcap(a, T(p.scale))",
        }
    }
}

/// `out[i] = op(x[i], y[i % b_len])`. `len` elements, `b_len` divides `len` (binary ops only).
#[derive(Clone, Debug, PartialEq)]
pub struct ElementwiseSpec {
    pub op: EwOp,
    pub len: u64,
    pub b_len: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElementwiseConfig {
    pub wg: u32,
    pub vec: u32,
}

impl ElementwiseSpec {
    pub fn params(&self, cfg: &ElementwiseConfig, scale: f32) -> EwParams {
        let v = cfg.vec as u64;
        EwParams {
            len: (self.len / v) as u32,
            b_len: (self.b_len.max(1) / v) as u32,
            scale,
            pad: 0,
        }
    }
}

impl KernelSpec for ElementwiseSpec {
    type Config = ElementwiseConfig;

    fn family(&self) -> &'static str {
        "elementwise"
    }

    fn tune_key(&self) -> String {
        let b = if self.b_len == self.len {
            0
        } else {
            self.b_len
        };
        format!(
            "elementwise.{}|n{}.b{}",
            self.op.name(),
            crate::tune::bucket(self.len),
            crate::tune::bucket(b)
        )
    }

    fn key(&self, cfg: &ElementwiseConfig) -> String {
        format!(
            "elementwise.{}.f32.v{}.wg{}",
            self.op.name(),
            cfg.vec,
            cfg.wg
        )
    }

    fn bindings(&self, _cfg: &ElementwiseConfig) -> Vec<BindingDecl> {
        let mut b = vec![BindingDecl::uniform(0, "p"), BindingDecl::read(1, "x")];
        if self.op.is_binary() {
            b.push(BindingDecl::read(2, "y"));
            b.push(BindingDecl::read_write(3, "out"));
        } else {
            b.push(BindingDecl::read_write(2, "out"));
        }
        b
    }

    fn render(&self, cfg: &ElementwiseConfig) -> Result<String, JitError> {
        let f = "elementwise.wgsl";
        let t = if cfg.vec == 4 { "vec4<f32>" } else { "f32" };
        let (y_decl, out_binding) = if self.op.is_binary() {
            (section(f, ELEMENTWISE, "y_decl")?.to_string(), "3")
        } else {
            (String::new(), "2")
        };
        render(
            f,
            section(f, ELEMENTWISE, "main")?,
            &[
                ("KEY", self.key(cfg)),
                ("PARAMS", EwParams::wgsl_decl()),
                ("T", t.into()),
                ("Y_DECL", y_decl),
                ("OUT_BINDING", out_binding.into()),
                ("FUNCS", section(f, ELEMENTWISE, "math")?.to_string()),
                ("EXPR", self.op.expr().into()),
            ],
        )
    }

    fn overrides(&self, cfg: &ElementwiseConfig) -> Vec<(String, f64)> {
        vec![("WG".into(), cfg.wg as f64)]
    }

    fn dispatch(&self, cfg: &ElementwiseConfig) -> [u32; 3] {
        linear_dispatch(self.len / cfg.vec as u64, cfg.wg)
    }

    fn check(&self, profile: &DeviceProfile, cfg: &ElementwiseConfig) -> Result<(), JitError> {
        let key = self.key(cfg);
        check_workgroup(self.family(), &key, profile, cfg.wg)?;
        let lens4 =
            self.len.is_multiple_of(4) && (!self.op.is_binary() || self.b_len.is_multiple_of(4));
        check_vec(self.family(), &key, cfg.vec, lens4, "lengths")?;
        if self.op.is_binary() && (self.b_len == 0 || !self.len.is_multiple_of(self.b_len)) {
            return Err(JitError::UnsupportedProblem {
                family: self.family().into(),
                reason: format!(
                    "second operand length {} does not divide {}",
                    self.b_len, self.len
                ),
            });
        }
        if self.len / cfg.vec as u64 > u32::MAX as u64 {
            return Err(illegal(
                self.family(),
                &key,
                "more than 2^32 elements in one dispatch",
            ));
        }
        Ok(())
    }

    fn space(&self, profile: &DeviceProfile) -> Vec<ElementwiseConfig> {
        super::wg_vec_space(
            |wg, vec| ElementwiseConfig { wg, vec },
            |c| self.check(profile, c).is_ok(),
        )
    }

    fn default_config(&self, profile: &DeviceProfile) -> ElementwiseConfig {
        let c = ElementwiseConfig { wg: 256, vec: 4 };
        if self.check(profile, &c).is_ok() {
            return c;
        }
        let c = ElementwiseConfig { wg: 256, vec: 1 };
        if self.check(profile, &c).is_ok() {
            return c;
        }
        ElementwiseConfig { wg: 64, vec: 1 }
    }
}
