// Browser test of the demo page (demo/web/) in headless Debian Chromium (WebGPU on SwiftShader),
// driven by playwright-core, with the page served in the layout of `webjit serve`
// (demo-server.mjs). Every check FAILS the run (exit 1): nothing is skipped, except that
// early_message and during_load (they need demo-server.mjs to slow the model down) are
// reported as SKIP when WEBJIT_DEMO_ORIGIN points at another server.
//
//   node tests/web/demo.mjs                     the whole test (tiny-llama as the chat model)
//   node tests/web/demo.mjs --only early_message  only the first message sent before the load
//   node tests/web/demo.mjs --only during_load    only messages sent during the automatic load
//   node tests/web/demo.mjs --readme-shot FILE  no test: Gemma 3 270M answers a question, the
//                                               device is tuned, FILE gets a screenshot (docs/demo.png)
//
// Screenshots go to $WEBJIT_ARTIFACTS (default .cache/test-artifacts/demo, gitignored); each is
// checked for content by drawing it back into a canvas and measuring its pixel variance.
// Env: WEBJIT_CHROMIUM (default /usr/bin/chromium), WEBJIT_WEB_TOOLS (npm tools dir),
// WEBJIT_DEMO_ORIGIN (test a running server, e.g. `webjit serve`, instead of demo-server.mjs).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CHROMIUM, chromiumArgs } from './chromium.mjs';
import { startDemoServer } from './demo-server.mjs';
import { modelDir } from './server.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const TOOLS = process.env.WEBJIT_WEB_TOOLS || path.join(ROOT, '.cache', 'web-tools');
const ARTIFACTS = path.resolve(ROOT, process.env.WEBJIT_ARTIFACTS || '.cache/test-artifacts/demo');
const CHAT_TOKENS = 12;
const EARLY_TOKENS = 2;

class Failure extends Error {}
function fail(msg) {
  throw new Failure(msg);
}
function die(msg) {
  console.error(`demo test: FAIL: ${msg}`);
  process.exit(1);
}

/** Waits for `fn` in the page; on timeout fails with `what` and the page's status line. */
async function waitFor(page, what, fn, arg, timeoutMs) {
  try {
    await page.waitForFunction(fn, arg, { timeout: timeoutMs, polling: 200 });
  } catch (e) {
    const status = await page.locator('#status').textContent().catch(() => '?');
    fail(`${what}: not within ${timeoutMs / 1000} s (page status: ${JSON.stringify(status)}): ${e.message.split('\n')[0]}`);
  }
}

/** Width, height, pixel variance (mean over RGB) and distinct colours of a PNG, measured in
 *  the page by drawing it into a canvas. */
async function pngStats(page, png) {
  return page.evaluate(async (b64) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const bmp = await createImageBitmap(new Blob([bytes], { type: 'image/png' }));
    const c = new OffscreenCanvas(bmp.width, bmp.height);
    const ctx = c.getContext('2d');
    ctx.drawImage(bmp, 0, 0);
    const d = ctx.getImageData(0, 0, bmp.width, bmp.height).data;
    let sum = 0;
    let sq = 0;
    const colours = new Set();
    const n = d.length / 4;
    for (let i = 0; i < d.length; i += 4) {
      const g = (d[i] + d[i + 1] + d[i + 2]) / 3;
      sum += g;
      sq += g * g;
      if (colours.size < 5000) colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
    }
    const mean = sum / n;
    return { width: bmp.width, height: bmp.height, variance: sq / n - mean * mean, colours: colours.size };
  }, png.toString('base64'));
}

/** Screenshot of a locator into ARTIFACTS/name.png, failing when it is blank. */
async function shot(page, locator, name, { minVariance = 50, minColours = 3 } = {}) {
  const file = path.join(ARTIFACTS, `${name}.png`);
  const png = await locator.screenshot({ path: file });
  const s = await pngStats(page, png);
  if (!(s.variance >= minVariance && s.colours >= minColours)) {
    fail(`screenshot ${file} looks blank: ${JSON.stringify(s)} (want variance >= ${minVariance}, colours >= ${minColours})`);
  }
  return { file, ...s };
}

/** NATTEN's window along one axis (not causal), written independently of the page's. */
function windowRef(len, kernel, dilation, i) {
  const group = [];
  for (let x = i % dilation; x < len; x += dilation) group.push(x);
  const at = group.indexOf(i);
  const start = Math.min(Math.max(at - (kernel >> 1), 0), group.length - kernel);
  return group.slice(start, start + kernel);
}

async function pageWithLog(browser) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 1100 } });
  const page = await ctx.newPage();
  const lines = [];
  page.on('console', (m) => lines.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => lines.push(`[pageerror] ${e.message}`));
  return { ctx, page, lines };
}

async function clickCell(page, y, x) {
  const box = await page.locator('#attn-grid').boundingBox();
  await page.mouse.click(box.x + ((x + 0.5) / 32) * box.width, box.y + ((y + 0.5) / 32) * box.height);
  await waitFor(page, `query cell (${y}, ${x}) drawn`, (q) => document.getElementById('attention').dataset.query === q, `${y},${x}`, 10000);
  return Number(await page.locator('#attention').getAttribute('data-attended'));
}

