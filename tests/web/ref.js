// Plain f64 references for the browser tests (the JS twins of tests/src/oracle_*.rs): dense
// masked softmax per query, with the mask built the slow and obvious way. No dependencies:
// runs in the browser and in node (tests/web/ref.selftest.mjs).

/** Seeded PRNG (mulberry32) so that every failure can be replayed from its seed. */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n uniform values in [-1, 1) (never all zeros: zeros hide unwritten outputs). */
export function randomF32(n, rand) {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = rand() * 2 - 1;
  return x;
}

/** Dense masked softmax of one query row against `keys` (indices), weights out. */
function softmaxRow(scores) {
  let m = -Infinity;
  for (const s of scores) m = Math.max(m, s);
  const e = scores.map((s) => Math.exp(s - m));
  const tot = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / tot);
}

// ---------------- neighborhood attention (NATTEN) ----------------

/**
 * Positions of an axis of length `len` that the query at `i` sees (NATTEN): keys in the
 * query's dilation group (same i mod dilation); a window of `kernel` group members centred on
 * the query and shifted back inside the group at the borders, or (causal) the query and the
 * kernel-1 group members before it.
 */
export function axisWindow(len, kernel, dilation, causal, i) {
  const group = [];
  for (let x = i % dilation; x < len; x += dilation) group.push(x);
  const idx = group.indexOf(i);
  let start, end;
  if (causal) {
    start = Math.max(0, idx - (kernel - 1));
    end = idx;
  } else {
    const centred = idx - Math.floor(kernel / 2);
    start = Math.min(Math.max(centred, 0), group.length - kernel);
    end = start + kernel - 1;
  }
  const out = [];
  for (let g = start; g <= end; g++) out.push(group[g]);
  return out;
}

/**
 * q, k, v [batch, heads, ...dims, d] -> [batch, heads, ...dims, d] (Float64Array).
 * p: {batch, heads, dims, headDim, kernel, dilation, causal, scale}.
 */
export function neighborhoodRef(p, q, k, v) {
  const { batch, heads, dims, headDim: d } = p;
  const n = dims.reduce((a, b) => a * b, 1);
  const axes = dims.length;
  const coords = (t) => {
    const c = new Array(axes);
    for (let a = axes - 1; a >= 0; a--) {
      c[a] = t % dims[a];
      t = Math.floor(t / dims[a]);
    }
    return c;
  };
  const flat = (c) => c.reduce((acc, x, a) => acc * dims[a] + x, 0);
  // Visible keys per query: the product of the per-axis windows.
  const visible = [];
  for (let t = 0; t < n; t++) {
    const qc = coords(t);
    let sets = [[]];
    for (let a = 0; a < axes; a++) {
      const w = axisWindow(dims[a], p.kernel[a], p.dilation[a], p.causal[a], qc[a]);
      sets = sets.flatMap((s) => w.map((x) => [...s, x]));
    }
    visible.push(sets.map(flat));
  }
  const out = new Float64Array(batch * heads * n * d);
  for (let bh = 0; bh < batch * heads; bh++) {
    const base = bh * n * d;
    for (let i = 0; i < n; i++) {
      const qo = base + i * d;
      const keys = visible[i];
      const scores = keys.map((j) => {
        let dot = 0;
        for (let c = 0; c < d; c++) dot += q[qo + c] * k[base + j * d + c];
        return dot * p.scale;
      });
      const w = softmaxRow(scores);
      keys.forEach((j, r) => {
        for (let c = 0; c < d; c++) out[qo + c] += w[r] * v[base + j * d + c];
      });
    }
  }
  return out;
}

// ---------------- block-sparse attention (MoBA / VMoBA / static patterns) ----------------

/**
 * p: {batch, nHeads, nKvHeads, headDim, grid: [T, H, W], block: [bt, bh, bw], causal, scale,
 *     select: {topK} | {threshold} | {strided: {local, stride}} | {fixed: {chunk, summary}},
 *     perQuery (rows are queries, else query blocks), global}
 */
