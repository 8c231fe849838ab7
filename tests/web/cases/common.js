// What the browser cases share: the package under test, the references, model paths, and
// helpers that check results against them.

export { Engine, MODEL_CACHES, clearModelCache } from '/pkg/index.js';
import { Engine } from '/pkg/index.js';
import { BlockSparseRef, compare, neighborhoodRef, randomF32, rng } from '/t/ref.js';
export { BlockSparseRef, compare, neighborhoodRef, randomF32, rng };

export const MODELS = '/models';
export const TINY = `${MODELS}/tiny-llama.gguf`;
export const GEMMA = `${MODELS}/gemma-3-270m-q4_k_m.gguf`;
export const MIB = 1 << 20;
// f32 kernels against the f64 reference; SwiftShader's exp is within a few ULP.
export const F32_TOL = { atol: 1e-4, rtol: 1e-3, maxNmse: 1e-8 };

export function fail(msg) {
  throw new Error(msg);
}

/** Cosine similarity of two equal-length vectors. */
export function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let j = 0; j < b.length; j++) {
    dot += a[j] * b[j];
    na += a[j] * a[j];
    nb += b[j] * b[j];
  }
  return dot / Math.sqrt(na * nb);
}

export async function expectCode(promise, code, what) {
  try {
    await promise;
  } catch (e) {
    if (e.code !== code) fail(`${what}: expected code ${code}, got ${e.code}: ${e.message}`);
    if (!(e instanceof Error)) fail(`${what}: rejected with a non-Error`);
    return e;
  }
  fail(`${what}: expected ${code}, but it succeeded`);
}

export async function json(url) {
  const r = await fetch(url);
  if (!r.ok) fail(`${url}: HTTP ${r.status}`);
  return r.json();
}

export const uniq = () => `${Date.now()}-${Math.floor(Math.random() * 1e9)}`;

/**
 * Reference greedy check (the rule of tests/src/gemma_refs.rs check_greedy): ids must match
 * step by step while llama.cpp's top-1/top-2 gap is >= 0.3; past a narrower step the contexts
 * may legitimately diverge, so the comparison stops there. Top-5 logits within 1.0 of
 * llama.cpp's token-by-token logits, or of its batched ones (`top5_batched`: the same step
 * computed in one batch, where llama.cpp differs from itself by up to ~1.3).
 */
export function checkGreedy(name, ours, greedy) {
  let compared = 0;
  for (let i = 0; i < ours.length && i < greedy.length; i++) {
    const want = greedy[i];
    compared++;
    want.top5.forEach(([, wl], k) => {
      const got = ours[i].top[k];
      const batched = want.top5_batched?.[k];
      const nearBatched = got && batched && Math.abs(got[1] - batched[1]) <= 1.0;
      if (!got || (Math.abs(got[1] - wl) > 1.0 && !nearBatched)) {
        fail(`${name} step ${i}: rank-${k} logit ${got && got[1]} vs llama.cpp ${wl} (ours ${JSON.stringify(ours[i].top)})`);
      }
    });
    if (want.gap < 0.3) break;
    if (ours[i].id !== want.id) fail(`${name} step ${i}: token ${ours[i].id}, llama.cpp ${want.id} (gap ${want.gap})`);
  }
  return compared;
}

