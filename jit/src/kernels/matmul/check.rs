//! Legality of a `MatmulSpec` config (a child module of `matmul`, which calls `check_config`
//! from `KernelSpec::check`): the epilogue's requirements, each form's shape rules, workgroup
//! memory and the device's grid.

use super::{MatmulConfig, MatmulForm, MatmulSpec, SPLIT_OUTPUTS};
use crate::error::JitError;
use crate::kernels::{check_workgroup, illegal};
use crate::profile::DeviceProfile;
use crate::spec::{div_ceil, KernelSpec};

impl MatmulSpec {
    /// `KernelSpec::check`: the epilogue's needs, then the config's form.
    pub(super) fn check_config(
        &self,
        profile: &DeviceProfile,
        c: &MatmulConfig,
    ) -> Result<(), JitError> {
        let key = self.key(c);
        let f = self.family();
        let l = &profile.limits;
        let e = self.epilogue;
        if e.outputs() > 1
            && (self.batch > 1
                || e.residual
                || e.outputs() as usize > SPLIT_OUTPUTS.len() + 1
                || !self.n.is_multiple_of(e.outputs() as u64))
        {
            return Err(JitError::UnsupportedProblem {
                family: f.into(),
                reason: format!(
                    "a split output needs batch 1, no residual, at most {} parts and N divisible by {}",
                    SPLIT_OUTPUTS.len() + 1,
                    e.outputs()
                ),
            });
        }
        if e.norm && self.batch > 1 {
            return Err(JitError::UnsupportedProblem {
                family: f.into(),
                reason: "a LayerNorm of A needs batch 1".into(),
            });
        }
        if e.norm {
            let wg = c.workgroup_size();
            if c.bm == 0 || wg < c.bm || !wg.is_multiple_of(c.bm) {
                return Err(illegal(
                    f,
                    &key,
                    "a LayerNorm of A needs a whole number of invocations per row of the tile",
                ));
            }
        }
        if c.form != MatmulForm::Tiled {
            return self.check_direct(profile, c);
        }
        if ![1, 4].contains(&c.vec) || ![1, 4].contains(&c.load_vec) {
            return Err(illegal(f, &key, "vector widths must be 1 or 4"));
        }
        if c.tm == 0 || c.tn == 0 || !c.bm.is_multiple_of(c.tm) || !c.bn.is_multiple_of(c.tn) {
            return Err(illegal(
                f,
                &key,
                "invocation tile must divide the workgroup tile",
            ));
        }
        if c.vec == 4 && (!c.tm.is_multiple_of(4) || !c.tn.is_multiple_of(4)) {
            return Err(illegal(
                f,
                &key,
                "vec4 accumulators need tm and tn divisible by 4",
            ));
        }
        let wg = c.workgroup_size();
        check_workgroup(f, &key, profile, wg)?;
        if !c.bk.is_multiple_of(c.load_vec) || !c.bn.is_multiple_of(c.load_vec) {
            return Err(illegal(f, &key, "load width must divide bk and bn"));
        }
        let loads_a = c.bm * c.bk / c.load_vec;
        let loads_b = c.bn * c.bk / c.load_vec;
        if !loads_a.is_multiple_of(wg)
            || !loads_b.is_multiple_of(wg)
            || loads_a < wg
            || loads_b < wg
        {
            return Err(illegal(
                f,
                &key,
                format!("tile loads ({loads_a}, {loads_b}) must be whole multiples of the workgroup ({wg})"),
            ));
        }
        let shared = (c.bm + c.bn) * c.bk * 4 + self.norm_shared(c);
        if shared > l.max_compute_workgroup_storage_size {
            return Err(illegal(
                f,
                &key,
                format!(
                    "{shared} bytes of workgroup memory exceed the device's {}",
                    l.max_compute_workgroup_storage_size
                ),
            ));
        }
        if c.load_vec == 4
            && (!self.k.is_multiple_of(4) || (!self.trans_b && !self.n.is_multiple_of(4)))
        {
            return Err(illegal(
                f,
                &key,
                "vec4 loads need K (and N when B is not transposed) divisible by 4",
            ));
        }
        self.check_sizes(profile, c, &key)
    }

    fn check_direct(&self, profile: &DeviceProfile, c: &MatmulConfig) -> Result<(), JitError> {
        let key = self.key(c);
        let f = self.family();
        let l = &profile.limits;
        if !self.trans_b {
            return Err(illegal(f, &key, "this form needs B transposed"));
        }
        let shape_ok = match c.form {
            MatmulForm::Direct => c.bk == 0 && c.bn.is_multiple_of(c.tn),
            MatmulForm::SplitK => c.bn == c.tn && c.bk.is_power_of_two() && c.tm * c.tn <= c.bk,
            MatmulForm::Tiled => false,
        };
        if c.tm == 0 || c.tn == 0 || c.bm != c.tm || c.vec != 1 || !shape_ok {
            return Err(illegal(f, &key, "malformed config of its form"));
        }
        if c.tm * c.tn > 64 {
            return Err(illegal(f, &key, "at most 64 outputs per invocation"));
        }
        let shared = self.norm_shared(c)
            + if c.form == MatmulForm::SplitK {
                c.tm * c.tn * c.bk * 4
            } else {
                0
            };
        if shared > l.max_compute_workgroup_storage_size {
            return Err(illegal(
                f,
                &key,
                format!("{shared} bytes of workgroup memory exceed the device's limit"),
            ));
        }
        if ![1, 4].contains(&c.load_vec) {
            return Err(illegal(f, &key, "load width must be 1 or 4"));
        }
        if c.load_vec == 4 && !self.k.is_multiple_of(4) {
            return Err(illegal(f, &key, "vec4 loads need K divisible by 4"));
        }
        check_workgroup(f, &key, profile, c.workgroup_size())?;
        self.check_sizes(profile, c, &key)
    }

    /// Workgroup memory of the `Epilogue::norm` statistics (none without it).
    fn norm_shared(&self, c: &MatmulConfig) -> u32 {
        if self.epilogue.norm {
            (c.workgroup_size() + c.bm) * 8
        } else {
            0
        }
    }

    /// Checks shared by every form: a non-empty problem, operands indexable in u32, and a grid
    /// within the device's limits.
    fn check_sizes(
        &self,
        profile: &DeviceProfile,
        c: &MatmulConfig,
        key: &str,
    ) -> Result<(), JitError> {
        let f = self.family();
        let l = &profile.limits;
        if self.m == 0 || self.n == 0 || self.k == 0 {
            return Err(JitError::UnsupportedProblem {
                family: f.into(),
                reason: "empty matrix".into(),
            });
        }
        let biggest =
            (self.batch.max(1)) * (self.m * self.k).max(self.k * self.n).max(self.m * self.n);
        if biggest > u32::MAX as u64 {
            return Err(JitError::UnsupportedProblem {
                family: f.into(),
                reason: format!("an operand has {biggest} elements, above 2^32"),
            });
        }
        if div_ceil(self.m, c.bm as u64) > l.max_compute_workgroups_per_dimension
            || div_ceil(self.n, c.bn as u64) > l.max_compute_workgroups_per_dimension
            || self.batch > l.max_compute_workgroups_per_dimension as u64
        {
            return Err(illegal(
                f,
                key,
                "grid exceeds the device's workgroups per dimension",
            ));
        }
        Ok(())
    }
}