async function sendMessage(page, text) {
  const before = await page.locator('#messages .msg.model').count();
  await page.locator('#prompt').fill(text);
  await page.locator('#prompt').press('Enter');
  await waitFor(page, 'the answer bubble', (n) => document.querySelectorAll('#messages .msg.model').length > n, before, 10000);
  return page.locator('#messages .msg.model').nth(before);
}

// ---------------- the steps ----------------

async function stepLoad(page) {
  await waitFor(page, 'engine ready', () => ['ready', 'nowebgpu', 'error'].includes(document.body.dataset.engine), null, 60000);
  const engine = await page.evaluate(() => document.body.dataset.engine);
  if (engine !== 'ready') fail(`engine ${engine}: ${await page.locator('#status').textContent()}`);
  await waitFor(page, 'chat model loaded', () => ['ready', 'error'].includes(document.getElementById('chat').dataset.state), null, 120000);
  const st = await page.evaluate(() => ({
    state: document.getElementById('chat').dataset.state,
    pct: document.getElementById('load-bar').dataset.pct,
    events: Number(document.getElementById('load-bar').dataset.events),
    bytes: document.getElementById('load-bytes').textContent,
    cells: document.querySelectorAll('#layers .cell').length,
    lit: document.querySelectorAll('#layers .cell.ready').length,
    info: document.getElementById('model-info').textContent,
  }));
  if (st.state !== 'ready') fail(`chat model did not load: ${st.bytes}`);
  if (!(st.events > 0)) fail('no progress events reached the load bar');
  if (st.pct !== '100') fail(`load bar at ${st.pct}%, want 100 (${st.bytes})`);
  if (!(st.cells > 0 && st.lit === st.cells)) fail(`layer cells: ${st.lit} of ${st.cells} lit`);
  if (!/\d+(\.\d+)? MB \/ \d+(\.\d+)? MB/.test(st.bytes)) fail(`load text shows no bytes loaded/total: ${st.bytes}`);
  console.log(`  load: ${st.bytes}; ${st.lit}/${st.cells} layers after ${st.events} progress events; ${st.info}`);
  await shot(page, page.locator('#chat .load'), 'load-bar', { minVariance: 5 });
}

async function stepDevice(page) {
  const dev = await page.evaluate(() => {
    const out = {};
    const dl = document.getElementById('device-info');
    for (const dt of dl.querySelectorAll('dt')) out[dt.textContent] = dt.nextElementSibling.textContent;
    out.limitRows = document.querySelectorAll('#limits tr').length;
    return out;
  });
  for (const k of ['adapter', 'backend', 'features', 'limits', 'GPU memory held']) {
    if (!dev[k]) fail(`device panel has no ${k}: ${JSON.stringify(dev)}`);
  }
  if (!/\d/.test(dev['GPU memory held']) || dev['GPU memory held'].startsWith('0 B')) fail(`GPU memory held: ${dev['GPU memory held']} (a model is loaded)`);
  if (dev.limitRows < 5) fail(`limits table has ${dev.limitRows} rows`);
  console.log(`  device: ${dev.adapter} (${dev.backend}); features ${dev.features}; memory ${dev['GPU memory held']}`);
}

async function stepEmbed(page) {
  await waitFor(page, 'embeddings heatmap', () => ['done', 'error'].includes(document.getElementById('embed').dataset.state), null, 120000);
  const st = await page.evaluate(() => ({ state: document.getElementById('embed').dataset.state, n: document.getElementById('embed').dataset.n, status: document.getElementById('embed-status').textContent }));
  if (st.state !== 'done') fail(`embeddings: ${st.status}`);
  if (st.n !== '6') fail(`heatmap of ${st.n} sentences, want the 6 sample ones`);
  // Paraphrases score above unrelated pairs in the matrix the page drew.
  const sims = await page.evaluate(() => {
    const { lines, sim } = window.demo.panels.embed.shown;
    const at = (s) => lines.indexOf(s);
    return [sim[at('A man is eating food.')][at('A man eats a meal.')], sim[at('A man is eating food.')][at('The stock market fell sharply.')]];
  });
  if (!(sims[0] > sims[1] + 0.3)) fail(`paraphrase cosine ${sims[0]} not well above unrelated ${sims[1]}`);
  const s = await shot(page, page.locator('#heatmap'), 'heatmap', { minVariance: 200, minColours: 20 });
  console.log(`  embeddings: ${st.status}; paraphrase ${sims[0].toFixed(3)} vs unrelated ${sims[1].toFixed(3)}; heatmap variance ${s.variance.toFixed(0)}`);
}