/** IEEE half (little-endian u16) to f32. */
export function halfToF32(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** The k largest [id, logit] pairs, largest first. */
export function topK(v, k) {
  const out = [];
  for (let i = 0; i < v.length; i++) {
    if (out.length < k || v[i] > out[out.length - 1][1]) {
      out.push([i, v[i]]);
      out.sort((a, b) => b[1] - a[1]);
      if (out.length > k) out.pop();
    }
  }
  return out;
}

/**
 * Logits at the last prompt position (the rule of tests/src/gemma_refs.rs check_last_logits):
 * finite, llama.cpp's argmax, at least 8 of its top-10 ids in ours, and where the full vector
 * was recorded, NMSE <= 5e-3 over all of it.
 */
export function checkLastLogits(name, ours, r, want) {
  if (want && ours.length !== want.length) fail(`${name}: ${ours.length} logits, llama.cpp has ${want.length}`);
  const bad = ours.findIndex((x) => !Number.isFinite(x));
  if (bad >= 0) fail(`${name}: logit ${bad} is ${ours[bad]}`);
  const mine = topK(ours, 10);
  if (mine[0][0] !== r.last_top10[0][0]) fail(`${name}: argmax ${JSON.stringify(mine[0])}, llama.cpp ${JSON.stringify(r.last_top10[0])}`);
  const shared = r.last_top10.filter(([id]) => mine.some(([m]) => m === id)).length;
  if (shared < 8) fail(`${name}: ${shared} of llama.cpp's top-10 in ours: ${JSON.stringify(mine)} vs ${JSON.stringify(r.last_top10)}`);
  let nmse = null;
  if (want) {
    let num = 0, den = 0;
    for (let i = 0; i < want.length; i++) {
      num += (ours[i] - want[i]) ** 2;
      den += want[i] ** 2;
    }
    nmse = num / Math.max(den, Number.MIN_VALUE);
    if (!(nmse <= 5e-3)) fail(`${name}: NMSE ${nmse} > 5e-3 against llama.cpp`);
  }
  return { shared, nmse };
}

export async function collect(it) {
  const out = [];
  for await (const x of it) out.push(x);
  return out;
}

// ---------------- op level: neighborhood attention ----------------

export async function naCases(engine, log, configs, seed0) {
  let i = 0;
  for (const c of configs) {
    const seed = seed0 + i++;
    const r = rng(seed);
    const n = c.dims.reduce((a, b) => a * b, 1);
    const len = c.batch * c.heads * n * c.headDim;
    const q = randomF32(len, r), k = randomF32(len, r), v = randomF32(len, r);
    const axes = c.dims.length;
    const dilation = c.dilation ?? new Array(axes).fill(1);
    const causal = c.causal ?? new Array(axes).fill(false);
    const opts = { shape: [c.batch, c.heads, ...c.dims, c.headDim], kernel: c.kernel, dilation, causal };
    if (c.scale !== undefined) opts.scale = c.scale;
    const { output, gpuMs } = await engine.neighborhoodAttention(q, k, v, opts);
    const want = neighborhoodRef(
      { ...c, dilation, causal, scale: c.scale ?? 1 / Math.sqrt(c.headDim) }, q, k, v);
    const cmp = compare(output, want, F32_TOL);
    const label = `seed ${seed} ${JSON.stringify(opts)}`;
    if (!cmp.ok) fail(`neighborhood ${label}: ${cmp.reason ?? `${cmp.bad} bad, worst ${JSON.stringify(cmp.worst)}, nmse ${cmp.nmse}`}`);
    log(`  ok ${label} nmse ${cmp.nmse.toExponential(2)}`);
  }
  return { configs: configs.length };
}

export const NA_1D = [
  { batch: 2, heads: 3, dims: [37], headDim: 16, kernel: [7] },
  { batch: 1, heads: 1, dims: [1], headDim: 8, kernel: [1] },
  { batch: 1, heads: 2, dims: [23], headDim: 32, kernel: [5], dilation: [3], scale: 0.3 },
  { batch: 1, heads: 2, dims: [31], headDim: 16, kernel: [5], dilation: [2], causal: [true] },
  { batch: 1, heads: 1, dims: [17], headDim: 64, kernel: [17] },
];
export const NA_2D = [
  { batch: 1, heads: 2, dims: [13, 11], headDim: 32, kernel: [5, 3], dilation: [2, 3] },
  { batch: 2, heads: 1, dims: [8, 9], headDim: 16, kernel: [3, 7], dilation: [1, 1], causal: [true, false] },
  { batch: 1, heads: 3, dims: [7, 7], headDim: 16, kernel: [7, 7], scale: 0.2 },
];
export const NA_3D = [
  { batch: 1, heads: 2, dims: [5, 6, 7], headDim: 16, kernel: [3, 3, 5], dilation: [1, 2, 1] },
  { batch: 1, heads: 1, dims: [4, 5, 3], headDim: 32, kernel: [3, 3, 3], causal: [true, false, false] },
];

// ---------------- op level: block-sparse attention ----------------

/** Seeds whose top-k / threshold decisions are not near ties (else f32 may flip a block). */
export function bsInputs(ref, qLen, kvLen, seed0) {
  for (let seed = seed0; seed < seed0 + 64; seed++) {
    const r = rng(seed);
    const q = randomF32(qLen, r), k = randomF32(kvLen, r), v = randomF32(kvLen, r);
    const sel = ref.selection(q, k);
    if (sel.minGap >= 2e-3) return { seed, q, k, v, sel };
  }
  fail(`no seed from ${seed0} gives a selection margin >= 2e-3`);
}

export async function bsCases(engine, log, configs, seed0) {
  let i = 0;
  for (const c of configs) {
    const [b, s, h, d] = c.qShape;
    const hk = c.kvShape[2];
    const grid3 = !c.grid ? [1, 1, s] : c.grid.length === 2 ? [1, ...c.grid] : c.grid;
    const block3 = typeof c.block === 'number' ? [1, 1, c.block] : c.block;
    const scale = c.scale ?? 1 / Math.sqrt(d);
    const ref = new BlockSparseRef({
      batch: b, nHeads: h, nKvHeads: hk, headDim: d, grid: grid3, block: block3, causal: !!c.causal, scale,
      select: c.select, perQuery: (c.granularity ?? 'query') === 'query', global: !!c.global,
    });
    const { seed, q, k, v, sel } = bsInputs(ref, b * s * h * d, b * s * hk * d, seed0 + 100 * i++);
    const res = await engine.blockSparseAttention(q, k, v, { ...c, returnSelection: true });
    const want = ref.attention(sel, q, k, v);
    const cmp = compare(res.output, want, F32_TOL);
    const label = `seed ${seed} ${JSON.stringify(c)}`;
    if (!cmp.ok) fail(`block-sparse ${label}: ${cmp.reason ?? `${cmp.bad} bad, worst ${JSON.stringify(cmp.worst)}, nmse ${cmp.nmse}`}`);
    // The selection the engine reports: per row (dims [batch, heads, rows]), counts[row]
    // block indices at indices[row * nBlocks ..]; the same sets as the reference's mask.
    const rs = res.selection;
    if (!rs) fail(`block-sparse ${label}: no selection returned`);
    const nb = ref.nBlocks;
    const nRows = rs.dims.reduce((a, x) => a * x, 1);
    if (rs.nBlocks !== nb || nRows * nb !== sel.mask.length) {
      fail(`block-sparse ${label}: selection dims ${JSON.stringify(rs.dims)} x ${rs.nBlocks} blocks, reference ${sel.mask.length / nb} rows x ${nb}`);
    }
    for (let r = 0; r < nRows; r++) {
      const got = Array.from(rs.indices.subarray(r * nb, r * nb + rs.counts[r])).sort((a, b) => a - b);
      const want = [];
      for (let j = 0; j < nb; j++) if (sel.mask[r * nb + j]) want.push(j);
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        fail(`block-sparse ${label}: selection row ${r}: blocks ${JSON.stringify(got)}, reference ${JSON.stringify(want)}`);
      }
    }
    const nSel = sel.mask.reduce((a, x) => a + x, 0);
    log(`  ok ${label} (${nSel} of ${sel.mask.length} row-blocks) nmse ${cmp.nmse.toExponential(2)}`);
  }
  return { configs: configs.length };
}

