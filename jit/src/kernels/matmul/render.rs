//! Rendering of `MatmulSpec` (a child module of `matmul`, which only calls `render_form`):
//! the forms of matmul.wgsl, their statements unrolled over the per-invocation tile from
//! matmul_unrolled.wgsl (so accumulators stay in registers on every compiler), and the
//! epilogue of matmul_epilogue.wgsl. All WGSL text lives in those files; this module picks
//! sections and fills in numbers.

use super::{MatmulConfig, MatmulForm, MatmulParams, MatmulSpec};
use crate::error::JitError;
use crate::render::{render, section};
use crate::shaders::{ELEMENTWISE, MATMUL, MATMUL_EPILOGUE, MATMUL_UNROLLED};
use crate::spec::{KernelSpec, UniformStruct};

/// Section `name` of matmul_unrolled.wgsl rendered with `values`, without its final newline.
fn unrolled(name: &str, values: &[(&str, String)]) -> Result<String, JitError> {
    let f = "matmul_unrolled.wgsl";
    let text = render(f, section(f, MATMUL_UNROLLED, name)?, values)?;
    Ok(text.trim_end_matches('\n').to_string())
}

/// Section `name` of matmul_epilogue.wgsl rendered with `values`, without its final newline.
fn epilogue_piece(name: &str, values: &[(&str, String)]) -> Result<String, JitError> {
    let f = "matmul_epilogue.wgsl";
    let text = render(f, section(f, MATMUL_EPILOGUE, name)?, values)?;
    Ok(text.trim_end_matches('\n').to_string())
}

/// Statements, one a line.
fn lines(v: Vec<String>) -> String {
    v.join("\n")
}

/// A number as a placeholder value.
fn n(x: u32) -> String {
    x.to_string()
}

/// `v` or its lane `q` when the value has `lanes` > 1 lanes.
fn lane(v: &str, lanes: u32, q: u32) -> String {
    if lanes > 1 {
        format!("{v}[{q}]")
    } else {
        v.to_string()
    }
}

/// The dot products shared by the direct and split-K forms: row and column bases (clamped
/// at the edges), `tm` x `tn` accumulators and the loop body over LV-wide step `q` of K.
struct DotTile {
    rows: String,
    decl: String,
    body: String,
}

impl DotTile {
    /// `norm`: A's values pass through the `Epilogue::norm` LayerNorm as loaded.
    fn new(tm: u32, tn: u32, norm: bool) -> Result<Self, JitError> {
        let (mut rows, mut decl, mut body) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..tm {
            rows.push(unrolled("dot_a_row", &[("I", n(i))])?);
            if norm {
                rows.push(unrolled("dot_a_stat", &[("I", n(i))])?);
            }
        }
        if norm {
            body.push(unrolled("dot_ln_step", &[])?);
        }
        for j in 0..tn {
            rows.push(unrolled("dot_b_row", &[("J", n(j))])?);
            body.push(unrolled("dot_b", &[("J", n(j))])?);
        }
        let load_a = if norm { "dot_a_norm" } else { "dot_a" };
        for i in 0..tm {
            body.push(unrolled(load_a, &[("I", n(i))])?);
            for j in 0..tn {
                decl.push(unrolled(
                    "acc_decl",
                    &[("I", n(i)), ("J", n(j)), ("T", "LT".into())],
                )?);
                body.push(unrolled("fma", &[("ROW", n(i)), ("I", n(i)), ("J", n(j))])?);
            }
        }
        Ok(DotTile {
            rows: lines(rows),
            decl: lines(decl),
            body: lines(body),
        })
    }
}

impl MatmulSpec {
    pub(super) fn render_form(&self, cfg: &MatmulConfig) -> Result<String, JitError> {
        match cfg.form {
            MatmulForm::Direct => self.render_direct(cfg),
            MatmulForm::SplitK => self.render_split_k(cfg),
            MatmulForm::Tiled => self.render_tiled(cfg),
        }
    }

