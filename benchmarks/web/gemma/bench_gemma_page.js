// The page side of benchmarks/web/bench_gemma.mjs: each step is a window function the node
// driver calls with page.evaluate, so the driver bounds and logs every step.
//   /pkg/      the webjit npm package (web/pkg)
//   /wllama/   @wllama/wllama's esm build (pinned in package.json here), wasm served locally
// Imported on first use, so one engine's absence does not stop the other's steps.
const webjit = () => import('/pkg/index.js');
const wllama = () => import('/wllama/index.js');

const state = { engine: null, model: null };

/** Per-token wall-clock stamps (ms since the call) around an async iterator of tokens. */
async function stamped(iter, pick) {
  const t0 = performance.now();
  const items = [];
  const ms = [];
  for await (const x of iter) {
    ms.push(performance.now() - t0);
    console.log(`bench: token ${ms.length} at ${(ms[ms.length - 1] / 1000).toFixed(1)} s`);
    items.push(pick(x));
  }
  return { items, ms, totalMs: performance.now() - t0 };
}

async function adapterInfo() {
  if (!navigator.gpu) return { error: 'navigator.gpu is missing' };
  const a = await navigator.gpu.requestAdapter();
  if (!a) return { error: 'requestAdapter() returned null' };
  const i = a.info || {};
  return { vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description };
}

window.benchEnv = async () => ({
  userAgent: navigator.userAgent,
  hardwareConcurrency: navigator.hardwareConcurrency,
  crossOriginIsolated: self.crossOriginIsolated === true,
  adapter: await adapterInfo(),
});

// ---------------- webjit ----------------

window.webjitLoad = async ({ url, maxContext }) => {
  // tuningStore 'none': no record from an earlier run may make the "untuned" run tuned.
  const { Engine } = await webjit();
  state.engine = await Engine.create({ tuningStore: 'none' });
  const t0 = performance.now();
  state.model = await state.engine.loadModel(url, { maxContext });
  const loadMs = performance.now() - t0;
  return { loadMs, info: await state.engine.info(), model: state.model.info, importedTuning: state.engine.importedTuning };
};

window.webjitTokenize = async ({ prompt }) => Array.from(await state.model.tokenize(prompt, { addBos: true }));

window.webjitGenerate = async ({ prompt, maxTokens }) => {
  const r = await stamped(state.model.generateTokens(prompt, { maxTokens, addBos: true }), (t) => ({ id: t.id, text: t.text, top: t.top }));
  return { ...r, stats: state.model.lastStats };
};

window.webjitTune = async ({ budgetMs }) => {
  const t0 = performance.now();
  const report = await state.engine.tune({ budgetMs });
  return { report, wallMs: performance.now() - t0 };
};

window.webjitDispose = async () => {
  if (state.model) await state.model.dispose();
  if (state.engine) await state.engine.dispose();
  state.model = state.engine = null;
};

// ---------------- wllama ----------------

window.wllamaRun = async ({ url, nThreads, nGpuLayers, nCtx, prompt, maxTokens, runs }) => {
  const logs = [];
  const keep = (lvl) => (...a) => logs.length < 400 && logs.push(`[${lvl}] ${a.map(String).join(' ')}`);
  const { Wllama } = await wllama();
  const w = new Wllama({ default: '/wllama/wasm/wllama.wasm' }, { logger: { debug: () => {}, log: keep('log'), warn: keep('warn'), error: keep('error') } });
  const t0 = performance.now();
  const resp = await fetch(url);
  if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
  const blob = await resp.blob();
  const fetchMs = performance.now() - t0;
  await w.loadModel([blob], { n_threads: nThreads, n_gpu_layers: nGpuLayers, n_ctx: nCtx, n_parallel: 1 });
  const loadMs = performance.now() - t0;
  const out = {
    fetchMs,
    loadMs,
    multithread: w.isMultithread(),
    threads: w.getNumThreads(),
    bos: w.getBOS(),
    addBos: w.mustAddBosToken(),
    runs: [],
  };
  try {
    for (let r = 0; r < runs; r++) {
      const chunks = [];
      const t1 = performance.now();
      const ms = [];
      await w.createCompletion({
        prompt,
        max_tokens: maxTokens,
        temperature: 0,
        cache_prompt: false,
        return_tokens: true,
        stream: true,
        onData: (c) => {
          ms.push(performance.now() - t1);
          chunks.push(c);
        },
      });
      out.runs.push({ ms, chunks, totalMs: performance.now() - t1 });
    }
  } finally {
    await w.exit();
  }
  out.logs = logs;
  return out;
};

// ---------------- token-id runs (bench_gemma_gpu.mjs: pp/tg against the native CLI) ----------------

/** The adapter's features and limits as a page sees them with requestAdapter() defaults and
 *  'high-performance', and whether a device with shader-f16 compiles and runs an f16 shader. */