export const BS_MOBA = [
  { qShape: [1, 61, 4, 32], kvShape: [1, 61, 2, 32], block: 8, select: { topK: 3 }, causal: true },
  { qShape: [2, 33, 2, 16], kvShape: [2, 33, 2, 16], block: 4, select: { topK: 2 }, causal: true, granularity: 'queryBlock' },
  { qShape: [1, 40, 2, 16], kvShape: [1, 40, 1, 16], block: 5, select: { threshold: 0.6 }, causal: false, granularity: 'queryBlock' },
  { qShape: [1, 50, 1, 16], kvShape: [1, 50, 1, 16], block: 5, select: { strided: { local: 2, stride: 3 } }, causal: true },
  { qShape: [1, 1, 1, 8], kvShape: [1, 1, 1, 8], block: 1, select: { topK: 1 }, causal: true },
];
export const BS_GRID = [
  { qShape: [1, 60, 2, 16], kvShape: [1, 60, 2, 16], grid: [6, 10], block: [1, 2, 3], select: { topK: 2 }, causal: false, granularity: 'queryBlock' },
  { qShape: [1, 35, 2, 32], kvShape: [1, 35, 1, 32], grid: [5, 7], block: [1, 2, 2], select: { topK: 3 }, causal: false },
  { qShape: [1, 60, 2, 16], kvShape: [1, 60, 2, 16], grid: [3, 4, 5], block: [1, 2, 2], select: { topK: 3 }, causal: true, granularity: 'queryBlock', global: true },
];

// ---------------- the cases ----------------
