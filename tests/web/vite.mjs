// The install test of the package, as a web developer meets it with Vite: `npm pack` web/pkg,
// install it into fresh copies of tests/web/vite-app (offline: the package has no
// dependencies), and run the app in Chromium
//   tarball  `vite build` + `vite preview`, and `vite dev`, with no Vite configuration;
//   folder   a `file:` install of web/pkg (a symlink, as `npm link` makes): `vite dev` without
//            configuration must fail with WORKER 403 naming server.fs.allow, and pass with
//            vite-app/vite.config.folder.js (README "With Vite"); `vite build` + `preview` too.
// Each run creates an engine in the worker, loads tiny-llama.gguf, generates STEPS tokens that
// must match llama.cpp's (tests/data/tiny_llama/refs.json), then does one token with
// {worker: false}. The build must keep the engine out of the main chunk: the wasm glue is in
// the worker chunk and in a lazily imported chunk, never in what index.html loads up front.
//
// Vite is the version pinned in web/tools/package-lock.json (installed by scripts/build-web.sh),
// linked into each app's node_modules as a project's own devDependency would be.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { modelDir } from './server.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const STEPS = 4;
// A string of the wasm-bindgen glue (wasm/webjit_web.js) that minifiers keep.
const GLUE_MARKER = 'using deprecated parameters for the initialization function';

function npm(args, cwd) {
  return execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A fresh copy of vite-app depending on `dep`, with the pinned Vite linked in. */
function makeApp(work, name, dep, tools) {
  const app = path.join(work, name);
  fs.cpSync(path.join(HERE, 'vite-app'), app, { recursive: true });
  const folderConfig = path.join(app, 'vite.config.folder.js');
  fs.rmSync(folderConfig);
  fs.writeFileSync(
    path.join(app, 'package.json'),
    JSON.stringify({ name: `webjit-vite-${name}`, private: true, type: 'module', dependencies: { webjit: dep } }, null, 2),
  );
  npm(['install', '--offline', '--no-audit', '--no-fund', '--loglevel=error'], app);
  fs.symlinkSync(path.join(tools, 'node_modules', 'vite'), path.join(app, 'node_modules', 'vite'), 'dir');
  fs.mkdirSync(path.join(app, 'public'));
  fs.copyFileSync(path.join(modelDir(), 'tiny-llama.gguf'), path.join(app, 'public', 'tiny-llama.gguf'));
  return app;
}

function vite(app, args) {
  return execFileSync(process.execPath, [path.join(app, 'node_modules/vite/bin/vite.js'), ...args], {
    cwd: app,
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** `vite dev` or `vite preview` on a free port; resolves when it listens. */
async function serve(app, mode) {
  const port = await freePort();
  const args = [path.join(app, 'node_modules/vite/bin/vite.js'), ...(mode === 'preview' ? ['preview'] : []), '--host', '127.0.0.1', '--port', String(port), '--strictPort'];
  const child = spawn(process.execPath, args, { cwd: app, env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const url = `http://127.0.0.1:${port}/`;
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`vite ${mode} did not start in 30 s:\n${out}`)), 30000);
    const onData = (d) => {
      out += d;
      if (out.includes(url)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`vite ${mode} exited (${code}):\n${out}`)));
  });
  child.stdout.on('data', (d) => (out += d));
  return { url, stop: () => child.kill(), output: () => out };
}

/** The greedy rule of cases/common.js checkGreedy: top-5 logits within 1.0, ids while gap >= 0.3. */
function greedyMismatch(ours, greedy) {
  for (let i = 0; i < ours.length && i < greedy.length; i++) {
    const want = greedy[i];
    for (const [k, [, wl]] of want.top5.entries()) {
      const got = ours[i].top[k];
      const batched = want.top5_batched?.[k];
      if (!got || (Math.abs(got[1] - wl) > 1.0 && !(batched && Math.abs(got[1] - batched[1]) <= 1.0))) {
        return `step ${i}: rank-${k} logit ${got?.[1]} vs llama.cpp ${wl}`;
      }
    }
    if (want.gap < 0.3) break;
    if (ours[i].id !== want.id) return `step ${i}: token ${ours[i].id}, llama.cpp ${want.id}`;
  }
  return '';
}

/** Files the entry chunk of index.html loads up front (its static imports, transitively). */
function upFront(dist) {
  const html = fs.readFileSync(path.join(dist, 'index.html'), 'utf8');
  const todo = [...html.matchAll(/<(?:script[^>]*\ssrc|link[^>]*rel="modulepreload"[^>]*\shref)="\/([^"]+\.js)"/g)].map((m) => m[1]);
  const seen = new Set();
  while (todo.length) {
    const f = todo.pop();
    if (seen.has(f)) continue;
    seen.add(f);
    const code = fs.readFileSync(path.join(dist, f), 'utf8');
    // `from"./x.js"` and `import"./x.js"`, not `import("./x.js")` (loaded on demand).
    for (const m of code.matchAll(/(?:\bfrom|\bimport)\s*["']\.\/([^"']+\.js)["']/g)) todo.push(path.posix.join(path.posix.dirname(f), m[1]));
  }
  return [...seen];
}