    /// The `head` section every form starts with: uniforms, load type, bindings, epilogue.
    fn head(&self, cfg: &MatmulConfig) -> Result<String, JitError> {
        let f = "matmul.wgsl";
        let (lt, lanes) = if cfg.load_vec == 4 {
            ("vec4<f32>", "lanes_4")
        } else {
            ("f32", "lanes_1")
        };
        render(
            f,
            section(f, MATMUL, "head")?,
            &[
                ("PARAMS", MatmulParams::wgsl_decl()),
                ("LT", lt.into()),
                ("LANES", section(f, MATMUL, lanes)?.into()),
                ("EPILOGUE", self.gen_epilogue(cfg)?),
            ],
        )
    }

    fn render_direct(&self, cfg: &MatmulConfig) -> Result<String, JitError> {
        let mut store = Vec::new();
        for i in 0..cfg.tm {
            let cols = (0..cfg.tn)
                .map(|j| unrolled("direct_store_col", &[("I", n(i)), ("J", n(j))]))
                .collect::<Result<Vec<_>, _>>()?;
            store.push(unrolled(
                "direct_store_row",
                &[("I", n(i)), ("COLS", lines(cols))],
            )?);
        }
        self.render_dot_form(cfg, "direct", vec![("STORE", lines(store))])
    }

    fn render_split_k(&self, cfg: &MatmulConfig) -> Result<String, JitError> {
        let (tm, tn, wg) = (cfg.tm, cfg.tn, cfg.bk);
        let mut parts = Vec::new();
        for i in 0..tm {
            for j in 0..tn {
                parts.push(unrolled(
                    "splitk_part",
                    &[("O", n(i * tn + j)), ("I", n(i)), ("J", n(j))],
                )?);
            }
        }
        self.render_dot_form(
            cfg,
            "splitk",
            vec![("PART_LEN", n(tm * tn * wg)), ("PARTS", lines(parts))],
        )
    }

    /// The direct or split-K form (section `form` of matmul.wgsl), from what they share (the
    /// head, the dot tile, the sizes) and `extra` values of their own.
    fn render_dot_form(
        &self,
        cfg: &MatmulConfig,
        form: &str,
        extra: Vec<(&str, String)>,
    ) -> Result<String, JitError> {
        let tile = DotTile::new(cfg.tm, cfg.tn, self.epilogue.norm)?;
        let mut values = vec![
            ("KEY", self.key(cfg)),
            ("HEAD", self.head(cfg)?),
            ("TM", n(cfg.tm)),
            ("TN", n(cfg.tn)),
            ("LV", n(cfg.load_vec)),
            ("WG", n(cfg.workgroup_size())),
            ("NORM_PRE", self.norm_pre()?),
            ("ROWS", tile.rows),
            ("ACC_DECL", tile.decl),
            ("BODY", tile.body),
        ];
        values.extend(extra);
        render(
            "matmul.wgsl",
            section("matmul.wgsl", MATMUL, form)?,
            &values,
        )
    }

    fn render_tiled(&self, cfg: &MatmulConfig) -> Result<String, JitError> {
        let vt = if cfg.vec == 4 { "vec4<f32>" } else { "f32" };
        let read_a = if self.epilogue.norm {
            "read_a_norm"
        } else {
            "read_a"
        };
        let load_a = Self::gen_load_k_major(cfg, read_a, "As", cfg.bm, "p.m", "row0")?;
        let load_b = if self.trans_b {
            Self::gen_load_k_major(cfg, "read_bt", "Bs", cfg.bn, "p.n", "col0")?
        } else {
            Self::gen_load_n_major(cfg)?
        };
        let mut acc_decl = Vec::new();
        for r in 0..cfg.tm {
            for j in 0..cfg.tn / cfg.vec {
                acc_decl.push(unrolled(
                    "acc_decl",
                    &[("I", n(r)), ("J", n(j)), ("T", "VT".into())],
                )?);
            }
        }
        render(
            "matmul.wgsl",
            section("matmul.wgsl", MATMUL, "main")?,
            &[
                ("KEY", self.key(cfg)),
                ("HEAD", self.head(cfg)?),
                ("VT", vt.into()),
                ("BM", n(cfg.bm)),
                ("BN", n(cfg.bn)),
                ("BK", n(cfg.bk)),
                ("V", n(cfg.vec)),
                ("LV", n(cfg.load_vec)),
                ("WG_X", n(cfg.bn / cfg.tn)),
                ("WG_Y", n(cfg.bm / cfg.tm)),
                ("WG", n(cfg.workgroup_size())),
                ("AS_LEN", n(cfg.bk * cfg.bm / cfg.vec)),
                ("BS_LEN", n(cfg.bk * cfg.bn / cfg.vec)),
                ("ACC_DECL", lines(acc_decl)),
                ("LOAD_A", load_a),
                ("LOAD_B", load_b),
                ("COMPUTE", Self::gen_compute(cfg)?),
                ("STORE", Self::gen_store(cfg)?),
                ("NORM_PRE", self.norm_pre()?),
            ],
        )
    }

