// A fresh Vite app that depends on `webjit` (the packed tarball, or the package folder) and has
// no Vite configuration for it. tests/web/vite.mjs serves it with `vite preview` (after `vite
// build`) and `vite dev`, and calls window.runApp in Chromium.
import { Engine } from 'webjit';

async function tokens(engine, model, promptIds, steps) {
  const m = await engine.loadModel(model);
  const out = [];
  for await (const t of m.generateTokens(promptIds, { maxTokens: steps })) out.push({ id: t.id, top: t.top });
  await m.dispose();
  return out;
}

/** {model, promptIds, steps} -> the tokens of the worker engine, and of {worker: false}. */
window.runApp = async ({ model, promptIds, steps }) => {
  try {
    const engine = await Engine.create();
    const worker = engine.worker;
    const fromWorker = await tokens(engine, model, promptIds, steps);
    await engine.dispose();
    // In the page's thread: the engine code is imported only now (a chunk of its own).
    const local = await Engine.create({ worker: false });
    const fromPage = await tokens(local, model, promptIds, 1);
    await local.dispose();
    return { ok: true, worker, localWorker: local.worker, fromWorker, fromPage };
  } catch (e) {
    return { ok: false, code: e.code, status: e.status, message: e.message };
  }
};
/** Engine.create(opts) alone: {ok} or the error's {code, status, message}. */
window.createEngine = async (opts) => {
  try {
    await (await Engine.create(opts)).dispose();
    return { ok: true };
  } catch (e) {
    return { ok: false, code: e.code, status: e.status, message: e.message };
  }
};
window.appReady = true;