function checkChunks(dist) {
  const assets = fs.readdirSync(path.join(dist, 'assets'));
  const has = (f) => fs.readFileSync(path.join(dist, f), 'utf8').includes(GLUE_MARKER);
  const main = upFront(dist);
  const workers = assets.filter((f) => /^worker-.*\.js$/.test(f)).map((f) => `assets/${f}`);
  const wasm = assets.filter((f) => f.endsWith('.wasm'));
  const problems = [];
  if (!main.length) problems.push('index.html loads no script');
  for (const f of main) if (has(f)) problems.push(`${f} (loaded up front) carries the engine glue`);
  if (workers.length !== 1 || !has(workers[0])) problems.push(`expected one worker chunk with the engine glue: ${workers.join(', ') || 'none'}`);
  if (wasm.length !== 1) problems.push(`expected one .wasm asset: ${wasm.join(', ') || 'none'}`);
  const size = (f) => `${f} ${(fs.statSync(path.join(dist, f)).size / 1024).toFixed(0)} KB`;
  return { problems, summary: `up front: ${main.map(size).join(', ')}; worker: ${workers.map(size).join(', ')}` };
}

async function runPage(browser, url, fn, arg) {
  const ctx = await browser.newContext();
  try {
    const page = await ctx.newPage();
    const logs = [];
    page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
    await page.goto(`${url}index.html`);
    await page.waitForFunction(() => window.appReady === true, null, { timeout: 60000 });
    const r = await page.evaluate(([f, a]) => window[f](a), [fn, arg]);
    return { ...r, logs };
  } finally {
    await ctx.close().catch(() => {});
  }
}

/** Runs every variant; -> {ok, error, lines} as run.mjs reports cases. */
export async function runViteCase({ tools, browser }) {
  const lines = [];
  const t0 = Date.now();
  const secs = () => `${((Date.now() - t0) / 1000).toFixed(1)} s`;
  const refs = JSON.parse(fs.readFileSync(path.join(ROOT, 'tests/data/tiny_llama/refs.json'), 'utf8'));
  const pr = refs.prompts.find((p) => p.name === 'mixed');
  const params = { model: '/tiny-llama.gguf', promptIds: pr.prompt_ids, steps: STEPS };
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'webjit-vite-'));
  const servers = [];
  const errors = [];
  // One app run: the engine in the worker and in the page must both match llama.cpp.
  const expectRuns = async (what, url) => {
    const r = await runPage(browser, url, 'runApp', params);
    if (!r.ok) return errors.push(`${what}: [${r.code}] ${r.message}\n    ${r.logs.slice(-8).join('\n    ')}`);
    const bad =
      (r.worker !== true && `engine.worker ${r.worker}`) ||
      (r.localWorker !== false && `{worker: false} engine.worker ${r.localWorker}`) ||
      (r.fromWorker.length !== STEPS && `${r.fromWorker.length} tokens`) ||
      greedyMismatch(r.fromWorker, pr.greedy) ||
      greedyMismatch(r.fromPage, pr.greedy);
    if (bad) return errors.push(`${what}: ${bad}`);
    lines.push(`  ${what}: worker ${STEPS} + page 1 greedy tokens match llama.cpp (${secs()})`);
  };
  try {
    const packed = JSON.parse(npm(['pack', path.join(ROOT, 'web/pkg'), '--pack-destination', work, '--json'], work))[0];
    const tarball = makeApp(work, 'tarball', `file:../${packed.filename}`, tools);
    const folder = makeApp(work, 'folder', `file:${path.join(ROOT, 'web/pkg')}`, tools);
    if (!fs.lstatSync(path.join(folder, 'node_modules/webjit')).isSymbolicLink()) errors.push('the folder install is not a link');
    lines.push(`  ${packed.filename} (${(packed.size / 1e6).toFixed(1)} MB) and web/pkg installed (${secs()})`);

    for (const [name, app] of [['tarball', tarball], ['folder', folder]]) {
      vite(app, ['build']);
      const { problems, summary } = checkChunks(path.join(app, 'dist'));
      errors.push(...problems.map((p) => `${name} build: ${p}`));
      lines.push(`  ${name} vite build: ${summary} (${secs()})`);
      const preview = await serve(app, 'preview');
      servers.push(preview);
      await expectRuns(`${name} vite build + preview`, preview.url);
      preview.stop();
    }

    const dev = await serve(tarball, 'dev');
    servers.push(dev);
    await expectRuns('tarball vite dev', dev.url);
    dev.stop();

    // Installed from a folder: Vite's dev server refuses the worker and the wasm outside the
    // project (403), which the errors say...
    const refused = await serve(folder, 'dev');
    servers.push(refused);
    for (const [opts, code] of [[{}, 'WORKER'], [{ worker: false }, 'NETWORK']]) {
      const r = await runPage(browser, refused.url, 'createEngine', opts);
      if (r.ok || r.code !== code || r.status !== 403 || !r.message.includes('server.fs.allow')) {
        errors.push(`folder vite dev, no config, ${JSON.stringify(opts)}: expected ${code} 403 naming server.fs.allow, got ${JSON.stringify(r)}`);
      } else {
        lines.push(`  folder vite dev, no config, ${JSON.stringify(opts)}: [${r.code} ${r.status}] ${r.message} (${secs()})`);
      }
    }
    refused.stop();
    // ...and serves it with the README's vite.config.js.
    fs.copyFileSync(path.join(HERE, 'vite-app/vite.config.folder.js'), path.join(folder, 'vite.config.js'));
    const allowed = await serve(folder, 'dev');
    servers.push(allowed);
    await expectRuns('folder vite dev + README config', allowed.url);
    allowed.stop();
  } catch (e) {
    errors.push(`${e.message}\n${e.stderr || ''}`);
  } finally {
    for (const s of servers) s.stop();
    fs.rmSync(work, { recursive: true, force: true });
  }
  lines.push(`  vite: ${secs()} in all`);
  return { ok: errors.length === 0, error: errors.join('\n  '), lines };
}
