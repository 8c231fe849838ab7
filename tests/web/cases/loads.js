// Browser cases of streaming loads: bad files, abort, load/dispose cycles, resume, the model
// caches (Cache API, OPFS).

import {
  Engine,
  GEMMA,
  MIB,
  MODEL_CACHES,
  TINY,
  checkGreedy,
  clearModelCache,
  collect,
  compare,
  expectCode,
  fail,
  json,
  uniq,
} from './common.js';

export const cases = {

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
};
