//! `ops::hadamard`: rows times the orthonormal Walsh-Hadamard matrix in blocks, what a prompt's
//! queries and keys go through before a q8_0 or q4_0 KV cache (`KvCache::key_rotation`).

use webjit_jit::kernels::hadamard::{check_block, HadamardConfig, HadamardSpec};
use webjit_jit::KernelSpec;

use super::{expect_f32, expect_single, output, Call, Op, OpSpec};
use crate::error::{Error, Result};
use crate::recorder::{Bind, Recorder, ReplayFactory};
use crate::tensor::Tensor;

const OP: &str = "hadamard";

/// x [.., width] f32 with each row times the orthonormal `block` x `block` Walsh-Hadamard
/// matrix (Sylvester's order) in blocks along the row; `block` is a power of two dividing
/// `width`. The matrix is symmetric and its own inverse, so applying it twice gives x back
/// (to f32 rounding). Records x's shape.
pub fn hadamard(x: &Tensor, block: usize) -> Call<'_, Hadamard<'_>> {
    Call::new(Hadamard { x, block })
}

pub struct Hadamard<'a> {
    x: &'a Tensor,
    block: usize,
}

impl OpSpec for Hadamard<'_> {
    type Spec = HadamardSpec;
    fn spec(&self) -> Result<HadamardSpec> {
        expect_f32(OP, self.x)?;
        expect_single(OP, "input", self.x)?;
        let width = *self.x.shape().last().unwrap_or(&0);
        check_block(width as u64, self.block as u64).map_err(|detail| Error::Shape {
            op: OP,
            detail: format!("{detail} (input {:?})", self.x.shape()),
        })?;
        Ok(HadamardSpec {
            rows: (self.x.numel() / width) as u64,
            width: width as u64,
            block: self.block as u64,
        })
    }
}

impl Op for Hadamard<'_> {
    type Config = HadamardConfig;
    type Output = Tensor;
    fn record_op(
        self,
        rec: &mut Recorder<'_>,
        out: Option<&Tensor>,
        cfg: Option<HadamardConfig>,
    ) -> Result<Tensor> {
        let spec = self.spec()?;
        let (x, block) = (self.x, self.block);
        let (c, kernel) = rec.kernel(&spec, cfg, || {
            let x = x.clone();
            ReplayFactory::ready(move |rec, c: &HadamardConfig| {
                hadamard(&x, block).config(c.clone()).record(rec)
            })
        })?;
        let out = output(rec, OP, out, x.shape())?;
        if spec.rows == 0 {
            return Ok(out);
        }
        let params = spec.params();
        rec.dispatch(
            &kernel,
            bytemuck::bytes_of(&params),
            &[Bind::whole("x", x), Bind::whole("y", &out)],
            spec.dispatch(&c),
        )?;
        Ok(out)
    }
}
