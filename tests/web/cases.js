// The browser test cases, run in headless Chromium by run.mjs through pages/harness.html.
// Each case throws on failure with a message that names the input (seed, shape, config).
import { Engine, MODEL_CACHES, clearModelCache } from '/pkg/index.js';
import { BlockSparseRef, compare, neighborhoodRef, randomF32, rng } from '/t/ref.js';

const MODELS = '/models';
const TINY = `${MODELS}/tiny-llama.gguf`;
const GEMMA = `${MODELS}/gemma-3-270m-q4_k_m.gguf`;
const MIB = 1 << 20;
// f32 kernels against the f64 reference; SwiftShader's exp is within a few ULP.
const F32_TOL = { atol: 1e-4, rtol: 1e-3, maxNmse: 1e-8 };

function fail(msg) {
  throw new Error(msg);
}

/** Cosine similarity of two equal-length vectors. */
function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let j = 0; j < b.length; j++) {
    dot += a[j] * b[j];
    na += a[j] * a[j];
    nb += b[j] * b[j];
  }
  return dot / Math.sqrt(na * nb);
}

async function expectCode(promise, code, what) {
  try {
    await promise;
  } catch (e) {
    if (e.code !== code) fail(`${what}: expected code ${code}, got ${e.code}: ${e.message}`);
    if (!(e instanceof Error)) fail(`${what}: rejected with a non-Error`);
    return e;
  }
  fail(`${what}: expected ${code}, but it succeeded`);
}

async function json(url) {
  const r = await fetch(url);
  if (!r.ok) fail(`${url}: HTTP ${r.status}`);
  return r.json();
}

const uniq = () => `${Date.now()}-${Math.floor(Math.random() * 1e9)}`;

/**
 * Reference greedy check (the rule of tests/src/gemma_refs.rs check_greedy): ids must match
 * step by step while llama.cpp's top-1/top-2 gap is >= 0.3; past a narrower step the contexts
 * may legitimately diverge, so the comparison stops there. Top-5 logits within 1.0 of
 * llama.cpp's token-by-token logits, or of its batched ones (`top5_batched`: the same step
 * computed in one batch, where llama.cpp differs from itself by up to ~1.3).
 */