async function stepAttention(page) {
  await waitFor(page, 'attention playground', () => ['done', 'error'].includes(document.getElementById('attention').dataset.state), null, 120000);
  let st = await page.evaluate(() => ({ state: document.getElementById('attention').dataset.state, status: document.getElementById('attn-status').textContent }));
  if (st.state !== 'done') fail(`attention (neighborhood): ${st.status}`);
  // Neighborhood 7x7, dilation 2 (the defaults): the drawn keys are NATTEN's window.
  for (const [y, x] of [[5, 20], [0, 31], [16, 16]]) {
    const n = await clickCell(page, y, x);
    const want = windowRef(32, 7, 2, y).length * windowRef(32, 7, 2, x).length;
    if (n !== want) fail(`neighborhood query (${y}, ${x}): ${n} keys drawn, want ${want}`);
    const drawn = await page.evaluate(() => {
      const c = document.getElementById('attn-grid');
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      const cell = c.width / 32;
      const lit = [];
      for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) {
        const i = ((y * cell + cell / 2) * c.width + (x * cell + cell / 2)) * 4;
        if (d[i + 2] > 200 && d[i] < 120) lit.push(y * 32 + x);
      }
      return lit;
    });
    const wantSet = new Set();
    for (const yy of windowRef(32, 7, 2, y)) for (const xx of windowRef(32, 7, 2, x)) wantSet.add(yy * 32 + xx);
    wantSet.delete(y * 32 + x); // the query cell is drawn in its own colour
    if (drawn.length !== wantSet.size || drawn.some((t) => !wantSet.has(t))) {
      fail(`neighborhood query (${y}, ${x}): drawn cells ${JSON.stringify(drawn.slice(0, 12))}… (${drawn.length}) differ from NATTEN's window (${wantSet.size})`);
    }
  }
  const times = await page.evaluate(() => ({ ...document.getElementById('attn-times').dataset }));
  if (!(Number(times.opMs) > 0 && Number(times.denseMs) > 0)) fail(`attention times: ${JSON.stringify(times)}`);
  await shot(page, page.locator('#attention .attn-view'), 'attention-neighborhood', { minVariance: 200 });
  console.log(`  neighborhood: ${Number(times.opMs).toFixed(2)} ms vs dense ${Number(times.denseMs).toFixed(2)} ms`);

  // Block-sparse: top-3 of 16 blocks of 8x8 per query.
  await page.locator('input[name="attn-kind"][value="bsa"]').check();
  await waitFor(page, 'block-sparse run', () => {
    const a = document.getElementById('attention').dataset;
    return a.state === 'error' || (a.state === 'done' && a.kind === 'bsa');
  }, null, 120000);
  st = await page.evaluate(() => ({ state: document.getElementById('attention').dataset.state, status: document.getElementById('attn-status').textContent }));
  if (st.state !== 'done') fail(`attention (block-sparse): ${st.status}`);
  for (const [y, x] of [[3, 3], [30, 12]]) {
    const n = await clickCell(page, y, x);
    // 3 blocks of 64 tokens, minus the query cell drawn in its own colour (counted still).
    if (n !== 3 * 64) fail(`block-sparse query (${y}, ${x}): ${n} keys drawn, want 3 blocks of 64`);
    // The drawn blocks are MoBA's top 3 gates (q . mean of the block's k, head 0), recomputed
    // here from the page's seeded inputs.
    const ref = await page.evaluate(async ([qy, qx]) => {
      const { makeInputs } = await import('/attention.js');
      const { q, k } = makeInputs();
      const side = 32, heads = 2, dim = 32, b = 8, per = side / b;
      const qv = q.subarray((qy * side + qx) * heads * dim, (qy * side + qx) * heads * dim + dim);
      const gates = [];
      for (let blk = 0; blk < per * per; blk++) {
        const mean = new Float64Array(dim);
        const by = Math.floor(blk / per), bx = blk % per;
        for (let yy = by * b; yy < by * b + b; yy++) for (let xx = bx * b; xx < bx * b + b; xx++) {
          const off = (yy * side + xx) * heads * dim;
          for (let i = 0; i < dim; i++) mean[i] += k[off + i] / (b * b);
        }
        let g = 0;
        for (let i = 0; i < dim; i++) g += qv[i] * mean[i];
        gates.push([g, blk]);
      }
      gates.sort((a, c) => c[0] - a[0] || a[1] - c[1]);
      return { top: gates.slice(0, 3).map((g) => g[1]).sort((a, c) => a - c), margin: gates[2][0] - gates[3][0], drawn: document.getElementById('attention').dataset.blocks };
    }, [y, x]);
    if (ref.margin < 1e-3) fail(`query (${y}, ${x}): the 3rd and 4th gates are within ${ref.margin}: pick another test query`);
    if (ref.drawn !== ref.top.join(',')) fail(`block-sparse query (${y}, ${x}): drawn blocks ${ref.drawn}, top-3 gates ${ref.top.join(',')}`);
  }
  const bt = await page.evaluate(() => ({ ...document.getElementById('attn-times').dataset }));
  if (!(Number(bt.opMs) > 0)) fail(`block-sparse time: ${JSON.stringify(bt)}`);
  await shot(page, page.locator('#attention .attn-view'), 'attention-block-sparse', { minVariance: 200 });
  console.log(`  block-sparse: ${Number(bt.opMs).toFixed(2)} ms vs dense ${Number(bt.denseMs).toFixed(2)} ms`);
}

