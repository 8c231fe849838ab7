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