function checkGreedy(name, ours, greedy) {
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
function halfToF32(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** The k largest [id, logit] pairs, largest first. */
function topK(v, k) {
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
function checkLastLogits(name, ours, r, want) {
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

async function collect(it) {
  const out = [];
  for await (const x of it) out.push(x);
  return out;
}

// ---------------- op level: neighborhood attention ----------------

async function naCases(engine, log, configs, seed0) {
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

const NA_1D = [
  { batch: 2, heads: 3, dims: [37], headDim: 16, kernel: [7] },
  { batch: 1, heads: 1, dims: [1], headDim: 8, kernel: [1] },
  { batch: 1, heads: 2, dims: [23], headDim: 32, kernel: [5], dilation: [3], scale: 0.3 },
  { batch: 1, heads: 2, dims: [31], headDim: 16, kernel: [5], dilation: [2], causal: [true] },
  { batch: 1, heads: 1, dims: [17], headDim: 64, kernel: [17] },
];
const NA_2D = [
  { batch: 1, heads: 2, dims: [13, 11], headDim: 32, kernel: [5, 3], dilation: [2, 3] },
  { batch: 2, heads: 1, dims: [8, 9], headDim: 16, kernel: [3, 7], dilation: [1, 1], causal: [true, false] },
  { batch: 1, heads: 3, dims: [7, 7], headDim: 16, kernel: [7, 7], scale: 0.2 },
];
const NA_3D = [
  { batch: 1, heads: 2, dims: [5, 6, 7], headDim: 16, kernel: [3, 3, 5], dilation: [1, 2, 1] },
  { batch: 1, heads: 1, dims: [4, 5, 3], headDim: 32, kernel: [3, 3, 3], causal: [true, false, false] },
];

// ---------------- op level: block-sparse attention ----------------

/** Seeds whose top-k / threshold decisions are not near ties (else f32 may flip a block). */
function bsInputs(ref, qLen, kvLen, seed0) {
  for (let seed = seed0; seed < seed0 + 64; seed++) {
    const r = rng(seed);
    const q = randomF32(qLen, r), k = randomF32(kvLen, r), v = randomF32(kvLen, r);
    const sel = ref.selection(q, k);
    if (sel.minGap >= 2e-3) return { seed, q, k, v, sel };
  }
  fail(`no seed from ${seed0} gives a selection margin >= 2e-3`);
}

async function bsCases(engine, log, configs, seed0) {
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

const BS_MOBA = [
  { qShape: [1, 61, 4, 32], kvShape: [1, 61, 2, 32], block: 8, select: { topK: 3 }, causal: true },
  { qShape: [2, 33, 2, 16], kvShape: [2, 33, 2, 16], block: 4, select: { topK: 2 }, causal: true, granularity: 'queryBlock' },
  { qShape: [1, 40, 2, 16], kvShape: [1, 40, 1, 16], block: 5, select: { threshold: 0.6 }, causal: false, granularity: 'queryBlock' },
  { qShape: [1, 50, 1, 16], kvShape: [1, 50, 1, 16], block: 5, select: { strided: { local: 2, stride: 3 } }, causal: true },
  { qShape: [1, 1, 1, 8], kvShape: [1, 1, 1, 8], block: 1, select: { topK: 1 }, causal: true },
];
const BS_GRID = [
  { qShape: [1, 60, 2, 16], kvShape: [1, 60, 2, 16], grid: [6, 10], block: [1, 2, 3], select: { topK: 2 }, causal: false, granularity: 'queryBlock' },
  { qShape: [1, 35, 2, 32], kvShape: [1, 35, 1, 32], grid: [5, 7], block: [1, 2, 2], select: { topK: 3 }, causal: false },
  { qShape: [1, 60, 2, 16], kvShape: [1, 60, 2, 16], grid: [3, 4, 5], block: [1, 2, 2], select: { topK: 3 }, causal: true, granularity: 'queryBlock', global: true },
];

// ---------------- the cases ----------------

export const cases = {
  /** The adapter is there, in the worker and in the page's thread. */
  async info({ log }) {
    const engine = await Engine.create();
    const info = await engine.info();
    await engine.dispose();
    if (!engine.worker) fail('Engine.create() did not default to the worker');
    if (typeof info.adapter !== 'string' || !info.backend) fail(`no adapter: ${JSON.stringify(info)}`);
    if (!info.limits || !info.fingerprint) fail(`no limits/fingerprint: ${JSON.stringify(info)}`);
    // The engine's limits are the page's adapter's (SwiftShader: 256 invocations, 10 buffers).
    const a = await navigator.gpu.requestAdapter();
    const want = {
      max_compute_invocations_per_workgroup: a.limits.maxComputeInvocationsPerWorkgroup,
      max_storage_buffers_per_shader_stage: a.limits.maxStorageBuffersPerShaderStage,
    };
    for (const [k, v] of Object.entries(want)) {
      if (info.limits[k] !== v) fail(`limit ${k}: engine ${info.limits[k]}, adapter ${v}`);
    }
    const local = await Engine.create({ worker: false });
    const li = await local.info();
    await local.dispose();
    if (local.worker || li.adapter !== info.adapter) fail(`local engine: ${JSON.stringify(li)}`);
    await expectCode(engine.info(), 'DISPOSED', 'info after dispose');
    log(`  adapter ${info.adapter} backend ${info.backend} features ${JSON.stringify(info.features)}`);
    return { adapter: info.adapter, memory: info.memory };
  },

  /** Run in a Chromium launched without WebGPU. */
  async webgpu_unavailable() {
    await expectCode(Engine.create(), 'WEBGPU_UNAVAILABLE', 'Engine.create() in the worker');
    await expectCode(Engine.create({ worker: false }), 'WEBGPU_UNAVAILABLE', 'Engine.create({worker: false})');
    return {};
  },

  async na_1d({ log }) {
    const e = await Engine.create();
    try { return await naCases(e, log, NA_1D, 1000); } finally { await e.dispose(); }
  },
  async na_2d({ log }) {
    const e = await Engine.create();
    try { return await naCases(e, log, NA_2D, 2000); } finally { await e.dispose(); }
  },
  async na_3d({ log }) {
    // In the page's thread: the same engine code without the worker.
    const e = await Engine.create({ worker: false });
    try { return await naCases(e, log, NA_3D, 3000); } finally { await e.dispose(); }
  },
  async bsa_moba({ log }) {
    const e = await Engine.create();
    try { return await bsCases(e, log, BS_MOBA, 4000); } finally { await e.dispose(); }
  },
  async bsa_grid({ log }) {
    const e = await Engine.create();
    try { return await bsCases(e, log, BS_GRID, 5000); } finally { await e.dispose(); }
  },

  /** Bad arguments are INVALID_ARGUMENT/SHAPE errors, not crashes, and the engine survives. */
  async op_errors() {
    const e = await Engine.create();
    try {
      const x = new Float32Array(2 * 3 * 8);
      const bad = await e.neighborhoodAttention(x, x, x, { shape: [2, 3, 8], kernel: [9] }).then(
        () => fail('kernel 9 > axis 3 was accepted'),
        (err) => err,
      );
      if (!['INVALID_ARGUMENT', 'SHAPE'].includes(bad.code)) fail(`kernel > axis: code ${bad.code} (${bad.message})`);
      const short = new Float32Array(5);
      const bad2 = await e.blockSparseAttention(short, short, short, {
        qShape: [1, 4, 1, 2], kvShape: [1, 4, 1, 2], block: 2, select: { topK: 1 },
      }).then(() => fail('q of 5 floats for shape [1,4,1,2] was accepted'), (err) => err);
      if (!['INVALID_ARGUMENT', 'SHAPE'].includes(bad2.code)) fail(`short q: code ${bad2.code} (${bad2.message})`);
      await naCases(e, () => {}, [NA_1D[0]], 1000);
      return { codes: [bad.code, bad2.code] };
    } finally {
      await e.dispose();
    }
  },

  async minilm({ log }) {
    const refs = await json('/data/minilm_refs.json');
    const e = await Engine.create();
    try {
      const emb = await e.loadEmbedder(`${MODELS}/all-MiniLM-L6-v2/`);
      if (emb.maxSeqLen !== refs.max_seq_length) fail(`maxSeqLen ${emb.maxSeqLen}, want ${refs.max_seq_length}`);
      const texts = refs.sentences.map((s) => s.text);
      for (const s of refs.sentences) {
        const ids = Array.from(await emb.tokenize(s.text));
        if (JSON.stringify(ids) !== JSON.stringify(s.token_ids)) {
          fail(`token ids of ${JSON.stringify(s.text.slice(0, 40))}: ${JSON.stringify(ids.slice(0, 20))} vs ${JSON.stringify(s.token_ids.slice(0, 20))}`);
        }
      }
      const t0 = performance.now();
      const vecs = await emb.embed(texts);
      const ms = performance.now() - t0;
      let worst = 1;
      refs.sentences.forEach((s, i) => {
        const a = vecs[i], b = s.embedding;
        if (!a || a.length !== b.length) fail(`embedding ${i}: length ${a && a.length}, want ${b.length}`);
        const cos = cosine(a, b);
        worst = Math.min(worst, cos);
        if (!(cos >= 0.9999)) fail(`cosine ${cos} < 0.9999 for ${JSON.stringify(s.text.slice(0, 40))}`);
      });
      log(`  ${texts.length} sentences in ${ms.toFixed(0)} ms, worst cosine ${worst.toFixed(6)}`);
      await emb.dispose();
      return { worstCosine: worst, embedMs: ms };
    } finally {
      await e.dispose();
    }
  },

  /**
   * EngineOptions.readbackNudge: reported by info(), refused when not a boolean, and with it on
   * (in the worker) and off (in the page) MiniLM gives the same embeddings, which match
   * sentence-transformers. (SwiftShader is a CPU adapter, where it defaults to off.)
   */
  async readback_nudge({ log }) {
    const refs = await json('/data/minilm_refs.json');
    const pick = refs.sentences.filter((s) => s.text && s.token_ids.length <= 16).slice(0, 2);
    if (pick.length !== 2) fail('need two short reference sentences');
    await expectCode(Engine.create({ readbackNudge: 'yes' }), 'INVALID_ARGUMENT', 'readbackNudge: "yes"');
    const got = [];
    for (const [nudge, worker] of [[true, true], [false, false]]) {
      const e = await Engine.create({ readbackNudge: nudge, worker });
      try {
        const info = await e.info();
        if (info.readback_nudge !== nudge) fail(`readbackNudge ${nudge}: info says ${info.readback_nudge}`);
        const emb = await e.loadEmbedder(`${MODELS}/all-MiniLM-L6-v2/`);
        const vecs = await emb.embed(pick.map((s) => s.text));
        pick.forEach((s, i) => {
          const a = vecs[i], b = s.embedding;
          const cos = cosine(a, b);
          if (!(cos >= 0.9999)) fail(`readbackNudge ${nudge}: cosine ${cos} for ${JSON.stringify(s.text)}`);
        });
        got.push(vecs.map((v) => Array.from(v)));
        await emb.dispose();
      } finally {
        await e.dispose();
      }
    }
    if (JSON.stringify(got[0]) !== JSON.stringify(got[1])) fail('embeddings differ with and without the nudge');
    const d = await Engine.create();
    const di = await d.info();
    await d.dispose();
    log(`  on and off agree; default here: ${di.readback_nudge}`);
    return { defaultNudge: di.readback_nudge };
  },

  /** Corrupt, truncated and random files are BAD_MODEL_FILE; nothing stays allocated. */
  async bad_gguf({ log }) {
    const e = await Engine.create();
    try {
      const base = (await e.info()).memory;
      const bad = [
        [`${TINY}?corrupt=0`, 'magic overwritten'],
        [`${TINY}?corrupt=24`, 'tensor count overwritten'],
        [`${TINY}?truncate=500000`, 'cut in the weights'],
        [`${TINY}?truncate=2000`, 'cut in the header'],
        [crypto.getRandomValues(new Uint8Array(4096)), 'random bytes'],
      ];
      for (const [src, what] of bad) {
        const err = await expectCode(e.loadModel(src), 'BAD_MODEL_FILE', what);
        const mem = (await e.info()).memory;
        if (mem.live_bytes !== base.live_bytes) fail(`after ${what}: live_bytes ${mem.live_bytes}, before ${base.live_bytes}`);
        log(`  ${what}: ${err.message.slice(0, 100)}`);
      }
      const m = await e.loadModel(TINY);
      const toks = await collect(m.generateTokens('Hello', { maxTokens: 3 }));
      if (toks.length !== 3) fail(`the engine is not usable after bad files: ${toks.length} tokens`);
      await m.dispose();
      return {};
    } finally {
      await e.dispose();
    }
  },

  /** Aborting mid-download rejects with ABORTED, frees the partial upload, the engine goes on. */
  async abort({ log }) {
    const e = await Engine.create();
    try {
      const base = (await e.info()).memory;
      const ac = new AbortController();
      let seen = 0;
      const p = e.loadModel(`${GEMMA}?rate=40000000&u=${uniq()}`, {
        signal: ac.signal,
        onProgress: (pr) => {
          seen = pr.loadedBytes;
          if (pr.loadedBytes > 24 * MIB && !ac.signal.aborted) ac.abort('test');
        },
      });
      const err = await expectCode(p, 'ABORTED', 'abort mid-download');
      if (seen < 24 * MIB || seen > 200 * MIB) fail(`aborted at ${seen} bytes: not mid-download`);
      const mem = (await e.info()).memory;
      if (mem.live_bytes !== base.live_bytes) fail(`after abort: live_bytes ${mem.live_bytes}, before ${base.live_bytes}`);
      const pre = new AbortController();
      pre.abort();
      await expectCode(e.loadModel(TINY, { signal: pre.signal }), 'ABORTED', 'already-aborted signal');
      const m = await e.loadModel(TINY);
      const toks = await collect(m.generateTokens('Hello', { maxTokens: 3 }));
      if (toks.length !== 3) fail(`load after abort: ${toks.length} tokens`);
      await m.dispose();
      log(`  aborted at ${(seen / MIB).toFixed(1)} MiB: ${err.message}`);
      return { abortedAt: seen };
    } finally {
      await e.dispose();
    }
  },

  /** 5 load/generate/dispose cycles: GPU memory and wasm memory do not grow. */
  async cycles({ log }) {
    const e = await Engine.create();
    try {
      const base = (await e.info()).memory;
      const after = [];
      for (let i = 0; i < 5; i++) {
        const m = await e.loadModel(TINY);
        await collect(m.generateTokens('Hello', { maxTokens: 2 }));
        await m.dispose();
        const info = await e.info();
        after.push({ ...info.memory, wasm: info.wasm_memory_bytes });
        if (info.memory.live_bytes !== base.live_bytes) fail(`cycle ${i}: live_bytes ${info.memory.live_bytes}, before any load ${base.live_bytes}`);
      }
      log(`  per cycle: ${after.map((m) => `live ${m.live_bytes} pooled ${m.pooled_bytes} wasm ${m.wasm}`).join(' | ')}`);
      const tot = (m) => m.live_bytes + m.pooled_bytes;
      if (tot(after[4]) > tot(after[0])) fail(`GPU memory grew: ${JSON.stringify(after)}`);
      // The wasm heap settles over the first cycles with generation (seen: +1 to +1.4 MiB in
      // steps, then flat over 10 cycles; load/dispose alone: flat). A leak of the host copy of
      // the weights (1 MiB a cycle) would add 4 MiB over cycles 1-5.
      if (after[4].wasm - after[0].wasm >= 3 * MIB) fail(`wasm memory grew: ${after.map((m) => m.wasm).join(' -> ')}`);
      return { after };
    } finally {
      await e.dispose();
    }
  },

  /** A dropped connection is resumed with a Range request; tokens match llama.cpp. */
  async resume({ log }) {
    const refs = await json('/data/tiny_llama/refs.json');
    const e = await Engine.create();
    try {
      const key = uniq();
      let last = null;
      // Sent at 1 MB/s so that the first bytes reach the reader before the cut (Chrome drops
      // what it has buffered when the connection fails).
      const m = await e.loadModel(`${TINY}?drop=300000&rate=1000000&u=${key}`, { onProgress: (p) => (last = p) });
      const reqs = (await json('/__log')).filter((r) => r.path.includes(key));
      if (reqs.length !== 2 || reqs[0].dropped !== 300000) fail(`expected a cut request and one more: ${JSON.stringify(reqs)}`);
      // The second request continues where the delivered bytes ended (what Chrome handed over
      // before the cut: some of the 300000 bytes, not none).
      const from = /^bytes=(\d+)-$/.exec(reqs[1].range || '');
      if (!from || !(Number(from[1]) > 0 && Number(from[1]) <= 300000) || reqs[1].status !== 206 || m.load.resumes !== 1) {
        fail(`no Range resume: requests ${JSON.stringify(reqs)}, load ${JSON.stringify(m.load)}`);
      }
      if (!last || last.loadedBytes !== 999168 || last.totalBytes !== 999168) fail(`progress ${JSON.stringify(last)}`);
      let compared = 0;
      // Two prompts, 6 tokens: SwiftShader decodes the tiny model at ~0.5 s per token.
      for (const pr of refs.prompts.slice(0, 2)) {
        const toks = await collect(m.generateTokens(pr.prompt_ids, { maxTokens: 6 }));
        compared += checkGreedy(pr.name, toks, pr.greedy);
      }
      await m.dispose();
      log(`  requests ${reqs.map((r) => `${r.status}${r.range ? ` ${r.range}` : ''}`).join(', ')}; ${compared} greedy steps matched`);
      return { compared };
    } finally {
      await e.dispose();
    }
  },

  /** Stopping: an AbortSignal ends the iteration with reason 'stopped', leaving the loop early
   *  stops the engine side, and the model generates again afterwards, deterministically. */
  async generate_stop() {
    const e = await Engine.create();
    try {
      const m = await e.loadModel(TINY);
      const prompt = [1, 295, 329, 330];
      const full = await collect(m.generateTokens(prompt, { maxTokens: 4 }));
      if (full.length !== 4 || m.lastStats.reason !== 'max_tokens') fail(`4 tokens: ${full.length}, ${JSON.stringify(m.lastStats)}`);
      const ac = new AbortController();
      const got = [];
      for await (const t of m.generateTokens(prompt, { maxTokens: 50, signal: ac.signal })) {
        got.push(t.id);
        if (got.length === 2) ac.abort();
      }
      if (got.length !== 2 || m.lastStats?.reason !== 'stopped') fail(`abort after 2: ${got.length} tokens, ${JSON.stringify(m.lastStats)}`);
      for await (const t of m.generateTokens(prompt, { maxTokens: 50 })) {
        if (t) break; // leave the loop after the first token
      }
      if (m.lastStats?.reason !== 'stopped') fail(`break: ${JSON.stringify(m.lastStats)}`);
      // Fresh context each time: the same greedy tokens as the first run, as text too.
      let text = '';
      const again = [];
      for await (const t of m.generateTokens(prompt, { maxTokens: 4 })) {
        again.push(t.id);
        text += t.text;
      }
      text += m.lastStats.text; // bytes held back for an unfinished character
      const pieces = (await collect(m.generate(prompt, { maxTokens: 4 }))).join('');
      if (pieces !== text) fail(`generate() pieces ${JSON.stringify(pieces)} != token texts ${JSON.stringify(text)}`);
      if (JSON.stringify(again) !== JSON.stringify(full.map((t) => t.id))) fail(`after stops: ${again} vs ${full.map((t) => t.id)}`);
      const detok = await m.detokenize(again);
      if (text !== detok) fail(`streamed text ${JSON.stringify(text)} != detokenize ${JSON.stringify(detok)}`);
      // A prompt prefilled while the file streams in gives the same tokens.
      let prefilledLayers = 0;
      const pm = await e.loadModel(TINY, { promptIds: prompt, onProgress: (p) => (prefilledLayers = p.layersPrefilled ?? 0) });
      const pre = await collect(pm.generateTokens(null, { maxTokens: 4 }));
      await pm.dispose();
      if (JSON.stringify(pre.map((t) => t.id)) !== JSON.stringify(again)) fail(`prefilled during load: ${pre.map((t) => t.id)} vs ${again}`);
      if (prefilledLayers !== pm.info.n_layers) fail(`layersPrefilled ${prefilledLayers}, n_layers ${pm.info.n_layers}`);
      const busy = m.generateTokens(prompt, { maxTokens: 1 });
      await busy.next();
      await expectCode(collect(m.generateTokens(prompt, { maxTokens: 1 })), 'BUSY', 'second generation while one runs');
      await busy.return();
      await m.dispose();
      await expectCode(collect(m.generateTokens(prompt, { maxTokens: 1 })), 'DISPOSED', 'generate after dispose');
      return {};
    } finally {
      await e.dispose();
    }
  },

  /** cache: 'cache-api' stores the file once and serves the second load without the network. */
  async cache_api() {
    const e = await Engine.create();
    const key = uniq();
    const url = `${TINY}?u=${key}`;
    try {
      const a = await e.loadModel(url, { cache: 'cache-api' });
      const ta = await collect(a.generateTokens('Hello', { maxTokens: 4 }));
      await a.dispose();
      const b = await e.loadModel(url, { cache: 'cache-api' });
      const tb = await collect(b.generateTokens('Hello', { maxTokens: 4 }));
      await b.dispose();
      const reqs = (await json('/__log')).filter((r) => r.path.includes(key));
      if (a.load.fromCache || !a.load.cached) fail(`first load: ${JSON.stringify(a.load)}`);
      if (!b.load.fromCache) fail(`second load not from the cache: ${JSON.stringify(b.load)}`);
      if (reqs.length !== 1) fail(`${reqs.length} network requests for two loads`);
      if (JSON.stringify(ta.map((t) => t.id)) !== JSON.stringify(tb.map((t) => t.id))) fail('cached model generates other tokens');
      return {};
    } finally {
      await caches.delete('webjit-models-v1');
      await e.dispose();
    }
  },

  /** cache: 'opfs' writes the file to OPFS as it streams in; the second load reads it with no
   *  request and generates the same tokens. An aborted download and a file the engine
   *  rejects leave no hit and no bytes; clearModelCache removes an entry. */
  async opfs({ log }) {
    // {name: size} of the package's OPFS folder, as the page's own OPFS view sees it.
    const listing = async () => {
      const out = {};
      let dir;
      try {
        dir = await (await navigator.storage.getDirectory()).getDirectoryHandle(MODEL_CACHES.opfsDir);
      } catch {
        return out;
      }
      for await (const [name, h] of dir.entries()) out[name] = (await h.getFile()).size;
      return out;
    };
    await clearModelCache({ cache: 'opfs' });
    const e = await Engine.create();
    const key = uniq();
    const url = `${TINY}?u=${key}`;
    const requests = async (k) => (await json('/__log')).filter((r) => r.path.endsWith(`u=${k}`));
    try {
      const a = await e.loadModel(url, { cache: 'opfs' });
      const ta = await collect(a.generateTokens('Hello', { maxTokens: 4 }));
      await a.dispose();
      if (a.load.fromCache || !a.load.cached || a.load.cacheError || a.load.cacheWriter !== 'sync-access-handle') fail(`first load: ${JSON.stringify(a.load)}`);
      const stored = await listing();
      const sizes = Object.entries(stored);
      if (sizes.length !== 2 || !sizes.some(([n, sz]) => n.endsWith('.part') && sz === 999168) || !sizes.some(([n]) => n.endsWith('.json'))) {
        fail(`OPFS after the first load: ${JSON.stringify(stored)} (want a marker and the 999168 bytes)`);
      }
      const b = await e.loadModel(url, { cache: 'opfs' });
      const tb = await collect(b.generateTokens('Hello', { maxTokens: 4 }));
      await b.dispose();
      if (!b.load.fromCache || b.load.totalBytes !== 999168) fail(`second load not from OPFS: ${JSON.stringify(b.load)}`);
      const reqs = await requests(key);
      if (reqs.length !== 1) fail(`${reqs.length} network requests for two loads: ${JSON.stringify(reqs)}`);
      if (JSON.stringify(ta.map((t) => t.id)) !== JSON.stringify(tb.map((t) => t.id))) fail(`OPFS copy generates other tokens: ${ta.map((t) => t.id)} vs ${tb.map((t) => t.id)}`);

      // A stored copy damaged on disk (same size, zeros): the load fails with BAD_MODEL_FILE
      // and drops it, and the next load downloads again.
      {
        const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle(MODEL_CACHES.opfsDir);
        const part = Object.keys(stored).find((n) => n.endsWith('.part'));
        const w = await (await dir.getFileHandle(part)).createWritable();
        await w.write(new Uint8Array(999168));
        await w.close();
        const bad = await expectCode(e.loadModel(url, { cache: 'opfs' }), 'BAD_MODEL_FILE', 'damaged OPFS copy');
        if (!/stored OPFS copy was refused and removed/.test(bad.message)) fail(`damaged copy: ${bad.message}`);
        if (Object.keys(await listing()).length) fail(`damaged copy not removed: ${JSON.stringify(await listing())}`);
        const d = await e.loadModel(url, { cache: 'opfs' });
        await d.dispose();
        if (d.load.fromCache || !d.load.cached || (await requests(key)).length !== 2) fail(`after the damaged copy: ${JSON.stringify(d.load)}`);
        // The new copy (another .part name) is what the checks below compare with.
        const now = await listing();
        for (const k of Object.keys(stored)) delete stored[k];
        Object.assign(stored, now);
      }

      // Aborted mid-download (200 kB/s, abort once bytes have reached the engine): no hit, no bytes.
      const ac = new AbortController();
      const slow = `${TINY}?rate=200000&u=${key}-slow`;
      let seen = 0;
      await expectCode(e.loadModel(slow, { cache: 'opfs', signal: ac.signal, onProgress: (p) => {
        if (p.loadedBytes > 0 && !ac.signal.aborted) {
          seen = p.loadedBytes;
          ac.abort('test');
        }
      } }), 'ABORTED', 'aborted OPFS load');
      if (!(seen > 0 && seen < 999168)) fail(`the abort came at ${seen} bytes`);
      // Cut short (the server says the file is 500000 bytes): the engine refuses it, nothing is kept.
      const cut = `${TINY}?truncate=500000&u=${key}-cut`;
      const err = await expectCode(e.loadModel(cut, { cache: 'opfs' }), 'BAD_MODEL_FILE', 'truncated file with OPFS');
      const after = await listing();
      if (JSON.stringify(after) !== JSON.stringify(stored)) fail(`OPFS after the aborted and the refused load: ${JSON.stringify(after)}, before ${JSON.stringify(stored)}`);
      const again = await e.loadModel(slow.replace('rate=200000&', ''), { cache: 'opfs' });
      await again.dispose();
      if (again.load.fromCache) fail('the aborted URL came from OPFS');

      // clearModelCache removes one URL's entry: its next load goes to the network again.
      const removed = await clearModelCache({ cache: 'opfs', url });
      if (removed.opfs !== 2 || removed.cacheApi !== 0) fail(`clearModelCache removed ${JSON.stringify(removed)}`);
      const c = await e.loadModel(url, { cache: 'opfs' });
      await c.dispose();
      if (c.load.fromCache || (await requests(key)).length !== 3) fail(`after clearModelCache: ${JSON.stringify(c.load)}`);
      // In the page's thread ({worker: false}) the file is written with createWritable.
      const local = await Engine.create({ worker: false });
      try {
        const lu = `${TINY}?u=${key}-local`;
        const l1 = await local.loadModel(lu, { cache: 'opfs' });
        const tl = await collect(l1.generateTokens('Hello', { maxTokens: 4 }));
        await l1.dispose();
        const l2 = await local.loadModel(lu, { cache: 'opfs' });
        await l2.dispose();
        if (!l1.load.cached || l1.load.cacheWriter !== 'writable' || !l2.load.fromCache || (await requests(`${key}-local`)).length !== 1) {
          fail(`OPFS in the page's thread: ${JSON.stringify(l1.load)} then ${JSON.stringify(l2.load)}`);
        }
        if (JSON.stringify(tl.map((t) => t.id)) !== JSON.stringify(ta.map((t) => t.id))) fail('page-thread OPFS copy generates other tokens');
      } finally {
        await local.dispose();
      }
      log(`  OPFS ${JSON.stringify(stored)}; second load from OPFS with no request; abort at ${seen} bytes and ${err.code} left nothing`);
      return {};
    } finally {
      await clearModelCache({ cache: 'opfs' }).catch(() => {});
      await e.dispose();
    }
  },

  /** Tuning the loaded model: per-problem reports stream in, records reach IndexedDB, and
   *  the next engine imports them. */
  async tune({ log }) {
    const e = await Engine.create();
    let report;
    const streamed = [];
    try {
      await expectCode(e.tune({ budgetMs: 500 }), 'INVALID_STATE', 'tune without a model');
      const m = await e.loadModel(TINY);
      report = await e.tune({ budgetMs: 3000, onReport: (r) => streamed.push(r) });
      // The model still generates after its kernels were swapped.
      const toks = await collect(m.generateTokens([1, 295], { maxTokens: 2 }));
      if (toks.length !== 2) fail(`generate after tune: ${toks.length} tokens`);
      // int8: the plain matvec problems get more candidates (the int8 path), none of which
      // fails to compile or check (dot4I8Packed on this WebGPU), and the model still runs.
      const i8 = await e.tune({ budgetMs: 3000, int8: true });
      const plain = (r) => r.kernels.filter((k) => /^qmatvec\.[a-z0-9_]+\|/.test(k.tune_key));
      const count = (r) => plain(r).reduce((s, k) => s + k.tried + k.rejected + k.skipped, 0);
      const rejected = (r) => plain(r).reduce((s, k) => s + k.rejected, 0);
      if (!plain(report).length) fail('no plain qmatvec problem in the tiny model');
      if (!(count(i8) > count(report))) fail(`int8 tuning offered ${count(i8)} candidates, exact ${count(report)}`);
      if (rejected(i8) !== rejected(report)) fail(`int8 candidates rejected: ${rejected(i8)} vs ${rejected(report)}`);
      const toks8 = await collect(m.generateTokens([1, 295], { maxTokens: 2 }));
      if (toks8.length !== 2) fail(`generate after int8 tune: ${toks8.length} tokens`);
      log(`  int8: ${count(i8)} candidates vs ${count(report)}; winners ${plain(i8).map((k) => k.winner_key).join(', ')}`);
    } finally {
      await e.dispose();
    }
    if (!Array.isArray(report.kernels) || !report.kernels.length) fail(`tune report has no kernels: ${JSON.stringify(report)}`);
    if (streamed.length !== report.kernels.length) fail(`${streamed.length} streamed reports for ${report.kernels.length} kernels`);
    if (!report.persisted) fail(`records not persisted: ${report.persistError}`);
    const e2 = await Engine.create();
    const info = await e2.info();
    await e2.dispose();
    if (e2.importedTuning !== 1) fail('the next engine did not import the stored records');
    log(`  ${report.kernels.length} kernels, geomean speedup ${report.geomean_speedup}, records ${JSON.stringify(info.tuning)}`);
    indexedDB.deleteDatabase('webjit');
    return { kernels: report.kernels.length };
  },

  /** Gemma 3 270M streamed over HTTP: progress to the end, bounded wasm memory, golden tokens. */
  async gemma({ log, params }) {
    const refs = await json('/data/gemma/refs.json');
    const e = await Engine.create();
    try {
      const events = [];
      const t0 = performance.now();
      const m = await e.loadModel(GEMMA, { maxContext: 512, onProgress: (p) => events.push(p) });
      const loadMs = performance.now() - t0;
      const last = events[events.length - 1];
      const size = 253113024;
      if (events.length < 10) fail(`only ${events.length} progress events`);
      if (last.loadedBytes !== size || last.totalBytes !== size || last.phase !== 'done') fail(`last progress ${JSON.stringify(last)}`);
      if (last.tensorsReady !== last.nTensors || last.layersReady !== last.nLayers) fail(`not every tensor/layer ready: ${JSON.stringify(last)}`);
      for (let i = 1; i < events.length; i++) {
        if (events[i].loadedBytes < events[i - 1].loadedBytes) fail('progress went backwards');
      }
      const peak = Math.max(...events.map((p) => p.peakWasmMemoryBytes), m.load.peakWasmMemoryBytes);
      if (!(peak > 0 && peak < 64 * MIB)) fail(`peak wasm memory while streaming ${peak} bytes (limit 64 MiB)`);
      log(`  load ${(loadMs / 1000).toFixed(1)} s, ${events.length} progress events, peak wasm memory ${(peak / MIB).toFixed(1)} MiB`);

      // The golden rule of the native tests (tests/src/gemma_refs.rs): greedy ids equal to
      // llama.cpp's at every step up to the first one where llama.cpp's own top-1/top-2 gap is
      // below 0.3 (that step's top-5 logits are still compared), top-5 logits within 1.0.
      // `params.tokens` caps the steps (WEBJIT_WEB_GEMMA_TOKENS); the default runs them all.
      const steps = (r) => {
        const low = r.greedy.findIndex((g) => g.gap < 0.3);
        return Math.min(params.tokens ?? 32, low < 0 ? r.greedy.length : low + 1);
      };
      const golden = async (name, r) => {
        // The last prompt position's logits first (a fresh context each time).
        let want = null;
        if (r.logits_f16) {
          const buf = await (await fetch(`/data/gemma/${r.logits_f16}`)).arrayBuffer();
          const u16 = new Uint16Array(buf);
          want = Float32Array.from(u16, halfToF32);
        }
        const lg = await m.logits(r.prompt_ids);
        if (!(lg instanceof Float32Array) || lg.length !== refs.n_vocab) fail(`${name}: logits() gave ${lg?.length} values, vocabulary ${refs.n_vocab}`);
        const ll = checkLastLogits(name, lg, r, want);
        log(`  ${name}: last-position logits: argmax ${r.last_top10[0][0]}, ${ll.shared} of llama.cpp's top-10${ll.nmse === null ? '' : `, NMSE ${ll.nmse.toExponential(2)} over all ${lg.length}`}`);
        const n = steps(r);
        const tp = performance.now();
        const toks = await collect(m.generateTokens(r.prompt_ids, { maxTokens: n }));
        const ms = performance.now() - tp;
        if (toks.length !== n) fail(`${name}: ${toks.length} tokens, asked for ${n}`);
        const compared = checkGreedy(name, toks, r.greedy);
        if (compared !== n) fail(`${name}: compared ${compared} steps of ${n}`);
        const st = m.lastStats;
        log(`  ${name}: ${r.prompt_ids.length} prompt ids, ${n} greedy steps = llama.cpp's in ${(ms / 1000).toFixed(1)} s (prefill ${st?.prefillMs?.toFixed?.(0)} ms, decode ${st?.decodeMs?.toFixed?.(0)} ms): ${JSON.stringify(toks.map((t) => t.text).join(''))}`);
        return { n, ms, st };
      };

      await expectCode(m.logits([]), 'INVALID_ARGUMENT', 'logits of no tokens');
      await expectCode(m.logits([2, refs.n_vocab]), 'INVALID_ARGUMENT', 'logits of an id outside the vocabulary');
      const chat = refs.prompts[0];
      // The chat template and the tokenizer give llama.cpp's prompt ids.
      const prompt = await m.chatPrompt([{ role: 'user', content: 'Write a short poem about the sea.' }]);
      const ids = Array.from(await m.tokenize(prompt, { addBos: true }));
      if (JSON.stringify(ids) !== JSON.stringify(chat.prompt_ids)) fail(`chatPrompt+tokenize ids ${JSON.stringify(ids)} != llama.cpp ${JSON.stringify(chat.prompt_ids)} (prompt ${JSON.stringify(prompt)})`);
      const first = await golden('chat', chat);
      const genMs = first.ms;
      const st = first.st;
      // The other short golden prompts: their text tokenizes to llama.cpp's ids, then the same
      // rule. (The 692-token prompt is left to the native tests: its prefill alone would take
      // minutes on SwiftShader.)
      for (const name of (params.prompts ?? ['plain', 'code', 'chat_unicode'])) {
        const r = refs.prompts.find((p) => p.name === name);
        if (!r) fail(`no golden prompt ${name}`);
        const got = Array.from(await m.tokenize(r.text, { addBos: true }));
        if (JSON.stringify(got) !== JSON.stringify(r.prompt_ids)) fail(`${name}: ids ${JSON.stringify(got)} != llama.cpp ${JSON.stringify(r.prompt_ids)}`);
        await golden(name, r);
      }
      await m.dispose();
      return { loadMs, genMs, peak, stats: st };
    } finally {
      await e.dispose();
    }
  },
};
