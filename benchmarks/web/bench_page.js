// The in-page half of bench_minilm.mjs: one engine per page, so the engines never share a
// wasm heap, a GPU device or a JIT warm-up. Every function throws with a message that names
// what failed; nothing here falls back to another engine or skips a batch.
import { Engine } from '/pkg/index.js';

function fail(msg) {
  throw new Error(msg);
}

/** The batch of `batch` texts: the sentences repeated in order (as the native scripts do). */
function batchOf(items, batch) {
  return Array.from({ length: batch }, (_, i) => items[i % items.length]);
}

/**
 * Warm-up runs (not timed), then timed runs until at least minS seconds and 3 runs have
 * passed. `run` does the whole work of one batch and returns how many vectors it produced.
 */
async function timeLoop(run, batch, { minS, warmup }) {
  for (let i = 0; i < warmup; i++) {
    const n = await run();
    if (n !== batch) fail(`warm-up run ${i} produced ${n} vectors for a batch of ${batch}`);
  }
  const lat = [];
  const t0 = performance.now();
  while (lat.length < 3 || performance.now() - t0 < minS * 1000) {
    const t = performance.now();
    const n = await run();
    lat.push(performance.now() - t);
    if (n !== batch) fail(`run ${lat.length} produced ${n} vectors for a batch of ${batch}`);
  }
  const secs = (performance.now() - t0) / 1000;
  const s = [...lat].sort((a, b) => a - b);
  const q = (f) => s[Math.min(s.length - 1, Math.floor(f * s.length))];
  const r3 = (x) => Math.round(x * 1000) / 1000;
  return {
    batch,
    iterations: lat.length,
    seconds: r3(secs),
    ms_per_batch: r3((secs * 1000) / lat.length),
    sentences_per_s: r3((batch * lat.length) / secs),
    latency_ms: { min: r3(s[0]), median: r3(q(0.5)), p90: r3(q(0.9)), max: r3(s[s.length - 1]) },
  };
}

async function pageInfo() {
  const info = {
    userAgent: navigator.userAgent,
    hardwareConcurrency: navigator.hardwareConcurrency,
    crossOriginIsolated: self.crossOriginIsolated === true,
  };
  if (navigator.gpu) {
    const a = await navigator.gpu.requestAdapter();
    if (a) {
      const i = a.info || {};
      info.adapter = { vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description };
      info.adapterFeatures = [...a.features].sort();
    } else {
      info.adapter = 'requestAdapter() returned null';
    }
  } else {
    info.adapter = 'navigator.gpu is missing';
  }
  return info;
}

/** webjit: the package's Embedder, WebGPU (in its Worker, as an app would use it). */
async function benchWebjit(p) {
  const page = await pageInfo();
  const t0 = performance.now();
  const engine = await Engine.create();
  try {
    const info = await engine.info();
    const emb = await engine.loadEmbedder(p.modelUrl);
    const loadMs = performance.now() - t0;
    // webjit itself against sentence-transformers (tests/data/minilm_refs.json, the short
    // sentences), so that the reference ORT is checked against is right too.
    const golden = await emb.embed(p.golden.map((g) => g.text));
    let worstGolden = 1;
    golden.forEach((v, i) => {
      const c = cosine(v, p.golden[i].embedding);
      worstGolden = Math.min(worstGolden, c);
      if (!(c >= p.minGoldenCosine)) fail(`webjit disagrees with sentence-transformers on ${JSON.stringify(p.golden[i].text.slice(0, 40))}: cosine ${c} < ${p.minGoldenCosine}`);
    });
    const ids = [];
    for (const s of p.sentences) ids.push(Array.from(await emb.tokenize(s)));
    const vecs = (await emb.embed(p.sentences)).map((v) => Array.from(v));
    if (vecs.length !== p.sentences.length) fail(`embed(${p.sentences.length} texts) gave ${vecs.length} vectors`);
    const results = [];
    for (const b of p.batches) {
      const texts = batchOf(p.sentences, b);
      results.push(await timeLoop(async () => (await emb.embed(texts)).length, b, p));
    }
    await emb.dispose();
    return {
      page,
      engine_info: { adapter: info.adapter, backend: info.backend, features: info.features, version: info.version },
      load_ms: Math.round(loadMs),
      worst_cosine_vs_sentence_transformers: worstGolden,
      golden_sentences: golden.length,
      dim: emb.dim,
      ids,
      vecs,
      results,
    };
  } finally {
    await engine.dispose();
  }
}

