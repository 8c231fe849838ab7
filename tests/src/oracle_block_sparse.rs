//! f64 block-sparse attention: the gating and selection re-implemented in plain loops, then
//! dense masked softmax with the block mask they produce. Same rules as
//! `webjit_engine::ops::block_sparse_attention` (see `SparseOptions`).

/// How selection rows choose blocks.
#[derive(Clone, Debug)]
pub enum BsSelect {
    TopK(usize),
    Threshold(f64),
    /// [n_blocks, n_blocks] query block x key block, shared by batch and heads.
    Static(Vec<bool>),
}

#[derive(Clone, Debug)]
pub struct BsProblem {
    pub batch: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// [T, H, W]; seq = T * H * W.
    pub grid: [usize; 3],
    /// Box [bt, bh, bw].
    pub block: [usize; 3],
    pub causal: bool,
    pub scale: f64,
    pub select: BsSelect,
    /// Rows are queries (else query blocks, gated by the block's mean query).
    pub per_query: bool,
    /// Rank every (row, block) pair of a head together.
    pub global: bool,
}

/// The selection: [batch, heads, rows, n_blocks] (static: [1, 1, rows, n_blocks]) and the
/// smallest margin of any top-k / threshold decision (gate gap or mass gap).
#[derive(Clone, Debug)]
pub struct BsSelection {
    pub rows: usize,
    pub mask: Vec<bool>,
    pub min_gap: f64,
}

impl BsSelection {
    /// Selected block indices per (batch, head, row), ascending.
    pub fn lists(&self, n_blocks: usize) -> Vec<Vec<u32>> {
        self.mask
            .chunks(n_blocks)
            .map(|r| (0..n_blocks).filter(|&j| r[j]).map(|j| j as u32).collect())
            .collect()
    }
}

impl BsProblem {
    pub fn seq(&self) -> usize {
        self.grid.iter().product()
    }
    fn nb_axis(&self) -> [usize; 3] {
        [0, 1, 2].map(|a| self.grid[a].div_ceil(self.block[a]))
    }
    pub fn n_blocks(&self) -> usize {
        self.nb_axis().iter().product()
    }
    pub fn block_of(&self, t: usize) -> usize {
        let [_, gh, gw] = self.grid;
        let (ti, hi, wi) = (t / (gh * gw), (t / gw) % gh, t % gw);
        let [_, nh, nw] = self.nb_axis();
        ((ti / self.block[0]) * nh + hi / self.block[1]) * nw + wi / self.block[2]
    }
    /// Tokens of block `kb`, ascending.
    pub fn tokens(&self, kb: usize) -> Vec<usize> {
        (0..self.seq())
            .filter(|&t| self.block_of(t) == kb)
            .collect()
    }
    /// Static masks always have query-block rows.
    fn per_query(&self) -> bool {
        self.per_query && !matches!(self.select, BsSelect::Static(_))
    }
    pub fn rows(&self) -> usize {
        if self.per_query() {
            self.seq()
        } else {
            self.n_blocks()
        }
    }
    fn row_of(&self, t: usize) -> usize {
        if self.per_query() {
            t
        } else {
            self.block_of(t)
        }
    }

    /// 0 hidden, 1 competing, 2 forced.
    fn state(&self, r: usize, kb: usize) -> u8 {
        if !self.causal {
            return 1;
        }
        let (own, first) = if self.per_query {
            (self.block_of(r), r)
        } else {
            (r, self.tokens(r)[0])
        };
        if kb == own {
            2
        } else if *self.tokens(kb).last().unwrap_or(&usize::MAX) < first {
            1
        } else {
            0
        }
    }

    /// Mean over block kb of x [batch, seq, heads, d] for (b, h).
    fn mean(&self, x: &[f32], heads: usize, b: usize, kb: usize, h: usize) -> Vec<f64> {
        let d = self.head_dim;
        let toks = self.tokens(kb);
        let mut m = vec![0.0; d];
        for &t in &toks {
            let o = ((b * self.seq() + t) * heads + h) * d;
            for c in 0..d {
                m[c] += x[o + c] as f64;
            }
        }
        m.iter().map(|s| s / toks.len() as f64).collect()
    }

