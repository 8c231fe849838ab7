// Checks ref.js on hand-computed cases and properties, in node (no browser): the JS reference
// must be right before it can judge the engine. Run by run.mjs first; `node ref.selftest.mjs`.
import assert from 'node:assert/strict';
import { BlockSparseRef, axisWindow, compare, denseRef, neighborhoodRef, randomF32, rng } from './ref.js';

const checks = [];
const check = (name, fn) => checks.push([name, fn]);

check('axisWindow hand cases (NATTEN borders, dilation, causal)', () => {
  assert.deepEqual(axisWindow(7, 3, 1, false, 0), [0, 1, 2]);
  assert.deepEqual(axisWindow(7, 3, 1, false, 3), [2, 3, 4]);
  assert.deepEqual(axisWindow(7, 3, 1, false, 6), [4, 5, 6]);
  assert.deepEqual(axisWindow(7, 3, 2, false, 1), [1, 3, 5]);
  assert.deepEqual(axisWindow(7, 3, 2, false, 0), [0, 2, 4]);
  assert.deepEqual(axisWindow(7, 3, 2, false, 6), [2, 4, 6]);
  assert.deepEqual(axisWindow(7, 3, 1, true, 1), [0, 1]);
  assert.deepEqual(axisWindow(7, 3, 1, true, 5), [3, 4, 5]);
  assert.deepEqual(axisWindow(8, 4, 1, false, 4), [2, 3, 4, 5]);
});

check('softmax hand case: weights 1/3, 2/3', () => {
  // One query (q = 1), keys 0 and ln 2, values 3 and 6: out = 3/3 + 6*2/3 = 5.
  const p = { batch: 1, seq: 2, nHeads: 1, nKvHeads: 1, headDim: 1, causal: false, scale: 1 };
  const out = denseRef(p, Float32Array.of(1, 1), Float32Array.of(0, Math.LN2), Float32Array.of(3, 6));
  assert.ok(Math.abs(out[0] - 5) < 1e-6, `got ${out[0]}`);
});

check('full-window neighborhood == dense (2-D)', () => {
  const r = rng(7);
  const [X, Y, d] = [3, 4, 5];
  const n = X * Y;
  const q = randomF32(n * d, r), k = randomF32(n * d, r), v = randomF32(n * d, r);
  const na = neighborhoodRef(
    { batch: 1, heads: 1, dims: [X, Y], headDim: d, kernel: [X, Y], dilation: [1, 1], causal: [false, false], scale: 0.5 },
    q, k, v,
  );
  const dense = denseRef({ batch: 1, seq: n, nHeads: 1, nKvHeads: 1, headDim: d, causal: false, scale: 0.5 }, q, k, v);
  assert.ok(compare(na, dense, { atol: 1e-12, rtol: 0, maxNmse: 1e-20 }).ok);
});

check('causal 1-D neighborhood with kernel = len == causal dense', () => {
  const r = rng(8);
  const [n, d] = [6, 3];
  const q = randomF32(n * d, r), k = randomF32(n * d, r), v = randomF32(n * d, r);
  const na = neighborhoodRef(
    { batch: 1, heads: 1, dims: [n], headDim: d, kernel: [n], dilation: [1], causal: [true], scale: 1 }, q, k, v);
  const dense = denseRef({ batch: 1, seq: n, nHeads: 1, nKvHeads: 1, headDim: d, causal: true, scale: 1 }, q, k, v);
  assert.ok(compare(na, dense, { atol: 1e-12, rtol: 0, maxNmse: 1e-20 }).ok);
});

check('block-sparse: top-k of every block == dense; top-1 causal == own block only', () => {
  const r = rng(9);
  const [seq, d, B] = [10, 4, 3];
  const q = randomF32(seq * d, r), k = randomF32(seq * d, r), v = randomF32(seq * d, r);
  const base = { batch: 1, nHeads: 1, nKvHeads: 1, headDim: d, grid: [1, 1, seq], block: [1, 1, B], scale: 0.7, perQuery: true, global: false };
  const all = new BlockSparseRef({ ...base, causal: true, select: { topK: 4 } });
  const dense = denseRef({ batch: 1, seq, nHeads: 1, nKvHeads: 1, headDim: d, causal: true, scale: 0.7 }, q, k, v);
  assert.ok(compare(all.attention(all.selection(q, k), q, k, v), dense, { atol: 1e-12, rtol: 0, maxNmse: 1e-20 }).ok);
  const own = new BlockSparseRef({ ...base, causal: true, select: { topK: 1 } });
  const out = own.attention(own.selection(q, k), q, k, v);
  // Query 4 (block 1 = tokens 3..5) sees only tokens 3 and 4.
  const seg = denseRef({ batch: 1, seq: 2, nHeads: 1, nKvHeads: 1, headDim: d, causal: true, scale: 0.7 },
    q.slice(3 * d, 5 * d), k.slice(3 * d, 5 * d), v.slice(3 * d, 5 * d));
  assert.ok(compare(out.slice(4 * d, 5 * d), seg.slice(d, 2 * d), { atol: 1e-12, rtol: 0, maxNmse: 1e-20 }).ok);
});

check('block-sparse top-k picks the largest gate (hand case)', () => {
  // d = 1, blocks of 1 token, non-causal: query 1 gates are q*k = k; top-2 of k = [0.1, 0.9,
  // 0.5] are blocks 1 and 2.
  const p = { batch: 1, nHeads: 1, nKvHeads: 1, headDim: 1, grid: [1, 1, 3], block: [1, 1, 1], scale: 1, perQuery: true, global: false, causal: false, select: { topK: 2 } };
  const ref = new BlockSparseRef(p);
  const sel = ref.selection(Float32Array.of(1, 1, 1), Float32Array.of(0.1, 0.9, 0.5));
  assert.deepEqual(Array.from(sel.mask.slice(0, 3)), [0, 1, 1]);
});

check('compare catches a wrong element and NaN', () => {
  assert.equal(compare(Float32Array.of(1, 2), Float64Array.of(1, 2)).ok, true);
  assert.equal(compare(Float32Array.of(1, 2.1), Float64Array.of(1, 2)).ok, false);
  assert.equal(compare(Float32Array.of(1, NaN), Float64Array.of(1, 2)).ok, false);
});

let failed = 0;
for (const [name, fn] of checks) {
  try {
    fn();
    console.log(`ok   ref: ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ref: ${name}: ${e.message}`);
  }
}
if (failed) process.exitCode = 1;
export const refFailures = failed;