window.benchFeatures = async () => {
  const out = {};
  for (const pref of ['default', 'high-performance']) {
    const a = await navigator.gpu?.requestAdapter(pref === 'default' ? undefined : { powerPreference: pref });
    if (!a) {
      out[pref] = null;
      continue;
    }
    const limits = {};
    for (const k in a.limits) limits[k] = a.limits[k];
    out[pref] = { vendor: a.info.vendor, architecture: a.info.architecture, description: a.info.description, features: [...a.features].sort(), limits };
    if (pref === 'high-performance' && a.features.has('shader-f16')) {
      try {
        const d = await a.requestDevice({ requiredFeatures: ['shader-f16'] });
        const m = d.createShaderModule({ code: 'enable f16; @group(0) @binding(0) var<storage, read_write> o: array<f32, 4>; @compute @workgroup_size(4) fn main(@builtin(local_invocation_index) i: u32) { let h = f16(i) * 1.5h + 0.25h; o[i] = f32(h); }' });
        const p = d.createComputePipeline({ layout: 'auto', compute: { module: m, entryPoint: 'main' } });
        const buf = d.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
        const rd = d.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
        const e = d.createCommandEncoder();
        const c = e.beginComputePass();
        c.setPipeline(p);
        c.setBindGroup(0, d.createBindGroup({ layout: p.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: buf } }] }));
        c.dispatchWorkgroups(1);
        c.end();
        e.copyBufferToBuffer(buf, 0, rd, 0, 16);
        d.queue.submit([e.finish()]);
        await rd.mapAsync(GPUMapMode.READ);
        out.f16_dispatch = Array.from(new Float32Array(rd.getMappedRange()));
        d.destroy();
      } catch (err) {
        out.f16_dispatch = `error: ${err.message}`;
      }
    }
  }
  return out;
};

/** Token arrival times (ms since the call) without per-token logging (console traffic to the
 *  driver would be timed too). */
async function stampedQuiet(iter, pick) {
  const t0 = performance.now();
  const items = [];
  const ms = [];
  for await (const x of iter) {
    ms.push(performance.now() - t0);
    items.push(pick(x));
  }
  return { items, ms, totalMs: performance.now() - t0 };
}

/** One engine for every load (created on first use); the model of the last load replaces the
 *  one before (disposed first, so only one copy of the weights is on the GPU). */
window.webjitLoadIds = async ({ url, maxContext }) => {
  const { Engine } = await webjit();
  const t0 = performance.now();
  if (!state.engine) state.engine = await Engine.create({ tuningStore: 'none' });
  const createMs = performance.now() - t0;
  if (state.model) await state.model.dispose();
  state.model = null;
  const t1 = performance.now();
  state.model = await state.engine.loadModel(url, { maxContext });
  const loadMs = performance.now() - t1;
  return { createMs, loadMs, load: state.model.load, info: await state.engine.info(), model: state.model.info, importedTuning: state.engine.importedTuning };
};

/** `runs` greedy generations from the same token ids (a fresh context each): the ids and the
 *  arrival time of every token, and the engine's own record (lastStats). */
window.webjitTokenizeText = async ({ text }) => Array.from(await state.model.tokenize(text, { addBos: true }));

window.webjitRunIds = async ({ ids, maxTokens, runs }) => {
  const out = [];
  for (let r = 0; r < runs; r++) {
    const g = await stampedQuiet(state.model.generateTokens(Uint32Array.from(ids), { maxTokens }), (t) => t.id);
    const s = state.model.lastStats;
    out.push({ ids: g.items, ms: g.ms, totalMs: g.totalMs, stats: s && { reason: s.reason, promptTokens: s.promptTokens, prefillMs: s.prefillMs, decodeMs: s.decodeMs, dispatchesPerToken: s.dispatchesPerToken } });
  }
  return out;
};

/** wllama, loaded once; then for each prompt of `prompts` (texts: wllama 3 takes no token ids;
 *  llama.cpp adds BOS and parses special tokens), `runs` greedy completions of maxTokens tokens
 *  (EOS ignored, no prompt cache): arrival times, the streamed tokens and llama.cpp's own
 *  timings. */
window.wllamaPromptsRun = async ({ url, nThreads, nGpuLayers, nCtx, nBatch, prompts, maxTokens, runs }) => {
  const logs = [];
  const keep = (lvl) => (...a) => logs.length < 400 && logs.push(`[${lvl}] ${a.map(String).join(' ')}`);
  const { Wllama } = await wllama();
  const w = new Wllama({ default: '/wllama/wasm/wllama.wasm' }, { logger: { debug: () => {}, log: keep('log'), warn: keep('warn'), error: keep('error') } });
  const t0 = performance.now();
  const resp = await fetch(url);
  if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
  const blob = await resp.blob();
  const fetchMs = performance.now() - t0;
  await w.loadModel([blob], { n_threads: nThreads, n_gpu_layers: nGpuLayers, n_ctx: nCtx, n_batch: nBatch, n_ubatch: nBatch, n_parallel: 1 });
  const loadMs = performance.now() - t0;
  const out = { fetchMs, loadMs, multithread: w.isMultithread(), threads: w.getNumThreads(), webgpu: w.isSupportWebGPU?.() ?? null, results: [] };
  try {
    for (const prompt of prompts) {
      const per = [];
      for (let r = 0; r < runs; r++) {
        const chunks = [];
        const ms = [];
        const t1 = performance.now();
        await w.createCompletion({
          prompt,
          max_tokens: maxTokens,
          temperature: 0,
          ignore_eos: true,
          cache_prompt: false,
          return_tokens: true,
          stream: true,
          onData: (c) => {
            ms.push(performance.now() - t1);
            chunks.push(c);
          },
        });
        per.push({ ms, chunks, totalMs: performance.now() - t1 });
      }
      out.results.push(per);
    }
  } finally {
    await w.exit();
  }
  out.logs = logs;
  return out;
};