/** [batch, seq] int64 feeds of the BERT ONNX graph, right-padded with id 0 / mask 0. */
function feedsOf(ort, idsList) {
  const b = idsList.length;
  const n = Math.max(...idsList.map((x) => x.length));
  const ids = new BigInt64Array(b * n);
  const mask = new BigInt64Array(b * n);
  idsList.forEach((row, i) => {
    row.forEach((id, j) => {
      ids[i * n + j] = BigInt(id);
      mask[i * n + j] = 1n;
    });
  });
  const dims = [b, n];
  return {
    lens: idsList.map((x) => x.length),
    feeds: {
      input_ids: new ort.Tensor('int64', ids, dims),
      attention_mask: new ort.Tensor('int64', mask, dims),
      token_type_ids: new ort.Tensor('int64', new BigInt64Array(b * n), dims),
    },
  };
}

/**
 * Mean pooling over the unpadded tokens, then L2 normalization (what sentence-transformers'
 * all-MiniLM-L6-v2 pipeline and webjit's Embedder do).
 */
function poolNormalize(hidden, dims, lens) {
  const [b, n, d] = dims;
  const out = [];
  for (let i = 0; i < b; i++) {
    const v = new Float32Array(d);
    for (let t = 0; t < lens[i]; t++) {
      const off = (i * n + t) * d;
      for (let k = 0; k < d; k++) v[k] += hidden[off + k];
    }
    let norm = 0;
    for (let k = 0; k < d; k++) {
      v[k] /= lens[i];
      norm += v[k] * v[k];
    }
    norm = Math.sqrt(norm) || 1;
    for (let k = 0; k < d; k++) v[k] /= norm;
    out.push(v);
  }
  return out;
}

function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let k = 0; k < a.length; k++) {
    dot += a[k] * b[k];
    na += a[k] * a[k];
    nb += b[k] * b[k];
  }
  return dot / Math.sqrt(na * nb);
}

/**
 * onnxruntime-web with one execution provider ('wasm' or 'webgpu'), fed webjit's token ids;
 * its embeddings must agree with webjit's (cosine >= p.minCosine) before anything is timed.
 */
async function benchOrt(ep, p) {
  const page = await pageInfo();
  const bundle = ep === 'wasm' ? 'ort.wasm.min.mjs' : ep === 'webgpu' ? 'ort.webgpu.min.mjs' : fail(`unknown ORT EP ${ep}`);
  const ort = await import(`${p.ortDir}/${bundle}`);
  // Served from this origin; nothing is fetched from a CDN.
  ort.env.wasm.wasmPaths = `${location.origin}${p.ortDir}/`;
  // Threads need SharedArrayBuffer, i.e. a cross-origin isolated page (COOP + COEP).
  ort.env.wasm.numThreads = self.crossOriginIsolated ? navigator.hardwareConcurrency : 1;
  ort.env.logLevel = 'warning';
  const t0 = performance.now();
  const session = await ort.InferenceSession.create(p.onnxUrl, {
    executionProviders: [ep],
    graphOptimizationLevel: 'all',
  });
  const loadMs = performance.now() - t0;
  const outName = 'last_hidden_state';
  if (!session.outputNames.includes(outName)) fail(`the ONNX model has outputs ${session.outputNames.join(', ')}, not ${outName}`);
  const embed = async (prepared) => {
    const out = await session.run(prepared.feeds);
    const h = out[outName];
    if (h.location && h.location !== 'cpu') fail(`output on ${h.location}, expected cpu`);
    const v = poolNormalize(h.data, h.dims, prepared.lens);
    for (const t of Object.values(out)) t.dispose?.();
    return v;
  };

  // Agreement with webjit: each sentence alone, and all of them in one padded batch.
  let worst = 1;
  const check = (vecs, which) => {
    vecs.forEach((v, i) => {
      const c = cosine(v, p.ref.vecs[which[i]]);
      worst = Math.min(worst, c);
      if (!(c >= p.minCosine)) fail(`ORT ${ep} and webjit disagree on sentence ${which[i]} (${JSON.stringify(p.sentences[which[i]].slice(0, 40))}): cosine ${c} < ${p.minCosine}`);
    });
  };
  for (let i = 0; i < p.ref.ids.length; i++) check(await embed(feedsOf(ort, [p.ref.ids[i]])), [i]);
  check(await embed(feedsOf(ort, p.ref.ids)), p.ref.ids.map((_, i) => i));

  const results = [];
  for (const b of p.batches) {
    // Feeds built outside the timing, as the native onnxruntime script does; pooling inside.
    const prepared = feedsOf(ort, batchOf(p.ref.ids, b));
    results.push(await timeLoop(async () => (await embed(prepared)).length, b, p));
  }
  await session.release();
  return {
    page,
    ort_env: { numThreads: ort.env.wasm.numThreads, simd: ort.env.wasm.simd ?? null, versions: ort.env.versions ?? null },
    load_ms: Math.round(loadMs),
    worst_cosine_vs_webjit: worst,
    results,
  };
}

export async function bench(engine, p) {
  if (engine === 'webjit') return benchWebjit(p);
  if (engine === 'ort-wasm') return benchOrt('wasm', p);
  if (engine === 'ort-webgpu') return benchOrt('webgpu', p);
  fail(`unknown engine ${engine}`);
}
