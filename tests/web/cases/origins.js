// The package imported from another origin, as from a CDN: the page is http://127.0.0.1:PORT
// and the package comes from http://localhost:PORT/cdn/ (the same server under another host
// name, which the browser treats as another origin; /cdn/ answers with CORS headers). Also the
// errors of a worker or wasm that cannot be loaded.

import { MODELS, TINY, checkGreedy, collect, expectCode, fail, json } from './common.js';

const STEPS = 4;

/** The 'mixed' prompt of the tiny-llama references: its first 8 greedy steps all have a clear gap. */
async function reference() {
  const refs = await json('/data/tiny_llama/refs.json');
  return refs.prompts.find((p) => p.name === 'mixed');
}

function expectIn(text, parts, what) {
  for (const p of parts) if (!text.includes(p)) fail(`${what}: message lacks '${p}': ${text}`);
}

export const cases = {
  /** Engine from a cross-origin import: worker from a blob URL, wasm from the package's origin. */
  async cross_origin({ log }) {
    const cdnOrigin = `http://localhost:${location.port}`;
    if (cdnOrigin === location.origin) fail(`the page must not be on ${cdnOrigin}`);
    const cdn = `${cdnOrigin}/cdn/`;
    const webjit = await import(`${cdn}index.js`);
    const pr = await reference();
    await fetch('/__log?clear=1');

    // Default mode: the engine in the package's worker, started from a same-origin blob.
    const e = await webjit.Engine.create();
    try {
      if (e.worker !== true) fail(`engine.worker is ${e.worker}`);
      const m = await e.loadModel(TINY);
      const toks = await collect(m.generateTokens(pr.prompt_ids, { maxTokens: STEPS }));
      const compared = checkGreedy('cross-origin worker', toks, pr.greedy);
      if (compared < STEPS) fail(`only ${compared} greedy steps compared`);
      log(`  worker engine from ${cdn}: ${compared} greedy steps match llama.cpp`);
    } finally {
      await e.dispose();
    }
    // Where each file came from: the package's files from its own origin, the model from the page's.
    const reqs = await json('/__log');
    const from = (p) => reqs.filter((r) => r.path === p).map((r) => r.host);
    for (const f of ['/cdn/worker.js', '/cdn/core.js', '/cdn/wasm/webjit_web.js', '/cdn/wasm/webjit_web_bg.wasm']) {
      const hosts = from(f);
      if (!hosts.length || hosts.some((h) => h !== `localhost:${location.port}`)) fail(`${f} requested from ${JSON.stringify(hosts)}: ${JSON.stringify(reqs)}`);
    }
    if (reqs.some((r) => r.path.startsWith('/pkg/'))) fail(`the same-origin package was used: ${JSON.stringify(reqs)}`);
    if (!from(`${MODELS}/tiny-llama.gguf`).every((h) => h === location.host)) fail(`model from ${from(`${MODELS}/tiny-llama.gguf`)}`);

    // {worker: false}: a wasm that is not there first (NETWORK, and not remembered), then the
    // package's own, imported lazily from its origin.
    const bad = await expectCode(webjit.Engine.create({ worker: false, wasmUrl: `${cdn}wasm/missing.wasm` }), 'NETWORK', 'missing wasm, no worker');
    if (bad.status !== 404) fail(`missing wasm: status ${bad.status}`);
    const local = await webjit.Engine.create({ worker: false });
    try {
      if (local.worker !== false) fail(`local engine.worker is ${local.worker}`);
      const m = await local.loadModel(TINY);
      const toks = await collect(m.generateTokens(pr.prompt_ids, { maxTokens: 2 }));
      checkGreedy('cross-origin {worker: false}', toks, pr.greedy);
    } finally {
      await local.dispose();
    }
    log(`  {worker: false} from ${cdn}: after a missing wasm (${bad.message.slice(0, 60)}...), 2 greedy steps match`);
    return { compared: STEPS };
  },

  /** A worker or wasm that cannot be loaded: WORKER / NETWORK with what went wrong. */
  async load_errors({ log }) {
    const { Engine } = await import('/pkg/index.js');
    const lines = [];
    const check = async (opts, code, parts, what) => {
      const e = await expectCode(Engine.create(opts), code, what);
      expectIn(e.message, parts, what);
      lines.push(`  ${what}: [${e.code}${e.status ? ` ${e.status}` : ''}] ${e.message}`);
      return e;
    };
    const here = location.origin;
    const missing = await check({ wasmUrl: '/pkg/wasm/missing.wasm' }, 'NETWORK', ['HTTP 404', `${here}/pkg/wasm/missing.wasm`], 'wasm 404');
    if (missing.status !== 404 || missing.url !== `${here}/pkg/wasm/missing.wasm`) fail(`wasm 404: status ${missing.status}, url ${missing.url}`);
    // A dev server's SPA fallback answers with its index.html.
    await check({ wasmUrl: '/t/pages/harness.html' }, 'NETWORK', ['got an HTML page', `${here}/t/pages/harness.html`], 'wasm is an HTML page');
    await check({ wasmUrl: '/t/pages/harness.html', worker: false }, 'NETWORK', ['got an HTML page'], 'wasm is an HTML page, no worker');
    await check({ wasmUrl: '/data/tiny_llama/refs.json' }, 'NETWORK', ['not a wasm module', '7b 22'], 'wasm is JSON');
    await check({ wasmUrl: 'http://localhost:1/webjit.wasm' }, 'NETWORK', ['cannot fetch the webjit wasm'], 'wasm host down');
    const w404 = await check({ workerUrl: '/pkg/missing-worker.js' }, 'WORKER', ['HTTP 404', `${here}/pkg/missing-worker.js`, 'workerUrl'], 'worker 404');
    if (w404.status !== 404 || w404.url !== `${here}/pkg/missing-worker.js`) fail(`worker 404: status ${w404.status}, url ${w404.url}`);
    await check({ workerUrl: '/t/pages/harness.html' }, 'WORKER', ['got an HTML page'], 'worker is an HTML page');
    // Another origin without CORS headers (/pkg/ sends none): the blob worker cannot import it.
    const xo = `http://localhost:${location.port}/pkg/worker.js`;
    await check({ workerUrl: xo }, 'WORKER', [xo, 'Access-Control-Allow-Origin', 'worker: false'], 'cross-origin worker without CORS');
    for (const l of lines) log(l);
    // None of that broke anything: the default engine still starts.
    const e = await Engine.create();
    const info = await e.info();
    await e.dispose();
    if (!info.backend) fail(`info after the errors: ${JSON.stringify(info)}`);
    return { checked: lines.length };
  },
};