    /// Load of a BR x BK tile of a row-major matrix whose rows run along k (A, or B^T; `read`
    /// names its read), stored transposed into `dst` ([BK, BR / V]).
    fn gen_load_k_major(
        cfg: &MatmulConfig,
        read: &str,
        dst: &str,
        br: u32,
        rows: &str,
        origin: &str,
    ) -> Result<String, JitError> {
        let lv = cfg.load_vec;
        let per_row = cfg.bk / lv;
        let wg = cfg.workgroup_size();
        let (put, stride) = if cfg.vec == 4 {
            ("put_k_major_lanes", br / 4)
        } else {
            ("put_k_major", br)
        };
        let puts = (0..lv)
            .map(|q| {
                unrolled(
                    put,
                    &[
                        ("DST", dst.into()),
                        ("Q", n(q)),
                        ("STRIDE", n(stride)),
                        ("VAL", lane("v", lv, q)),
                    ],
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        unrolled(
            "load_k_major",
            &[
                ("ITERS", n(br * per_row / wg)),
                ("WG", n(wg)),
                ("PER_ROW", n(per_row)),
                ("LV", n(lv)),
                ("ORIGIN", origin.into()),
                ("ROWS", rows.into()),
                ("READ", unrolled(read, &[("LV", n(lv))])?),
                ("PUT", lines(puts)),
            ],
        )
    }

    /// Load of a BK x BN tile of plain B ([K, N]), rows along n, stored as is ([BK, BN / V]).
    fn gen_load_n_major(cfg: &MatmulConfig) -> Result<String, JitError> {
        let lv = cfg.load_vec;
        let per_row = cfg.bn / lv;
        let wg = cfg.workgroup_size();
        let bnv = n(cfg.bn / cfg.vec);
        let put = match (cfg.vec, lv) {
            (4, 4) | (1, 1) => unrolled("put_n_major", &[("BNV", bnv), ("V", n(cfg.vec))])?,
            (4, 1) => unrolled("put_n_major_lane", &[("BNV", bnv)])?,
            _ => lines(
                (0..4)
                    .map(|q| unrolled("put_n_major_lanes", &[("BNV", bnv.clone()), ("Q", n(q))]))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        unrolled(
            "load_n_major",
            &[
                ("ITERS", n(cfg.bk * per_row / wg)),
                ("WG", n(wg)),
                ("PER_ROW", n(per_row)),
                ("LV", n(lv)),
                ("PUT", put),
            ],
        )
    }

    /// One step kk of the tile product: the invocation's B and A words, then every fma.
    fn gen_compute(cfg: &MatmulConfig) -> Result<String, JitError> {
        let v = cfg.vec;
        let (wg_x, wg_y) = (cfg.bn / cfg.tn, cfg.bm / cfg.tm);
        let (bmv, bnv) = (cfg.bm / v, cfg.bn / v);
        let mut s = Vec::new();
        for j in 0..cfg.tn / v {
            s.push(unrolled(
                "compute_b",
                &[("J", n(j)), ("BNV", n(bnv)), ("OFF", n(j * wg_x))],
            )?);
        }
        for i in 0..cfg.tm / v {
            s.push(unrolled(
                "compute_a",
                &[("I", n(i)), ("BMV", n(bmv)), ("OFF", n(i * wg_y))],
            )?);
            for r in 0..v {
                let row = i * v + r;
                for j in 0..cfg.tn / v {
                    s.push(if v == 4 {
                        unrolled(
                            "fma_lane",
                            &[("ROW", n(row)), ("I", n(i)), ("R", n(r)), ("J", n(j))],
                        )?
                    } else {
                        unrolled("fma", &[("ROW", n(row)), ("I", n(i)), ("J", n(j))])?
                    });
                }
            }
        }
        Ok(lines(s))
    }

    /// The tiled form's stores: every lane of every accumulator through `put`.
    fn gen_store(cfg: &MatmulConfig) -> Result<String, JitError> {
        let v = cfg.vec;
        let (wg_x, wg_y) = (cfg.bn / cfg.tn, cfg.bm / cfg.tm);
        let mut s = Vec::new();
        for i in 0..cfg.tm / v {
            for r in 0..v {
                let row = i * v + r;
                let mut cols = Vec::new();
                for j in 0..cfg.tn / v {
                    for q in 0..v {
                        cols.push(unrolled(
                            "store_col",
                            &[
                                ("OFF", n(j * wg_x)),
                                ("V", n(v)),
                                ("Q", n(q)),
                                ("ACC", lane(&format!("acc_{row}_{j}"), v, q)),
                            ],
                        )?);
                    }
                }
                s.push(unrolled(
                    "store_row",
                    &[
                        ("OFF", n(i * wg_y)),
                        ("V", n(v)),
                        ("R", n(r)),
                        ("COLS", lines(cols)),
                    ],
                )?);
            }
        }
        Ok(lines(s))
    }

    /// The call that computes the `Epilogue::norm` statistics of the workgroup's rows (and
    /// stores them normalized from the first column tile), at the top of every form.
    fn norm_pre(&self) -> Result<String, JitError> {
        if self.epilogue.norm {
            epilogue_piece("norm_pre", &[])
        } else {
            Ok(String::new())
        }
    }

    /// The epilogue's bindings (after `c`, in `bindings()` order), its LayerNorm of A, and
    /// `epi` and `put`.
    fn gen_epilogue(&self, cfg: &MatmulConfig) -> Result<String, JitError> {
        let e = self.epilogue;
        let mut decls = Vec::new();
        let mut steps = Vec::new();
        let mut next = 4;
        for i in 1..e.outputs() {
            decls.push(epilogue_piece(
                "out_decl",
                &[("BINDING", n(next)), ("I", n(i))],
            )?);
            next += 1;
        }
        if e.bias {
            decls.push(epilogue_piece("bias_decl", &[("BINDING", n(next))])?);
            steps.push(epilogue_piece("bias", &[])?);
            next += 1;
        }
        if e.residual {
            decls.push(epilogue_piece("res_decl", &[("BINDING", n(next))])?);
            next += 1;
        }
        if e.norm {
            let (bm, wg) = (cfg.bm, cfg.workgroup_size());
            decls.push(epilogue_piece(
                "norm",
                &[
                    ("B0", n(next)),
                    ("B1", n(next + 1)),
                    ("B2", n(next + 2)),
                    ("LN_G", n(wg / bm.max(1))),
                    ("WG", n(wg)),
                    ("BM", n(bm)),
                    ("LV", n(cfg.load_vec)),
                ],
            )?);
        }
        if e.gelu {
            let math = section("elementwise.wgsl", ELEMENTWISE, "math")?;
            decls.push(epilogue_piece("gelu_decl", &[("MATH", math.into())])?);
            steps.push(epilogue_piece("gelu", &[])?);
        }
        if e.residual {
            steps.push(epilogue_piece("res", &[])?);
        }
        let put = if e.outputs() > 1 {
            let stores = (1..e.outputs())
                .map(|i| epilogue_piece("put_part", &[("I", n(i))]))
                .collect::<Result<Vec<_>, _>>()?;
            epilogue_piece(
                "put_split",
                &[("PARTS", n(e.outputs())), ("PARTS_STORE", lines(stores))],
            )?
        } else {
            epilogue_piece("put", &[])?
        };
        render(
            "matmul_epilogue.wgsl",
            section("matmul_epilogue.wgsl", MATMUL_EPILOGUE, "epilogue")?,
            &[
                ("DECLS", lines(decls)),
                ("STEPS", lines(steps)),
                ("PUT", put),
            ],
        )
    }
}