    /// q [batch, seq, n_heads, d], k [batch, seq, n_kv_heads, d].
    pub fn selection(&self, q: &[f32], k: &[f32]) -> BsSelection {
        let nb = self.n_blocks();
        let rows = self.rows();
        let (nbatch, nheads) = match self.select {
            BsSelect::Static(_) => (1, 1),
            _ => (self.batch, self.n_heads),
        };
        let mut mask = vec![false; nbatch * nheads * rows * nb];
        let mut min_gap = f64::INFINITY;
        if let BsSelect::Static(m) = &self.select {
            mask.copy_from_slice(m);
            return BsSelection {
                rows,
                mask,
                min_gap,
            };
        }
        let d = self.head_dim;
        let group = self.n_heads / self.n_kv_heads;
        for b in 0..self.batch {
            for h in 0..self.n_heads {
                let kmeans: Vec<Vec<f64>> = (0..nb)
                    .map(|kb| self.mean(k, self.n_kv_heads, b, kb, h / group))
                    .collect();
                let qrow = |r: usize| -> Vec<f64> {
                    if self.per_query {
                        let o = ((b * self.seq() + r) * self.n_heads + h) * d;
                        q[o..o + d].iter().map(|&x| x as f64).collect()
                    } else {
                        self.mean(q, self.n_heads, b, r, h)
                    }
                };
                // gates[r][kb] for competing pairs.
                let gates: Vec<Vec<f64>> = (0..rows)
                    .map(|r| {
                        let qv = qrow(r);
                        (0..nb)
                            .map(|kb| {
                                let dot: f64 = (0..d).map(|c| qv[c] * kmeans[kb][c]).sum();
                                dot * self.scale
                            })
                            .collect()
                    })
                    .collect();
                let groups: Vec<Vec<usize>> = if self.global {
                    vec![(0..rows).collect()]
                } else {
                    (0..rows).map(|r| vec![r]).collect()
                };
                let base = (b * self.n_heads + h) * rows * nb;
                for grp in groups {
                    let mut cand: Vec<(usize, usize)> = Vec::new();
                    let mut forced = 0usize;
                    for &r in &grp {
                        for kb in 0..nb {
                            match self.state(r, kb) {
                                2 => {
                                    mask[base + r * nb + kb] = true;
                                    forced += 1;
                                }
                                1 => cand.push((r, kb)),
                                _ => {}
                            }
                        }
                    }
                    // Decreasing gate, then increasing (row, block).
                    cand.sort_by(|a, b| {
                        gates[b.0][b.1]
                            .partial_cmp(&gates[a.0][a.1])
                            .unwrap_or(std::cmp::Ordering::Equal)
                            .then(a.cmp(b))
                    });
                    let take = match self.select {
                        BsSelect::TopK(kk) => {
                            let budget = (kk * grp.len()).saturating_sub(forced).min(cand.len());
                            if budget > 0 && budget < cand.len() {
                                let (x, y) = (cand[budget - 1], cand[budget]);
                                min_gap = min_gap.min(gates[x.0][x.1] - gates[y.0][y.1]);
                            }
                            budget
                        }
                        BsSelect::Threshold(t) => {
                            if t >= 1.0 {
                                cand.len()
                            } else {
                                let mx = cand
                                    .iter()
                                    .map(|&(r, kb)| gates[r][kb])
                                    .fold(f64::NEG_INFINITY, f64::max);
                                let e: Vec<f64> = cand
                                    .iter()
                                    .map(|&(r, kb)| (gates[r][kb] - mx).exp())
                                    .collect();
                                let tot: f64 = e.iter().sum();
                                let mut before = 0.0;
                                let mut n = 0;
                                for (i, x) in e.iter().enumerate() {
                                    min_gap = min_gap.min((before / tot - t).abs());
                                    if before / tot < t {
                                        n = i + 1;
                                    }
                                    before += x;
                                }
                                n
                            }
                        }
                        BsSelect::Static(_) => 0,
                    };
                    for &(r, kb) in &cand[..take] {
                        mask[base + r * nb + kb] = true;
                    }
                }
            }
        }
        BsSelection {
            rows,
            mask,
            min_gap,
        }
    }

    /// Dense masked softmax: query i sees key j iff its row selected j's block (and j <= i if
    /// causal). Rows that see nothing are zero. q, out [batch, seq, n_heads, d].
    pub fn attention(&self, sel: &BsSelection, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f64> {
        let (d, seq, nb) = (self.head_dim, self.seq(), self.n_blocks());
        let group = self.n_heads / self.n_kv_heads;
        let shared = matches!(self.select, BsSelect::Static(_));
        let mut out = vec![0.0; self.batch * seq * self.n_heads * d];
        for b in 0..self.batch {
            for h in 0..self.n_heads {
                let mbase = if shared {
                    0
                } else {
                    (b * self.n_heads + h) * sel.rows * nb
                };
                for i in 0..seq {
                    let qo = ((b * seq + i) * self.n_heads + h) * d;
                    let row = self.row_of(i);
                    let vis: Vec<usize> = (0..seq)
                        .filter(|&j| {
                            sel.mask[mbase + row * nb + self.block_of(j)]
                                && (!self.causal || j <= i)
                        })
                        .collect();
                    let s: Vec<f64> = vis
                        .iter()
                        .map(|&j| {
                            let ko = ((b * seq + j) * self.n_kv_heads + h / group) * d;
                            let dot: f64 =
                                (0..d).map(|c| q[qo + c] as f64 * k[ko + c] as f64).sum();
                            dot * self.scale
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                    let tot: f64 = e.iter().sum();
                    for (&j, w) in vis.iter().zip(&e) {
                        let vo = ((b * seq + j) * self.n_kv_heads + h / group) * d;
                        for c in 0..d {
                            out[qo + c] += w / tot * v[vo + c] as f64;
                        }
                    }
                }
            }
        }
        out
    }
}

/// Sparse Transformer strided pattern at block granularity: [nb, nb].
pub fn strided_mask(nb: usize, local: usize, stride: usize) -> Vec<bool> {
    let mut m = Vec::with_capacity(nb * nb);
    for i in 0..nb {
        for j in 0..nb {
            let dist = i.abs_diff(j);
            m.push(dist < local || dist % stride == 0);
        }
    }
    m
}

/// Sparse Transformer fixed pattern at block granularity: [nb, nb].
pub fn fixed_mask(nb: usize, chunk: usize, summary: usize) -> Vec<bool> {
    let mut m = Vec::with_capacity(nb * nb);
    for i in 0..nb {
        for j in 0..nb {
            m.push(i / chunk == j / chunk || j % chunk >= chunk - summary);
        }
    }
    m
}
