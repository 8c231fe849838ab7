//! Neighborhood attention (NATTEN semantics) in f64, built the slow and obvious way: an
//! explicit neighbour mask per query from the NATTEN rule, then a dense masked softmax over
//! every key of the grid.

/// One problem. Per-axis vectors have one entry per token axis, outermost first.
#[derive(Clone, Debug)]
pub struct NaProblem {
    pub batch: usize,
    pub heads: usize,
    /// Token axes, outermost first.
    pub dims: Vec<usize>,
    pub head_dim: usize,
    pub kernel: Vec<usize>,
    pub dilation: Vec<usize>,
    pub causal: Vec<bool>,
    pub scale: f64,
}

/// Positions of an axis of length `len` that the query at position `i` sees, each with its
/// offset (key - query) counted in dilation-group steps. The group is listed explicitly and
/// the window is picked from that list.
pub fn axis_window(
    len: usize,
    kernel: usize,
    dilation: usize,
    causal: bool,
    i: usize,
) -> Vec<(usize, isize)> {
    let group: Vec<usize> = (i % dilation..len).step_by(dilation).collect();
    let idx = group.iter().position(|&x| x == i).unwrap_or(0);
    let (start, end) = if causal {
        (idx.saturating_sub(kernel - 1), idx)
    } else {
        // Centre on the query, then shift the window back inside the group at the borders.
        let centred = idx as isize - (kernel / 2) as isize;
        let start = centred.clamp(0, group.len() as isize - kernel as isize) as usize;
        (start, start + kernel - 1)
    };
    (start..=end)
        .map(|g| (group[g], g as isize - idx as isize))
        .collect()
}

impl NaProblem {
    pub fn tokens(&self) -> usize {
        self.dims.iter().product()
    }

    /// Grid coordinates of flat token index `t`.
    pub fn coords(&self, mut t: usize) -> Vec<usize> {
        let mut c = vec![0; self.dims.len()];
        for a in (0..self.dims.len()).rev() {
            c[a] = t % self.dims[a];
            t /= self.dims[a];
        }
        c
    }

    /// The (key - query) group offset per axis if the query at `qc` sees the key at `kc`.
    pub fn neighbour(&self, qc: &[usize], kc: &[usize]) -> Option<Vec<isize>> {
        let mut offs = Vec::with_capacity(qc.len());
        for a in 0..qc.len() {
            let w = axis_window(
                self.dims[a],
                self.kernel[a],
                self.dilation[a],
                self.causal[a],
                qc[a],
            );
            let (_, off) = w.into_iter().find(|&(pos, _)| pos == kc[a])?;
            offs.push(off);
        }
        Some(offs)
    }

    /// Flat index into rpb [heads, 2k0-1, ...] of head `h` and per-axis offsets.
    pub fn rpb_index(&self, h: usize, offs: &[isize]) -> usize {
        let mut i = h;
        for (a, &o) in offs.iter().enumerate() {
            i = i * (2 * self.kernel[a] - 1) + (o + self.kernel[a] as isize - 1) as usize;
        }
        i
    }

    /// Elements of rpb: heads x prod(2k - 1).
    pub fn rpb_len(&self) -> usize {
        self.heads * self.kernel.iter().map(|&k| 2 * k - 1).product::<usize>()
    }
}

/// q, k, v [batch, heads, X(, Y(, Z)), d]; rpb [heads, 2k0-1(, 2k1-1(, 2k2-1))] -> [batch,
/// heads, X(, Y(, Z)), d].
pub fn neighborhood(
    p: &NaProblem,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    rpb: Option<&[f32]>,
) -> Vec<f64> {
    let (n, d) = (p.tokens(), p.head_dim);
    // [n, n]: the mask and the bias offsets, the same for every batch entry and head.
    let coords: Vec<Vec<usize>> = (0..n).map(|t| p.coords(t)).collect();
    let mask: Vec<Vec<Option<Vec<isize>>>> = coords
        .iter()
        .map(|qc| coords.iter().map(|kc| p.neighbour(qc, kc)).collect())
        .collect();
    let mut out = vec![0.0f64; p.batch * p.heads * n * d];
    let mut s = vec![f64::NEG_INFINITY; n];
    for bh in 0..p.batch * p.heads {
        let h = bh % p.heads;
        let base = bh * n * d;
        for (i, row) in mask.iter().enumerate() {
            let qo = base + i * d;
            let mut m = f64::NEG_INFINITY;
            for (j, (sj, visible)) in s.iter_mut().zip(row).enumerate() {
                *sj = match visible {
                    None => f64::NEG_INFINITY,
                    Some(offs) => {
                        let ko = base + j * d;
                        let dot: f64 = (0..d).map(|c| q[qo + c] as f64 * k[ko + c] as f64).sum();
                        let bias = rpb.map_or(0.0, |r| r[p.rpb_index(h, offs)] as f64);
                        dot * p.scale + bias
                    }
                };
                m = m.max(*sj);
            }
            let mut l = 0.0;
            for sj in s.iter_mut() {
                *sj = if sj.is_finite() { (*sj - m).exp() } else { 0.0 };
                l += *sj;
            }
            for (j, &pj) in s.iter().enumerate() {
                if pj == 0.0 {
                    continue;
                }
                let vo = base + j * d;
                for c in 0..d {
                    out[qo + c] += pj / l * v[vo + c] as f64;
                }
            }
        }
    }
    out
}
