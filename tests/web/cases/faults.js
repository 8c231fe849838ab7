// Browser cases of faults: the GPU device lost while a model loads and while it generates (the
// engine runs in the page, {worker: false}, so the case can reach the GPUDevice it creates
// through a hook on GPUAdapter.prototype.requestDevice and destroy it, as a driver reset
// would); files that are not models.

import { Engine, MODELS, TINY, collect, expectCode, fail, uniq } from './common.js';

/** Runs `body(devices)` with every GPUDevice the page creates pushed onto `devices`. */
async function withDevices(body) {
  const devices = [];
  const orig = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = async function (...args) {
    const d = await orig.apply(this, args);
    devices.push(d);
    return d;
  };
  try {
    return await body(devices);
  } finally {
    GPUAdapter.prototype.requestDevice = orig;
  }
}

/** `p`, or a failure naming `what` after `ms`. */
async function within(p, ms, what) {
  let timer;
  const t = new Promise((_, rej) => {
    timer = setTimeout(() => rej(new Error(`${what}: nothing after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

/** The bytes of `url` as a stream of `chunk`-byte pieces that calls `at(sent)` before each. */
function chunked(bytes, chunk, at) {
  let off = 0;
  return new ReadableStream({
    async pull(ctl) {
      await at(off);
      if (off >= bytes.length) {
        ctl.close();
        return;
      }
      ctl.enqueue(bytes.slice(off, off + chunk));
      off += chunk;
    },
  });
}

/** Every check a page makes once its device is gone: the promise, the callback, info(). */
async function expectReported(e, heard, what) {
  const info = await within(e.lost, 5000, `${what}: engine.lost`);
  if (!info || !info.message || !['destroyed', 'unknown'].includes(info.reason)) {
    fail(`${what}: engine.lost resolved with ${JSON.stringify(info)}`);
  }
  await new Promise((r) => setTimeout(r, 0));
  if (!heard.length) fail(`${what}: onDeviceLost was not called`);
  if (heard.length > 1) fail(`${what}: onDeviceLost was called ${heard.length} times`);
  const i = await e.info();
  if (!i.device_lost) fail(`${what}: info().device_lost is ${JSON.stringify(i.device_lost)}`);
  return info;
}

export const cases = {
  /**
   * The device destroyed after 300 KB of a streamed load: the load rejects with DEVICE_LOST
   * (not a model that fails later); lost mid-generation, the call in flight rejects with
   * DEVICE_LOST and so does every later one; `engine.lost`, onDeviceLost and info() report it
   * once; dispose works; a new engine loads and generates. A disposed engine reports no loss.
   */
  async device_lost({ log }) {
    const bytes = new Uint8Array(await (await fetch(`${TINY}?u=${uniq()}`)).arrayBuffer());
    if (bytes.length < 600_000) fail(`tiny model is only ${bytes.length} bytes`);
    await withDevices(async (devices) => {
      // 1. Lost while the file streams in.
      let e = await Engine.create({ worker: false, tuningStore: 'none' });
      let dev = devices.at(-1);
      let heard = [];
      e.onDeviceLost((i) => heard.push(i));
      let destroyedAt = 0;
      const src = chunked(bytes, 64 << 10, async (sent) => {
        if (!destroyedAt && sent >= 300_000) {
          destroyedAt = sent;
          dev.destroy();
        }
      });
      let err = await expectCode(within(e.loadModel(src), 30000, 'load'), 'DEVICE_LOST', 'device destroyed during a load');
      if (!destroyedAt) fail('the stream never reached 300 KB');
      log(`  load: ${err.message.slice(0, 120)}`);
      await expectReported(e, heard, 'lost during a load');
      await expectCode(e.loadModel(bytes), 'DEVICE_LOST', 'a load after the loss');
      await e.dispose();

      // 2. Lost while generating.
      e = await Engine.create({ worker: false, tuningStore: 'none' });
      dev = devices.at(-1);
      heard = [];
      e.onDeviceLost((i) => heard.push(i));
      const m = await e.loadModel(bytes);
      let n = 0;
      err = await expectCode(
        within(
          (async () => {
            for await (const t of m.generateTokens('Hello there', { maxTokens: 40 })) {
              n += 1;
              if (n === 3) dev.destroy();
              if (n > 12) fail(`${n} tokens came after the device was destroyed`);
              void t;
            }
          })(),
          30000,
          'generation',
        ),
        'DEVICE_LOST',
        'device destroyed during generation',
      );
      log(`  generation after ${n} tokens: ${err.message.slice(0, 120)}`);
      const info = await expectReported(e, heard, 'lost during generation');
      log(`  engine.lost: ${JSON.stringify(info).slice(0, 120)}`);
      await expectCode(collect(m.generateTokens('Again', { maxTokens: 2 })), 'DEVICE_LOST', 'a generation after the loss');
      await expectCode(m.logits('still here?'), 'DEVICE_LOST', 'logits after the loss');
      await m.dispose();
      await e.dispose();

      // 3. A new engine works; disposing it is not a loss.
      e = await Engine.create({ worker: false, tuningStore: 'none' });
      heard = [];
      e.onDeviceLost((i) => heard.push(i));
      const m2 = await e.loadModel(bytes);
      const toks = await collect(m2.generateTokens('Hello', { maxTokens: 3 }));
      if (toks.length !== 3) fail(`a new engine gave ${toks.length} tokens`);
      await e.dispose();
      await new Promise((r) => setTimeout(r, 200));
      if (heard.length) fail(`dispose() was reported as a device loss: ${JSON.stringify(heard)}`);
    });
    return {};
  },

  /**
   * Files that are not models say what they are, as BAD_MODEL_FILE: an HTML page (a 404 page
   * or a dev server's SPA fallback, by URL and as bytes), JSON text, and a safetensors file
   * given to loadModel (refused at its first bytes, not after streaming all of it).
   */
  async not_a_model({ log }) {
    const e = await Engine.create({ tuningStore: 'none' });
    try {
      const enc = (t) => new TextEncoder().encode(t);
      const cases = [
        [enc('<!doctype html>\n<html><body>Not found</body></html>'), /HTML/, 'an HTML page as bytes'],
        ['/t/pages/harness.html', /HTML/, 'an HTML page by URL'],
        [enc('  {"error": "no such model", "status": 404}'), /not a GGUF or safetensors file.*text/, 'JSON text'],
        [crypto.getRandomValues(new Uint8Array(64)), /not a GGUF or safetensors file/, 'random bytes'],
      ];
      for (const [src, re, what] of cases) {
        const err = await expectCode(e.loadModel(src), 'BAD_MODEL_FILE', what);
        if (!re.test(err.message)) fail(`${what}: the message does not say what the file is: ${err.message}`);
        log(`  ${what}: ${err.message.slice(0, 140)}`);
      }
      // The first 64 KiB of a safetensors file, then a stream that never ends: only a load
      // that looks at the first bytes can answer.
      const head = await fetch(`${MODELS}/all-MiniLM-L6-v2/model.safetensors`, { headers: { Range: 'bytes=0-65535' } });
      const bytes = new Uint8Array(await head.arrayBuffer());
      let sent = false;
      const endless = new ReadableStream({
        pull(ctl) {
          if (!sent) {
            sent = true;
            ctl.enqueue(bytes);
            return undefined;
          }
          return new Promise(() => {});
        },
      });
      const err = await expectCode(within(e.loadModel(endless), 20000, 'safetensors to loadModel'), 'UNSUPPORTED_MODEL', 'a safetensors file to loadModel');
      if (!/loadEmbedder/.test(err.message)) fail(`the message does not point at loadEmbedder: ${err.message}`);
      log(`  safetensors: ${err.message.slice(0, 140)}`);
      // The engine is still usable.
      const m = await e.loadModel(TINY);
      const toks = await collect(m.generateTokens('Hello', { maxTokens: 2 }));
      if (toks.length !== 2) fail(`the engine is not usable after bad files: ${toks.length} tokens`);
      return {};
    } finally {
      await e.dispose();
    }
  },
};