async function stepChat(page) {
  // Stop: the answer ends early with reason 'stopped'.
  const first = await sendMessage(page, 'Tell me a long story about the sea.');
  await waitFor(page, 'first tokens', () => {
    const m = [...document.querySelectorAll('#messages .msg.model')].pop();
    return Number(m.dataset.pieces || 0) >= 2 || m.dataset.done === '1';
  }, null, 60000);
  await page.locator('#stop').click();
  await waitFor(page, 'the stopped answer', () => [...document.querySelectorAll('#messages .msg.model')].pop().dataset.done === '1', null, 60000);
  const stopped = await first.evaluate((el) => ({ ...el.dataset, text: el.textContent }));
  if (stopped.reason !== 'stopped') fail(`Stop: answer ended with reason ${stopped.reason} after ${stopped.tokens} tokens`);
  // A second turn (the history is in the prompt) runs to its end.
  const second = await sendMessage(page, 'And another one?');
  await waitFor(page, 'the second answer', () => [...document.querySelectorAll('#messages .msg.model')].pop().dataset.done === '1', null, 120000);
  const ans = await second.evaluate((el) => ({ ...el.dataset, text: el.textContent }));
  if (!(Number(ans.tokens) >= 1) || !ans.text || ans.text === '(no answer)') fail(`chat produced no tokens: ${JSON.stringify(ans)}`);
  if (!['eog', 'max_tokens'].includes(ans.reason)) fail(`second answer ended with ${ans.reason}`);
  const rate = await page.locator('#tok-rate').textContent();
  if (!/^\d+(\.\d+)? tok\/s$/.test(rate)) fail(`tok/s not shown: ${JSON.stringify(rate)}`);
  console.log(`  chat: stopped after ${stopped.tokens} tokens; second answer ${ans.tokens} tokens (${ans.reason}), ${rate}: ${JSON.stringify(ans.text.slice(0, 60))}`);
  await shot(page, page.locator('#chat'), 'chat', { minVariance: 50 });
  // Reset empties the conversation.
  await page.locator('#reset').click();
  await waitFor(page, 'reset', () => document.querySelectorAll('#messages .msg.user').length === 0 && document.querySelector('#messages .msg.note'), null, 10000);
}

async function stepTune(page) {
  await page.locator('#tune-budget').fill('1500');
  await page.locator('#tune').click();
  await waitFor(page, 'tuning', () => ['done', 'error'].includes(document.getElementById('device').dataset.tune), null, 300000);
  const st = await page.evaluate(() => ({
    state: document.getElementById('device').dataset.tune,
    status: document.getElementById('tune-status').textContent,
    rows: [...document.querySelectorAll('#tune-table tbody tr')].map((tr) => [...tr.children].map((td) => td.textContent)),
  }));
  if (st.state !== 'done') fail(`tuning: ${st.status}`);
  if (!st.rows.length) fail(`tuning table is empty: ${st.status}`);
  for (const r of st.rows) {
    if (r.length !== 6 || !r[0] || !r[1] || !r[2] || !(Number(r[3]) > 0) || !(Number(r[4]) > 0) || !/^\d+\.\d+×$/.test(r[5])) fail(`tuning row ${JSON.stringify(r)}`);
  }
  if (!/saved in IndexedDB/.test(st.status)) fail(`tuning records not saved: ${st.status}`);
  console.log(`  tune: ${st.status}; first row ${JSON.stringify(st.rows[0])}`);
  await shot(page, page.locator('#device'), 'device-tuned', { minVariance: 20 });
}

async function stepReload(page) {
  await page.reload();
  await waitFor(page, 'engine ready after reload', () => document.body.dataset.engine === 'ready' && Number(document.getElementById('device').dataset.records) > 0, null, 60000);
  const rec = await page.evaluate(() => {
    const dts = [...document.querySelectorAll('#device-info dt')];
    return dts.find((d) => d.textContent === 'tuning records')?.nextElementSibling.textContent;
  });
  if (!/loaded from IndexedDB/.test(rec)) fail(`after reload, tuning records: ${rec}`);
  await waitFor(page, 'stored records in the tuning table', () => Number(document.getElementById('device').dataset.stored) > 0, null, 10000);
  const rows = await page.locator('#tune-table tbody tr').count();
  if (rows !== Number(/^\d+/.exec(rec)[0])) fail(`after reload: ${rows} table rows for ${rec}`);
  console.log(`  reload: tuning records ${rec}`);
}

