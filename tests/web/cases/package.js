// Browser cases of the package as web developers meet it: options checked in the package's own
// words, load progress with a ready-made fraction, the model caches listed and queried, and
// embedder inputs longer than the model reported.

import { hasModelInCache, listCachedModels } from '/pkg/index.js';
import { Engine, MODELS, TINY, clearModelCache, collect, expectCode, fail, uniq } from './common.js';

const TINY_BYTES = 999168;

export const cases = {
  /**
   * Bad generation and load options are INVALID_ARGUMENT naming the option, the value and what
   * is allowed, never a JSON parser's words (`expected usize`, `invalid type: null`), and NaN
   * is called NaN; the model works afterwards.
   */
  async option_errors({ log }) {
    const e = await Engine.create({ tuningStore: 'none' });
    try {
      const m = await e.loadModel(TINY);
      const bad = [
        [{ maxTokens: -1 }, 'maxTokens', '-1'],
        [{ maxTokens: 2.5 }, 'maxTokens', '2.5'],
        [{ temperature: NaN }, 'temperature', 'NaN'],
        [{ temperature: -0.5 }, 'temperature', '-0.5'],
        [{ topK: 100 }, 'topK', '100'],
        [{ topP: 0 }, 'topP', '0'],
        [{ topP: 1.5 }, 'topP', '1.5'],
        [{ repeatPenalty: 0 }, 'repeatPenalty', '0'],
        [{ seed: -1 }, 'seed', '-1'],
        [{ maxTokens: '4' }, 'maxTokens', '"4"'],
      ];
      for (const [opts, name, shown] of bad) {
        const err = await expectCode(collect(m.generateTokens('Hello', opts)), 'INVALID_ARGUMENT', JSON.stringify(opts));
        if (!err.message.includes(name) || !err.message.includes(shown) || !/expected/.test(err.message)) {
          fail(`${name}=${shown}: the message does not name the option, its value and what is allowed: ${err.message}`);
        }
        if (/usize|invalid type|line \d+ column/.test(err.message)) fail(`${name}: serde's words leaked: ${err.message}`);
      }
      log(`  e.g. ${(await expectCode(collect(m.generateTokens('Hi', { temperature: NaN })), 'INVALID_ARGUMENT', 'NaN')).message}`);
      for (const [opts, name] of [
        [{ maxContext: -1 }, 'maxContext'],
        [{ maxContext: 0 }, 'maxContext'],
        [{ totalBytes: -5 }, 'totalBytes'],
      ]) {
        const err = await expectCode(e.loadModel(TINY, opts), 'INVALID_ARGUMENT', JSON.stringify(opts));
        if (!err.message.includes(name) || /usize|invalid type/.test(err.message)) fail(`${name}: ${err.message}`);
      }
      const toks = await collect(m.generateTokens('Hello', { maxTokens: 3, temperature: 0.7, topK: 64, topP: 1, seed: 7 }));
      if (toks.length !== 3) fail(`valid options gave ${toks.length} tokens`);
      return {};
    } finally {
      await e.dispose();
    }
  },

  /**
   * Progress events carry `fraction` (0..1, 1 at 'done') when the size is known: from
   * Content-Length, or from the `totalBytes` option for a stream that has none; null while it
   * is unknown.
   */
  async progress_fraction({ log }) {
    const e = await Engine.create({ tuningStore: 'none' });
    try {
      const events = async (src, opts = {}) => {
        const ev = [];
        const m = await e.loadModel(src, { ...opts, onProgress: (p) => ev.push(p) });
        await m.dispose();
        if (!ev.length) fail('no progress events');
        return ev;
      };
      const byUrl = await events(`${TINY}?u=${uniq()}`);
      const last = byUrl.at(-1);
      if (last.phase !== 'done' || last.fraction !== 1 || last.totalBytes !== TINY_BYTES) fail(`URL: last event ${JSON.stringify(last)}`);
      for (const p of byUrl) {
        if (!(p.fraction >= 0 && p.fraction <= 1) || Math.abs(p.fraction - p.loadedBytes / p.totalBytes) > 1e-9) fail(`URL: ${JSON.stringify(p)}`);
      }
      const bytes = new Uint8Array(await (await fetch(TINY)).arrayBuffer());
      const stream = () => new Blob([bytes]).stream();
      const unknown = await events(stream());
      if (unknown.some((p) => p.fraction !== null || p.totalBytes !== 0)) fail(`stream without a size: ${JSON.stringify(unknown.at(-1))}`);
      const told = await events(stream(), { totalBytes: bytes.length });
      if (told.at(-1).fraction !== 1 || told.some((p) => p.fraction === null)) fail(`stream with totalBytes: ${JSON.stringify(told.at(-1))}`);
      log(`  URL: ${byUrl.length} events, stream: ${unknown.length}, stream + totalBytes: ${told.length}`);
      return {};
    } finally {
      await e.dispose();
    }
  },

  /**
   * listCachedModels() lists what cache-api and opfs loads stored, with sizes;
   * hasModelInCache(url) says where a URL is stored; both follow clearModelCache.
   */
  async cache_listing({ log }) {
    await clearModelCache();
    const e = await Engine.create({ tuningStore: 'none' });
    try {
      if ((await listCachedModels()).length) fail(`not empty after clearModelCache: ${JSON.stringify(await listCachedModels())}`);
      const a = `${TINY}?u=${uniq()}`;
      const b = `${TINY}?u=${uniq()}`;
      await (await e.loadModel(a, { cache: 'cache-api' })).dispose();
      await (await e.loadModel(b, { cache: 'opfs' })).dispose();
      const list = await listCachedModels();
      const abs = (u) => new URL(u, location.href).href;
      const find = (u, c) => list.find((x) => x.url === abs(u) && x.cache === c);
      if (list.length !== 2 || find(a, 'cache-api')?.size !== TINY_BYTES || find(b, 'opfs')?.size !== TINY_BYTES) {
        fail(`listCachedModels: ${JSON.stringify(list)}`);
      }
      if (!(find(b, 'opfs').storedAt > 0)) fail(`OPFS entry without storedAt: ${JSON.stringify(list)}`);
      const ha = await hasModelInCache(a);
      const hb = await hasModelInCache(b);
      const hn = await hasModelInCache(`${TINY}?u=${uniq()}`);
      if (!ha.cacheApi || ha.opfs || ha.size !== TINY_BYTES) fail(`hasModelInCache(a): ${JSON.stringify(ha)}`);
      if (hb.cacheApi || !hb.opfs || hb.size !== TINY_BYTES) fail(`hasModelInCache(b): ${JSON.stringify(hb)}`);
      if (hn.cacheApi || hn.opfs || hn.size !== 0) fail(`hasModelInCache(never loaded): ${JSON.stringify(hn)}`);
      await clearModelCache({ url: a });
      if ((await hasModelInCache(a)).cacheApi || (await listCachedModels()).length !== 1) fail('clearModelCache({url}) left the entry listed');
      await expectCode(hasModelInCache(''), 'INVALID_ARGUMENT', 'hasModelInCache without a URL');
      log(`  ${JSON.stringify(list)}`);
      return {};
    } finally {
      await clearModelCache();
      await e.dispose();
    }
  },

  /**
   * A text longer than the embedder's max length is embedded from its first tokens and
   * flagged in `truncated`; `{truncate: false}` refuses it with INVALID_ARGUMENT naming it;
   * its embedding equals that of its first words (what the model saw).
   */
  async embed_truncation({ log }) {
    const e = await Engine.create({ tuningStore: 'none' });
    try {
      const emb = await e.loadEmbedder(`${MODELS}/all-MiniLM-L6-v2/`);
      const words = Array.from({ length: 10000 }, (_, i) => ['sea', 'night', 'stars', 'boat'][i % 4]);
      const long = words.join(' ');
      const v = await emb.embed([long, 'A man is eating food.']);
      if (JSON.stringify(v.truncated) !== '[true,false]') fail(`truncated: ${JSON.stringify(v.truncated)}`);
      const err = await expectCode(emb.embed(['short', long], { truncate: false }), 'INVALID_ARGUMENT', 'truncate: false');
      if (!/text 1 of 2/.test(err.message) || !err.message.includes(String(emb.maxSeqLen))) fail(`message: ${err.message}`);
      // The first maxSeqLen - 2 words (one token each here, plus [CLS]/[SEP]) give the same vector.
      const head = words.slice(0, emb.maxSeqLen - 2).join(' ');
      const [w] = await emb.embed(head);
      let dot = 0;
      for (let i = 0; i < w.length; i++) dot += w[i] * v[0][i];
      if (!(dot > 0.9999)) fail(`the truncated embedding is not that of the first tokens: cosine ${dot}`);
      log(`  ${err.message}`);
      return {};
    } finally {
      await e.dispose();
    }
  },

  /**
   * The browser's decode runs one step ahead (the next step recorded from the GPU-sampled
   * token while this one is read back): a greedy run reports every token but the first and
   * last as queued behind the next step, and gives the same tokens as stepping one token per
   * call (maxTokens: 1, continued), which never runs ahead.
   */
  async decode_pipelined({ log }) {
    const e = await Engine.create({ tuningStore: 'none' });
    try {
      const m = await e.loadModel(TINY);
      const prompt = await m.tokenize('The sea at night is');
      const n = 12;
      const ahead = (await collect(m.generateTokens(prompt, { maxTokens: n }))).map((t) => t.id);
      const stats = m.lastStats;
      if (ahead.length !== n || stats.reason !== 'max_tokens') fail(`pipelined run: ${ahead.length} tokens, ${stats.reason}`);
      if (stats.queuedBehind !== n - 2) fail(`queuedBehind ${stats.queuedBehind}, want ${n - 2}: decode did not run ahead`);
      const stepped = [];
      let queued = 0;
      for (let i = 0; i < n; i++) {
        const input = i === 0 ? prompt : [];
        const [t] = await collect(m.generateTokens(input, { maxTokens: 1, continue: i > 0, addBos: false }));
        if (!t) fail(`step ${i} gave no token`);
        stepped.push(t.id);
        queued += m.lastStats.queuedBehind;
      }
      if (queued !== 0) fail(`stepping queued ${queued} tokens behind a next step`);
      if (JSON.stringify(stepped) !== JSON.stringify(ahead)) fail(`pipelined ${ahead} vs stepped ${stepped}`);
      log(`  ${n} tokens, ${stats.queuedBehind} queued behind the next step; stepping gives the same ids`);
      return {};
    } finally {
      await e.dispose();
    }
  },
};