export class BlockSparseRef {
  constructor(p) {
    this.p = p;
    this.seq = p.grid[0] * p.grid[1] * p.grid[2];
    this.nbAxis = [0, 1, 2].map((a) => Math.ceil(p.grid[a] / p.block[a]));
    this.nBlocks = this.nbAxis[0] * this.nbAxis[1] * this.nbAxis[2];
    this.isStatic = !!(p.select.strided || p.select.fixed);
    this.perQuery = p.perQuery && !this.isStatic;
    this.rows = this.perQuery ? this.seq : this.nBlocks;
    this.blockOfTok = new Int32Array(this.seq);
    for (let t = 0; t < this.seq; t++) this.blockOfTok[t] = this.blockOf(t);
    this.toks = Array.from({ length: this.nBlocks }, () => []);
    for (let t = 0; t < this.seq; t++) this.toks[this.blockOfTok[t]].push(t);
  }
  blockOf(t) {
    const [, gh, gw] = this.p.grid;
    const ti = Math.floor(t / (gh * gw));
    const hi = Math.floor(t / gw) % gh;
    const wi = t % gw;
    const [, nh, nw] = this.nbAxis;
    const [bt, bh, bw] = this.p.block;
    return (Math.floor(ti / bt) * nh + Math.floor(hi / bh)) * nw + Math.floor(wi / bw);
  }
  rowOf(t) {
    return this.perQuery ? t : this.blockOfTok[t];
  }
  /** 0 hidden, 1 competing, 2 forced (the row's own block under causal masking). */
  state(r, kb) {
    if (!this.p.causal) return 1;
    const own = this.p.perQuery ? this.blockOfTok[r] : r;
    const first = this.p.perQuery ? r : this.toks[r][0];
    if (kb === own) return 2;
    const t = this.toks[kb];
    return t[t.length - 1] < first ? 1 : 0;
  }
  mean(x, heads, b, kb, h) {
    const d = this.p.headDim;
    const m = new Float64Array(d);
    for (const t of this.toks[kb]) {
      const o = ((b * this.seq + t) * heads + h) * d;
      for (let c = 0; c < d; c++) m[c] += x[o + c];
    }
    return m.map((s) => s / this.toks[kb].length);
  }
  staticMask() {
    const nb = this.nBlocks;
    const m = new Uint8Array(nb * nb);
    const s = this.p.select;
    for (let i = 0; i < nb; i++)
      for (let j = 0; j < nb; j++) {
        if (s.strided) {
          const dist = Math.abs(i - j);
          m[i * nb + j] = dist < s.strided.local || dist % s.strided.stride === 0 ? 1 : 0;
        } else {
          const c = s.fixed.chunk;
          m[i * nb + j] = Math.floor(i / c) === Math.floor(j / c) || j % c >= c - s.fixed.summary ? 1 : 0;
        }
      }
    return m;
  }
  /** {mask: [batch, heads, rows, nBlocks] (static: [rows, nBlocks]), minGap}. */
  selection(q, k) {
    const p = this.p;
    const nb = this.nBlocks;
    const rows = this.rows;
    if (this.isStatic) return { mask: this.staticMask(), minGap: Infinity };
    const d = p.headDim;
    const group = p.nHeads / p.nKvHeads;
    const mask = new Uint8Array(p.batch * p.nHeads * rows * nb);
    let minGap = Infinity;
    for (let b = 0; b < p.batch; b++)
      for (let h = 0; h < p.nHeads; h++) {
        const kmeans = [];
        for (let kb = 0; kb < nb; kb++) kmeans.push(this.mean(k, p.nKvHeads, b, kb, Math.floor(h / group)));
        const gates = [];
        for (let r = 0; r < rows; r++) {
          let qv;
          if (p.perQuery) {
            const o = ((b * this.seq + r) * p.nHeads + h) * d;
            qv = Array.from(q.subarray(o, o + d));
          } else qv = this.mean(q, p.nHeads, b, r, h);
          const g = new Float64Array(nb);
          for (let kb = 0; kb < nb; kb++) {
            let dot = 0;
            for (let c = 0; c < d; c++) dot += qv[c] * kmeans[kb][c];
            g[kb] = dot * p.scale;
          }
          gates.push(g);
        }
        const groups = p.global ? [Array.from({ length: rows }, (_, r) => r)] : Array.from({ length: rows }, (_, r) => [r]);
        const base = (b * p.nHeads + h) * rows * nb;
        for (const grp of groups) {
          const cand = [];
          let forced = 0;
          for (const r of grp)
            for (let kb = 0; kb < nb; kb++) {
              const s = this.state(r, kb);
              if (s === 2) {
                mask[base + r * nb + kb] = 1;
                forced++;
              } else if (s === 1) cand.push([r, kb]);
            }
          // Decreasing gate, then increasing (row, block).
          cand.sort((x, y) => gates[y[0]][y[1]] - gates[x[0]][x[1]] || x[0] - y[0] || x[1] - y[1]);
          let take = 0;
          if (p.select.topK !== undefined) {
            const budget = Math.min(Math.max(p.select.topK * grp.length - forced, 0), cand.length);
            if (budget > 0 && budget < cand.length) {
              const [x, y] = [cand[budget - 1], cand[budget]];
              minGap = Math.min(minGap, gates[x[0]][x[1]] - gates[y[0]][y[1]]);
            }
            take = budget;
          } else {
            const t = p.select.threshold;
            if (t >= 1) take = cand.length;
            else {
              let mx = -Infinity;
              for (const [r, kb] of cand) mx = Math.max(mx, gates[r][kb]);
              const e = cand.map(([r, kb]) => Math.exp(gates[r][kb] - mx));
              const tot = e.reduce((a, c) => a + c, 0);
              let before = 0;
              e.forEach((x, i) => {
                minGap = Math.min(minGap, Math.abs(before / tot - t));
                if (before / tot < t) take = i + 1;
                before += x;
              });
            }
          }
          for (const [r, kb] of cand.slice(0, take)) mask[base + r * nb + kb] = 1;
        }
      }
    return { mask, minGap };
  }
  /** q [batch, seq, nHeads, d], k/v [batch, seq, nKvHeads, d] -> Float64Array like q. */
  attention(sel, q, k, v) {
    const p = this.p;
    const { seq, nBlocks: nb } = this;
    const d = p.headDim;
    const group = p.nHeads / p.nKvHeads;
    const out = new Float64Array(p.batch * seq * p.nHeads * d);
    for (let b = 0; b < p.batch; b++)
      for (let h = 0; h < p.nHeads; h++) {
        const mbase = this.isStatic ? 0 : (b * p.nHeads + h) * this.rows * nb;
        const kvh = Math.floor(h / group);
        for (let i = 0; i < seq; i++) {
          const qo = ((b * seq + i) * p.nHeads + h) * d;
          const row = this.rowOf(i);
          const vis = [];
          for (let j = 0; j < seq; j++) {
            if (sel.mask[mbase + row * nb + this.blockOfTok[j]] && (!p.causal || j <= i)) vis.push(j);
          }
          if (!vis.length) continue;
          const scores = vis.map((j) => {
            const ko = ((b * seq + j) * p.nKvHeads + kvh) * d;
            let dot = 0;
            for (let c = 0; c < d; c++) dot += q[qo + c] * k[ko + c];
            return dot * p.scale;
          });
          const w = softmaxRow(scores);
          vis.forEach((j, r) => {
            const vo = ((b * seq + j) * p.nKvHeads + kvh) * d;
            for (let c = 0; c < d; c++) out[qo + c] += w[r] * v[vo + c];
          });
        }
      }
    return out;
  }
}