async function testWebGPU(chromium, origin) {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: chromiumArgs() });
  const { ctx, page, lines } = await pageWithLog(browser);
  try {
    await page.goto(`${origin}/?model=tiny-llama.gguf&maxTokens=${CHAT_TOKENS}`);
    const steps = [['load', stepLoad], ['device', stepDevice], ['embed', stepEmbed], ['attention', stepAttention], ['chat', stepChat], ['tune', stepTune], ['reload', stepReload]];
    for (const [name, step] of steps) {
      const t0 = Date.now();
      try {
        await step(page);
      } catch (e) {
        await page.screenshot({ path: path.join(ARTIFACTS, `failed-${name}.png`), fullPage: true }).catch(() => {});
        for (const l of lines.slice(-20)) console.log(`  console: ${l}`);
        throw e instanceof Failure ? new Failure(`${name}: ${e.message}`) : e;
      }
      console.log(`PASS demo/${name} ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    }
    await page.screenshot({ path: path.join(ARTIFACTS, 'page.png'), fullPage: true });
    const errors = lines.filter((l) => l.startsWith('[pageerror]'));
    if (errors.length) fail(`uncaught errors in the page: ${errors.join(' | ')}`);
  } finally {
    await ctx.close().catch(() => {});
    await browser.close().catch(() => {});
  }
}

/** The chat's last model bubble's state. */
function lastAnswer(page) {
  return page.evaluate(() => {
    const m = [...document.querySelectorAll('#messages .msg.model')].pop();
    return m ? { ...m.dataset, text: m.textContent, stopped: m.classList.contains('stopped') } : null;
  });
}

/**
 * The first message goes out before the model is there (?autoload=0, the .gguf served at
 * EARLY_RATE bytes/s so that its load lasts seconds): Stop during that load aborts it cleanly;
 * the next message's load prefills its chat prompt layer by layer while the file streams in
 * (progress with layersPrefilled > 0 while loadedBytes < totalBytes), and the answer starts
 * from that prefilled prompt; a later turn is answered as usual.
 */
async function testEarlyMessage(chromium, srv) {
  const EARLY_RATE = 250_000; // tiny-llama.gguf (999168 bytes) in about 4 s
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: chromiumArgs() });
  const { ctx, page, lines } = await pageWithLog(browser);
  const t0 = Date.now();
  try {
    await page.goto(`${srv.origin}/?model=tiny-llama.gguf&maxTokens=${EARLY_TOKENS}&autoload=0`);
    await waitFor(page, 'engine ready', () => ['ready', 'nowebgpu', 'error'].includes(document.body.dataset.engine), null, 60000);
    // The small demos run first when the chat model is not autoloaded: let them finish, so
    // that the chat load alone uses the engine while the test watches its progress.
    await waitFor(page, 'embeddings and attention done', () => ['done', 'error'].includes(document.getElementById('embed').dataset.state) && ['done', 'error'].includes(document.getElementById('attention').dataset.state), null, 180000);
    const before = await page.evaluate(() => ({
      state: document.getElementById('chat').dataset.state,
      send: !document.getElementById('send').disabled,
      prompt: !document.getElementById('prompt').disabled,
      hint: !document.getElementById('chat-hint').hidden,
    }));
    if (before.state !== 'idle' || !before.send || !before.prompt || !before.hint) fail(`before any load the chat should take a message: ${JSON.stringify(before)}`);
    srv.throttle.modelBytesPerSecond = EARLY_RATE;

    // 1. Stop while the load with the prompt runs: the load is aborted, the engine stays usable.
    await sendMessage(page, 'Hello there');
    await waitFor(page, 'a load prefilling the first message', () => document.getElementById('chat').dataset.prefill === '1' && window.demo.panels.chat.loadLog.length > 0, null, 30000);
    const mid = await page.evaluate(() => window.demo.panels.chat.loadLog.at(-1));
    if (!(mid.loadedBytes < mid.totalBytes)) fail(`the load was over before Stop could be pressed: ${JSON.stringify(mid)}`);
    await page.locator('#stop').click();
    await waitFor(page, 'the stopped load', () => document.getElementById('chat').dataset.state === 'idle' && [...document.querySelectorAll('#messages .msg.model')].pop().dataset.done === '1', null, 30000);
    const stopped = await lastAnswer(page);
    const bar = await page.locator('#load-bytes').textContent();
    if (stopped.reason !== 'stopped' || !stopped.stopped || !/load stopped/.test(bar)) fail(`Stop during the load: answer ${JSON.stringify(stopped)}, load text ${JSON.stringify(bar)}`);

    // 2. The next message's load prefills it while the file streams in.
    await sendMessage(page, 'What is the sea?');
    // The bar while layers read the message and bytes are still missing (an artifact only: a
    // load that outran the 200 ms polling is not a failure here; the log checks below decide).
    await page.waitForFunction(() => Number(document.getElementById('layers').dataset.prefilled) > 0 || document.getElementById('chat').dataset.state !== 'loading', null, { timeout: 60000, polling: 100 }).catch(() => {});
    if ((await page.evaluate(() => document.getElementById('chat').dataset.state)) === 'loading') {
      await shot(page, page.locator('#chat .load'), 'load-bar-prefilling', { minVariance: 5 });
    }
    await waitFor(page, 'the prefilled answer', () => [...document.querySelectorAll('#messages .msg.model')].pop().dataset.done === '1', null, 120000);
    const ans = await lastAnswer(page);
    const log = await page.evaluate(() => window.demo.panels.chat.loadLog);
    const early = log.find((e) => e.layersPrefilled > 0 && e.loadedBytes < e.totalBytes);
    if (!early) fail(`no progress event had layers prefilled before the download completed (${log.length} events: ${JSON.stringify(log.slice(-4))})`);
    const end = log.at(-1);
    if (!(end && end.layersPrefilled === end.nLayers && end.loadedBytes === end.totalBytes)) fail(`the last progress event: ${JSON.stringify(end)}`);
    if (ans.prefilled !== '1' || ans.template !== 'same') fail(`the answer did not continue from the prefilled prompt: ${JSON.stringify(ans)}`);
    if (!(Number(ans.tokens) >= 1) || !['eog', 'max_tokens'].includes(ans.reason)) fail(`the prefilled answer produced no tokens: ${JSON.stringify(ans)}`);
    const stats = await page.locator('#gen-stats').textContent();
    if (!/read during the load/.test(stats)) fail(`gen stats: ${JSON.stringify(stats)}`);
    const cells = await page.evaluate(() => ({ n: document.querySelectorAll('#layers .cell').length, read: document.querySelectorAll('#layers .cell.prefilled').length, text: document.getElementById('load-layers').textContent }));
    if (cells.read !== cells.n || !/read your message/.test(cells.text)) fail(`layer cells after the prefilled load: ${JSON.stringify(cells)}`);
    // The same answer as the usual path (tiny-llama has no template: the page's, Gemma 3's).
    const usual = await page.evaluate(async (n) => {
      const [hist, template] = [window.demo.panels.chat.history.slice(0, -1), await window.demo.webjit.builtinChatTemplate('gemma3')];
      let text = '';
      for await (const piece of window.demo.panels.chat.model.chat(hist, { maxTokens: n, template })) text += piece;
      return { text, turns: hist.length };
    }, EARLY_TOKENS);
    if (usual.text !== ans.text) fail(`the prefilled answer ${JSON.stringify(ans.text)} differs from the usual path's ${JSON.stringify(usual.text)} (${usual.turns} turns)`);
    console.log(`  early message: at ${early.loadedBytes}/${early.totalBytes} bytes ${early.layersPrefilled}/${early.nLayers} layers had read it (${log.length} progress events); answer ${ans.tokens} tokens (${ans.reason}) ${JSON.stringify(ans.text.slice(0, 40))}`);
    await shot(page, page.locator('#chat'), 'chat-early', { minVariance: 50 });

    // 3. The package's model-free chatPrompt in the template the page guesses (the built-in
    //    Gemma 3 one; tiny-llama has none, so the page answers in it) gives the model's ids.
    const diffs = await page.evaluate(async () => {
      const convs = [
        [{ role: 'user', content: 'Hi' }],
        [{ role: 'system', content: ' Be brief.\n' }, { role: 'user', content: '\tWhat is 2+2? ' }, { role: 'assistant', content: '4' }, { role: 'user', content: 'And 3+3?' }],
        [{ role: 'user', content: 'ünïcode ✓ 😀' }, { role: 'model', content: ' ok ' }], [{ role: 'assistant', content: 'out of order' }],
      ];
      const { webjit, panels: { chat: { model: m } } } = window.demo;
      const settle = (p) => p.then((ids) => ({ ids: Array.from(ids) }), (e) => ({ code: e.code })); // ids or error code
      const [template, out] = [await webjit.builtinChatTemplate('gemma3'), m.info.chat_template === 'none' && (await settle(m.chatPrompt(convs[0]))).code === 'CHAT_TEMPLATE' ? [] : [m.info]];
      for (const c of convs) {
        const [js, own] = [await settle(webjit.chatPrompt(c, template).then((t) => m.tokenize(t, { addBos: true }))), await settle(m.chatPromptIds(c, { template }))];
        if (JSON.stringify(js) !== JSON.stringify(own) || (c === convs[3] && own.code !== 'CHAT_TEMPLATE')) out.push({ c, js, own });
      }
      return out;
    });
    if (diffs.length) fail(`chatPrompt (package) differs from the model's: ${JSON.stringify(diffs)}`);

    // 4. A later turn, answered as before (the whole conversation through the template).
    srv.throttle.modelBytesPerSecond = 0;
    await sendMessage(page, 'And the sky?');
    await waitFor(page, 'the second answer', () => [...document.querySelectorAll('#messages .msg.model')].pop().dataset.done === '1', null, 120000);
    const later = await lastAnswer(page);
    if (!(Number(later.tokens) >= 1) || later.prefilled === '1') fail(`later turn: ${JSON.stringify(later)}`);
    const errors = lines.filter((l) => l.startsWith('[pageerror]'));
    if (errors.length) fail(`uncaught errors in the page: ${errors.join(' | ')}`);
    console.log(`PASS demo/early_message ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  } catch (e) {
    await page.screenshot({ path: path.join(ARTIFACTS, 'failed-early_message.png'), fullPage: true }).catch(() => {});
    for (const l of lines.slice(-20)) console.log(`  console: ${l}`);
    throw e instanceof Failure ? new Failure(`early_message: ${e.message}`) : e;
  } finally {
    srv.throttle.modelBytesPerSecond = 0;
    await ctx.close().catch(() => {});
    await browser.close().catch(() => {});
  }
}

/**
 * A message sent while the automatic (plain) load runs: early in the file it restarts the load
 * with the message's prompt (a second .gguf request; layers read it before the download
 * ends); past half of the file it waits for the load and is answered as usual. Each case in a
 * fresh browser context (empty Cache API), the .gguf throttled as in testEarlyMessage.
 */
async function testMessageDuringLoad(chromium, srv) {
  const RATE = 250_000;
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: chromiumArgs() });
  const t0 = Date.now();
  try {
    for (const [name, sendAt] of [['restart', 0.05], ['wait', 0.6]]) {
      const { ctx, page, lines } = await pageWithLog(browser);
      srv.throttle.modelBytesPerSecond = RATE;
      const tag = `${name}-${Date.now()}`;
      try {
        const ggufBefore = srv.log.filter((r) => r.path.endsWith('.gguf')).length;
        await page.goto(`${srv.origin}/?model=tiny-llama.gguf&maxTokens=${EARLY_TOKENS}&t=${tag}`);
        await waitFor(page, `the plain load past ${sendAt * 100}%`, (f) => {
          const e = window.demo?.panels?.chat?.loadLog?.at(-1);
          return !!e && e.totalBytes > 0 && e.loadedBytes / e.totalBytes >= f;
        }, sendAt, 60000);
        const at = await page.evaluate(() => window.demo.panels.chat.loadLog.at(-1));
        if (!(at.loadedBytes < at.totalBytes * (name === 'restart' ? 0.5 : 1))) fail(`${name}: the load went too far before the message (${JSON.stringify(at)})`);
        await sendMessage(page, 'Where do rivers go?');
        await waitFor(page, `${name}: the answer`, () => [...document.querySelectorAll('#messages .msg.model')].pop().dataset.done === '1', null, 120000);
        const ans = await lastAnswer(page);
        const log = await page.evaluate(() => window.demo.panels.chat.loadLog);
        const requests = srv.log.filter((r) => r.path.endsWith('.gguf')).length - ggufBefore;
        if (!(Number(ans.tokens) >= 1) || !['eog', 'max_tokens'].includes(ans.reason)) fail(`${name}: no tokens: ${JSON.stringify(ans)}`);
        if (name === 'restart') {
          const early = log.find((e) => e.layersPrefilled > 0 && e.loadedBytes < e.totalBytes);
          if (requests !== 2 || !early || ans.prefilled !== '1') fail(`restart: ${requests} .gguf requests, prefill during the load ${JSON.stringify(early)}, answer ${JSON.stringify(ans)}`);
        } else if (requests !== 1 || ans.waiting !== 'load' || ans.prefilled === '1' || log.some((e) => e.layersPrefilled > 0)) {
          fail(`wait: ${requests} .gguf requests, answer ${JSON.stringify(ans)}`);
        }
        const errors = lines.filter((l) => l.startsWith('[pageerror]'));
        if (errors.length) fail(`${name}: uncaught errors in the page: ${errors.join(' | ')}`);
        console.log(`  message during the plain load at ${at.loadedBytes}/${at.totalBytes} bytes: ${name} (${requests} .gguf requests), answer ${ans.tokens} tokens`);
      } catch (e) {
        await page.screenshot({ path: path.join(ARTIFACTS, `failed-during_load-${name}.png`), fullPage: true }).catch(() => {});
        for (const l of lines.slice(-20)) console.log(`  console: ${l}`);
        throw e instanceof Failure ? new Failure(`during_load: ${e.message}`) : e;
      } finally {
        srv.throttle.modelBytesPerSecond = 0;
        await ctx.close().catch(() => {});
      }
    }
    console.log(`PASS demo/during_load ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  } finally {
    await browser.close().catch(() => {});
  }
}

async function testNoWebGPU(chromium, origin) {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: chromiumArgs({ webgpu: false }) });
  const { ctx, page } = await pageWithLog(browser);
  try {
    await page.goto(`${origin}/?model=tiny-llama.gguf`);
    await waitFor(page, 'the no-WebGPU message', () => document.body.dataset.engine && document.body.dataset.engine !== 'starting', null, 30000);
    const st = await page.evaluate(() => ({
      engine: document.body.dataset.engine,
      visible: !document.getElementById('nogpu').hidden && document.getElementById('app').hidden,
      text: document.getElementById('nogpu').innerText,
    }));
    if (st.engine !== 'nowebgpu' || !st.visible) fail(`without WebGPU: engine ${st.engine}, message shown ${st.visible}`);
    for (const want of ['navigator.gpu', 'WEBGPU_UNAVAILABLE', 'Chrome', 'Safari', 'Firefox']) {
      if (!st.text.includes(want)) fail(`the no-WebGPU message does not mention ${want}: ${JSON.stringify(st.text)}`);
    }
    await shot(page, page.locator('#nogpu'), 'no-webgpu', { minVariance: 20 });
    console.log(`PASS demo/nowebgpu: ${JSON.stringify(st.text.split('\n').filter(Boolean)[1])}`);
  } finally {
    await ctx.close().catch(() => {});
    await browser.close().catch(() => {});
  }
}

