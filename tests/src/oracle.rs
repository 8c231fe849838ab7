//! Plain f64 reference implementations. Inputs are f32 (as the GPU sees them), math is f64.

pub fn add(x: &[f32], y: &[f32]) -> Vec<f64> {
    // x: [n], y: [m] with m dividing n, repeated
    x.iter()
        .enumerate()
        .map(|(i, &a)| a as f64 + y[i % y.len()] as f64)
        .collect()
}

pub fn mul(x: &[f32], y: &[f32]) -> Vec<f64> {
    x.iter()
        .enumerate()
        .map(|(i, &a)| a as f64 * y[i % y.len()] as f64)
        .collect()
}

pub fn scale(x: &[f32], s: f32) -> Vec<f64> {
    x.iter().map(|&a| a as f64 * s as f64).collect()
}

pub fn gelu_erf(x: &[f32]) -> Vec<f64> {
    x.iter()
        .map(|&a| {
            let a = a as f64;
            0.5 * a * (1.0 + libm::erf(a / std::f64::consts::SQRT_2))
        })
        .collect()
}

pub fn gelu_tanh(x: &[f32]) -> Vec<f64> {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    x.iter()
        .map(|&a| {
            let a = a as f64;
            0.5 * a * (1.0 + (c * (a + 0.044715 * a * a * a)).tanh())
        })
        .collect()
}

pub fn silu(x: &[f32]) -> Vec<f64> {
    x.iter()
        .map(|&a| {
            let a = a as f64;
            a / (1.0 + (-a).exp())
        })
        .collect()
}

/// x: [rows, cols], w: [cols]
pub fn rms_norm(x: &[f32], w: &[f32], cols: usize, eps: f64, w_offset: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(cols) {
        let ms = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / cols as f64;
        let inv = 1.0 / (ms + eps).sqrt();
        out.extend(
            row.iter()
                .zip(w)
                .map(|(&v, &wv)| v as f64 * inv * (wv as f64 + w_offset)),
        );
    }
    out
}

/// x: [rows, cols], w, b: [cols]
pub fn layer_norm(x: &[f32], w: &[f32], b: &[f32], cols: usize, eps: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(cols) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / cols as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / cols as f64;
        let inv = 1.0 / (var + eps).sqrt();
        out.extend(
            row.iter()
                .zip(w.iter().zip(b))
                .map(|(&v, (&wv, &bv))| (v as f64 - mean) * inv * wv as f64 + bv as f64),
        );
    }
    out
}

/// x: [rows, cols]
pub fn softmax(x: &[f32], cols: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(cols) {
        let m = row
            .iter()
            .map(|&v| v as f64)
            .fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp()).collect();
        let s: f64 = e.iter().sum();
        out.extend(e.iter().map(|v| v / s));
    }
    out
}

/// x: [tokens, heads, head_dim]; rotate the first `rot` dims of each head.
pub fn rope(
    x: &[f32],
    heads: usize,
    head_dim: usize,
    rot: usize,
    positions: &[u32],
    base: f64,
    neox: bool,
) -> Vec<f64> {
    let mut out: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    for (t, &pos) in positions.iter().enumerate() {
        for h in 0..heads {
            let off = (t * heads + h) * head_dim;
            for i in 0..rot / 2 {
                let theta = pos as f64 * base.powf(-2.0 * i as f64 / rot as f64);
                let (s, c) = theta.sin_cos();
                let (i0, i1) = if neox {
                    (i, i + rot / 2)
                } else {
                    (2 * i, 2 * i + 1)
                };
                let a = x[off + i0] as f64;
                let b = x[off + i1] as f64;
                out[off + i0] = a * c - b * s;
                out[off + i1] = b * c + a * s;
            }
        }
    }
    out
}

/// table: [vocab, dim] -> [ids.len(), dim]
pub fn embedding(table: &[f32], dim: usize, ids: &[u32], scale: f64) -> Vec<f64> {
    ids.iter()
        .flat_map(|&id| {
            table[id as usize * dim..(id as usize + 1) * dim]
                .iter()
                .map(move |&v| v as f64 * scale)
        })
        .collect()
}

/// a: [batch, m, k]; b: [batch, k, n] or, with trans_b, [batch, n, k] (batch 1 = shared b).
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    a: &[f32],
    b: &[f32],
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    trans_b: bool,
    shared_b: bool,
) -> Vec<f64> {
    let mut out = vec![0.0; batch * m * n];
    for bt in 0..batch {
        let ao = bt * m * k;
        let bo = if shared_b { 0 } else { bt * k * n };
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for p in 0..k {
                    let bv = if trans_b {
                        b[bo + j * k + p]
                    } else {
                        b[bo + p * n + j]
                    };
                    s += a[ao + i * k + p] as f64 * bv as f64;
                }
                out[bt * m * n + i * n + j] = s;
            }
        }
    }
    out
}

/// x: [batch, seq, dim] -> [batch, dim], mean over the first lens[b] tokens.
pub fn mean_pool(x: &[f32], seq: usize, dim: usize, lens: &[u32]) -> Vec<f64> {
    let mut out = Vec::with_capacity(lens.len() * dim);
    for (b, &n) in lens.iter().enumerate() {
        for d in 0..dim {
            let s: f64 = (0..n as usize)
                .map(|t| x[(b * seq + t) * dim + d] as f64)
                .sum();
            out.push(s / n as f64);
        }
    }
    out
}

/// x: [rows, cols] -> rows divided by max(L2 norm, eps).
pub fn l2_normalize(x: &[f32], cols: usize, eps: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(cols) {
        let n = row
            .iter()
            .map(|&v| (v as f64).powi(2))
            .sum::<f64>()
            .sqrt()
            .max(eps);
        out.extend(row.iter().map(|&v| v as f64 / n));
    }
    out
}
