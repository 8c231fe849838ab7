//! Dense f64 masked-softmax attention: the reference for the fused prefill and decode kernels.

/// One attention problem; the same mask rules as `webjit_jit::kernels::attention`.
#[derive(Clone, Debug)]
pub struct AttnProblem {
    pub batch: usize,
    pub seq_q: usize,
    pub seq_kv: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub causal: bool,
    pub window: Option<usize>,
    pub scale: f64,
    pub softcap: Option<f64>,
    /// [batch] valid keys per batch entry.
    pub kv_lens: Vec<usize>,
    /// Absolute position of query row 0.
    pub q_pos0: usize,
}

impl AttnProblem {
    /// Whether the query at absolute position `qp` sees key `j` of batch entry `b`.
    pub fn visible(&self, b: usize, qp: usize, j: usize) -> bool {
        if j >= self.kv_lens[b] {
            return false;
        }
        if self.causal && j > qp {
            return false;
        }
        if let Some(w) = self.window {
            if qp >= j && qp - j >= w {
                return false;
            }
            if !self.causal && j > qp && j - qp >= w {
                return false;
            }
        }
        true
    }

    /// Number of (query, key) pairs the mask lets through, over all batches and heads.
    pub fn visible_pairs(&self) -> u64 {
        let mut n = 0u64;
        for b in 0..self.batch {
            for i in 0..self.seq_q {
                n += (0..self.seq_kv)
                    .filter(|&j| self.visible(b, i + self.q_pos0, j))
                    .count() as u64;
            }
        }
        n * self.n_heads as u64
    }
}

/// q [batch, seq_q, n_heads, d]; k, v [batch, seq_kv, n_kv_heads, d] -> [batch, seq_q, n_heads, d].
/// Rows that see no key are zero.
pub fn attention(p: &AttnProblem, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f64> {
    let d = p.head_dim;
    let group = p.n_heads / p.n_kv_heads;
    let mut out = vec![0.0f64; p.batch * p.seq_q * p.n_heads * d];
    let mut s = vec![0.0f64; p.seq_kv];
    for b in 0..p.batch {
        for i in 0..p.seq_q {
            let qp = i + p.q_pos0;
            for h in 0..p.n_heads {
                let kvh = h / group;
                let qo = ((b * p.seq_q + i) * p.n_heads + h) * d;
                let mut m = f64::NEG_INFINITY;
                for (j, sj) in s.iter_mut().enumerate() {
                    if !p.visible(b, qp, j) {
                        *sj = f64::NEG_INFINITY;
                        continue;
                    }
                    let ko = ((b * p.seq_kv + j) * p.n_kv_heads + kvh) * d;
                    let dot: f64 = (0..d).map(|c| q[qo + c] as f64 * k[ko + c] as f64).sum();
                    let mut x = dot * p.scale;
                    if let Some(cap) = p.softcap {
                        x = cap * (x / cap).tanh();
                    }
                    *sj = x;
                    m = m.max(x);
                }
                if m == f64::NEG_INFINITY {
                    continue;
                }
                let mut l = 0.0;
                for sj in s.iter_mut() {
                    *sj = if *sj == f64::NEG_INFINITY {
                        0.0
                    } else {
                        (*sj - m).exp()
                    };
                    l += *sj;
                }
                for (j, &pj) in s.iter().enumerate() {
                    if pj == 0.0 {
                        continue;
                    }
                    let vo = ((b * p.seq_kv + j) * p.n_kv_heads + kvh) * d;
                    for c in 0..d {
                        out[qo + c] += pj / l * v[vo + c] as f64;
                    }
                }
            }
        }
    }
    out
}

/// IEEE half (bits) to f32, exactly.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if man == 0 => sign,
        0 => {
            // Subnormal: renormalize.
            let shift = man.leading_zeros() - 21;
            let man = (man << shift) & 0x3ff;
            sign | ((127 - 15 + 1 - shift) << 23) | (man << 13)
        }
        0x1f => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// Unpacks u32 words holding two halves each (low half first, as `pack2x16float`).
pub fn unpack_f16_pairs(words: &[u32]) -> Vec<f32> {
    words
        .iter()
        .flat_map(|&w| [f16_to_f32(w as u16), f16_to_f32((w >> 16) as u16)])
        .collect()
}