/** Dense attention q [b, s, h, d], k/v [b, s, hk, d] (causal optional). */
export function denseRef({ batch, seq, nHeads, nKvHeads, headDim, causal, scale }, q, k, v) {
  const r = new BlockSparseRef({
    batch, nHeads, nKvHeads, headDim, grid: [1, 1, seq], block: [1, 1, seq], causal, scale,
    select: { strided: { local: 1, stride: 1 } }, perQuery: false, global: false,
  });
  return r.attention(r.selection(q, k), q, k, v);
}

/**
 * Per element |got - want| <= atol + rtol*|want| (NaN fails) and NMSE <= maxNmse. Returns
 * {ok, worst: {i, got, want}, nmse, bad} so that a failure names its element.
 */
export function compare(got, want, { atol = 1e-4, rtol = 1e-3, maxNmse = 1e-6 } = {}) {
  if (!got || got.length !== want.length) {
    return { ok: false, reason: `length ${got && got.length} != ${want.length}` };
  }
  let bad = 0;
  let worst = null;
  let worstExcess = -Infinity;
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    const g = got[i];
    const w = want[i];
    const err = Math.abs(g - w);
    const tol = atol + rtol * Math.abs(w);
    const excess = Number.isNaN(err) ? Infinity : err - tol;
    if (!(err <= tol)) bad++;
    if (excess > worstExcess) {
      worstExcess = excess;
      worst = { i, got: g, want: w };
    }
    num += (g - w) ** 2;
    den += w * w;
  }
  const nmse = den > 0 ? num / den : num;
  return { ok: bad === 0 && nmse <= maxNmse, bad, worst, nmse };
}