/** docs/demo.png: Gemma answers, the device is tuned (a few minutes on SwiftShader). */
async function readmeShot(chromium, origin, out) {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: chromiumArgs() });
  const ctx = await browser.newContext({ viewport: { width: 1240, height: 860 } });
  const page = await ctx.newPage();
  try {
    await page.goto(`${origin}/?maxTokens=${Number(process.env.DEMO_SHOT_TOKENS || 12)}`);
    await stepLoad(page);
    const ans = await sendMessage(page, process.env.DEMO_SHOT_PROMPT || 'Write a haiku about the sea.');
    await waitFor(page, 'the answer', () => [...document.querySelectorAll('#messages .msg.model')].pop().dataset.done === '1', null, 1800000);
    console.log(`answer: ${await ans.textContent()} (${await page.locator('#tok-rate').textContent()})`);
    // Tuning Gemma's kernels on SwiftShader overruns its budget by far: the shot is taken
    // when it is done or after DEMO_SHOT_TUNE_S seconds, whichever comes first.
    await page.locator('#tune-budget').fill(process.env.DEMO_SHOT_BUDGET_MS || '1000');
    await page.locator('#tune').click();
    await page.waitForFunction(() => ['done', 'error'].includes(document.getElementById('device').dataset.tune), null, {
      timeout: Number(process.env.DEMO_SHOT_TUNE_S || 900) * 1000,
      polling: 1000,
    }).catch(() => console.log('tuning still running: screenshot without its table'));
    console.log(`tune: ${await page.locator('#tune-status').textContent()}`);
    const main = await page.locator('main').boundingBox();
    const dev = await page.locator('#device').boundingBox();
    await page.screenshot({ path: out, clip: { x: Math.max(0, main.x - 12), y: 0, width: main.width + 24, height: dev.y + dev.height + 12 } });
    console.log(`wrote ${out} (${fs.statSync(out).size} bytes)`);
  } finally {
    await browser.close().catch(() => {});
  }
}

async function main() {
  if (!fs.existsSync(path.join(ROOT, 'web/pkg/index.js'))) die('web/pkg is not built: run `make web`');
  if (!fs.existsSync(CHROMIUM)) die(`${CHROMIUM} is missing (apt-get install chromium)`);
  const pw = path.join(TOOLS, 'node_modules/playwright-core/index.mjs');
  if (!fs.existsSync(pw)) die(`playwright-core is missing from ${TOOLS}: run \`make web\``);
  for (const f of ['tiny-llama.gguf', 'all-MiniLM-L6-v2/model.safetensors', 'all-MiniLM-L6-v2/tokenizer.json']) {
    if (!fs.existsSync(path.join(modelDir(), f))) die(`${path.join(modelDir(), f)} is missing: run \`make models\``);
  }
  const { chromium } = await import(pathToFileURL(pw).href);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  // WEBJIT_DEMO_ORIGIN=http://127.0.0.1:PORT tests a server already running (`webjit serve`).
  const srv = process.env.WEBJIT_DEMO_ORIGIN
    ? { origin: process.env.WEBJIT_DEMO_ORIGIN.replace(/\/$/, ''), server: { close() {} } }
    : await startDemoServer();
  const t0 = Date.now();
  try {
    const shotAt = process.argv.indexOf('--readme-shot');
    if (shotAt >= 0) {
      const out = path.resolve(process.argv[shotAt + 1] || 'docs/demo.png');
      await readmeShot(chromium, srv.origin, out);
      return;
    }
    // --only early_message|during_load runs just that test (chat messages during the load).
    const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : '';
    const throttled = { early_message: testEarlyMessage, during_load: testMessageDuringLoad };
    if (only && !throttled[only]) die(`--only: unknown test ${only} (${Object.keys(throttled).join(', ')})`);
    if (!only) {
      await testNoWebGPU(chromium, srv.origin);
      await testWebGPU(chromium, srv.origin);
    }
    for (const [name, test] of Object.entries(throttled)) {
      if (only && only !== name) continue;
      if (srv.throttle) await test(chromium, srv);
      else if (only) die(`${name} needs the test server (its model throttle): unset WEBJIT_DEMO_ORIGIN`);
      else console.log(`SKIP demo/${name}: WEBJIT_DEMO_ORIGIN is set and that server cannot throttle the model`);
    }
  } finally {
    srv.server.close();
  }
  console.log(`demo test: passed in ${((Date.now() - t0) / 1000).toFixed(1)} s; screenshots in ${ARTIFACTS}`);
}

main().then(
  () => process.exit(0),
  (e) => die(e instanceof Failure ? e.message : e.stack || e.message),
);
