// Browser case `types`: the objects a user of the package receives at run time, gathered for
// the types check. It drives the public API on the tiny models (loads of every kind, progress
// events, generation, chat, tokenizers, the embedder, tuning, the OpenAI-style API, the model
// caches, errors, the attention ops) and returns each result with the TypeScript type that
// web/js/index.d.ts declares for it. run.mjs hands them to types.mjs, which writes every one as
// an object literal assigned to its type and compiles that with `tsc --strict`: a key the type
// lacks, a required key the runtime lacks, or a value of another type fails the case. Class
// instances (Engine, TextModel, Embedder) and the module's exports are compared by member name,
// both ways.
//
// What TypeScript cannot see is checked here (a non-empty adapter name, the error codes).

import * as pkg from '/pkg/index.js';
import { Engine, MODELS, TINY, clearModelCache, collect, expectCode, fail, uniq } from './common.js';

const QWEN = `${MODELS}/tiny-qwen2.gguf`;
const MINILM = `${MODELS}/all-MiniLM-L6-v2/`;
const MESSAGES = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Name a color.' },
];
// Items kept of a long array: its element type is what matters, and the literal stays short.
const KEEP = 4;

/**
 * `v` as plain JSON that types.mjs can write back as a TypeScript expression: numbers keep NaN
 * and Infinity, typed arrays their class, arrays their own non-index keys, errors their own
 * fields, class instances their class name (they cannot be written as literals).
 */
export function enc(v, depth = 0) {
  if (depth > 12) fail('types: a result nested deeper than 12 levels');
  if (v === undefined) return { t: 'undefined' };
  if (v === null) return { t: 'null' };
  switch (typeof v) {
    case 'string':
      return { t: 'string', v };
    case 'boolean':
      return { t: 'boolean', v };
    case 'number':
      return { t: 'number', v: Number.isFinite(v) ? v : String(v) };
    case 'bigint':
      return { t: 'bigint', v: String(v) };
    case 'function':
      return { t: 'function' };
    case 'symbol':
      return { t: 'symbol' };
  }
  if (ArrayBuffer.isView(v)) return { t: 'typed', cls: v.constructor.name, length: v.length ?? v.byteLength };
  if (v instanceof ArrayBuffer) return { t: 'instance', cls: 'ArrayBuffer' };
  if (Array.isArray(v)) {
    const extra = {};
    for (const k of Object.keys(v)) if (!/^\d+$/.test(k)) extra[k] = enc(v[k], depth + 1);
    return { t: 'array', items: v.slice(0, KEEP).map((x) => enc(x, depth + 1)), length: v.length, extra };
  }
  if (v instanceof Error) {
    // An Error's message and name are not enumerable, `stack` is the engine's; the rest is
    // what the package put on it.
    const props = { name: enc(v.name), message: enc(v.message) };
    for (const k of Object.keys(v)) if (k !== 'stack') props[k] = enc(v[k], depth + 1);
    return { t: 'object', props, error: true };
  }
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return { t: 'instance', cls: v.constructor?.name || 'unknown' };
  const props = {};
  for (const k of Object.keys(v)) props[k] = enc(v[k], depth + 1);
  return { t: 'object', props };
}

/**
 * The public member names of an object: own and inherited properties, methods and accessors,
 * without `_private` ones. `statics`: of a class (its static members, not Function's);
 * `ownOnly`: only the object's own (for a generator whose prototype is the platform's).
 */
function members(obj, { statics = false, ownOnly = false } = {}) {
  const names = new Set();
  const stop = [Object.prototype, Function.prototype];
  for (let o = obj; o && !stop.includes(o); o = ownOnly ? null : Object.getPrototypeOf(o)) {
    for (const k of Object.getOwnPropertyNames(o)) {
      if (k.startsWith('_') || k === 'constructor') continue;
      if (statics && ['length', 'name'].includes(k)) continue;
      names.add(k);
    }
  }
  return [...names].sort();
}

class Samples {
  list = [];
  /** A value of declared type `type` (a TypeScript type expression over `W`, the package). */
  add(what, type, value) {
    this.list.push({ what, type, value: enc(value) });
    return value;
  }
  /** Member names that `keyof type` must hold; `exact`: and no others (both ways). */
  members(what, type, obj, { exact = true, ...opts } = {}) {
    this.list.push({ what, type, members: members(obj, opts), exact });
  }
}

/** The first, one middle and the last of `xs`. */
const ends = (xs) => (xs.length <= 3 ? xs : [xs[0], xs[xs.length >> 1], xs[xs.length - 1]]);

export const cases = {
  async types({ log }) {
    const S = new Samples();
    await clearModelCache();
    const e = await Engine.create();
    const t0 = performance.now();
    const lap = (s) => log(`  ${s}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    try {
      // The module and its constants.
      S.members('the exports of webjit', 'typeof W', pkg, { ownOnly: true });
      S.members('Engine (static)', 'typeof W.Engine', Engine, { statics: true });
      S.add('ErrorCode', 'typeof W.ErrorCode', pkg.ErrorCode);
      S.add('MODEL_CACHES', 'typeof W.MODEL_CACHES', pkg.MODEL_CACHES);
      S.members('an Engine', 'W.Engine', e);
      const info0 = S.add('engine.info() of a new engine', 'W.EngineInfo', await e.info());
      if (!info0.adapter) fail(`info().adapter is ${JSON.stringify(info0.adapter)}: the adapter has no name`);
      log(`  adapter: ${info0.adapter}`);
      S.add('engine.importedTuning', "W.Engine['importedTuning']", e.importedTuning);
      S.add('engine.worker', "W.Engine['worker']", e.worker);

      // A text model loaded from a URL with a prompt prefilled while it streams in.
      const events = [];
      const m = await e.loadModel(TINY, { prompt: 'The sea', onProgress: (p) => events.push(p) });
      if (!events.length) fail('no progress event');
      for (const p of ends(events)) S.add(`a progress event (${p.phase}) of a loadModel with a prompt`, 'W.LoadProgress', p);
      S.add('TextModel.info (tiny-llama)', "W.TextModel['info']", m.info);
      S.add('TextModel.load of a URL', 'W.LoadInfo', m.load);
      S.members('a TextModel', 'W.TextModel', m);
      const done = [];
      const toks = await collect(m.generateTokens(null, { maxTokens: 3, onDone: (s) => done.push(s) }));
      for (const t of toks) S.add('an item of generateTokens', 'W.GeneratedToken', t);
      S.add('TextModel.lastStats after generateTokens', 'W.GenerateStats', m.lastStats);
      S.add('the onDone argument', 'W.GenerateStats', done[0]);
      const pieces = await collect(m.generate('Once upon', { maxTokens: 3, temperature: 0.8, topK: 20, topP: 0.9, repeatPenalty: 1.1, seed: 3 }));
      for (const p of pieces) S.add('a piece of generate', 'string', p);
      const ac = new AbortController();
      for await (const t of m.generateTokens('Hello', { maxTokens: 20, signal: ac.signal })) {
        void t;
        ac.abort();
      }
      if (m.lastStats?.reason !== 'stopped') fail(`aborted generation: reason ${m.lastStats?.reason}`);
      S.add('TextModel.lastStats of a stopped generation', 'W.GenerateStats', m.lastStats);
      for await (const t of m.generateTokens('Hello', { maxTokens: 20 })) {
        void t;
        break;
      }
      S.add('TextModel.lastStats after leaving the loop', 'W.GenerateStats', m.lastStats);
      const ids = S.add('TextModel.tokenize', "Awaited<ReturnType<W.TextModel['tokenize']>>", await m.tokenize('Hello world'));
      S.add('TextModel.detokenize', "Awaited<ReturnType<W.TextModel['detokenize']>>", await m.detokenize(ids));
      S.add('TextModel.logits', "Awaited<ReturnType<W.TextModel['logits']>>", await m.logits('Hello'));
      S.add('TextModel.reset', "Awaited<ReturnType<W.TextModel['reset']>>", await m.reset());
      lap('text model');

      // Tuning on the model loaded last; the records persist in IndexedDB.
      const reports = [];
      const report = await e.tune({ budgetMs: 400, onReport: (r) => reports.push(r) });
      S.add('engine.tune()', 'W.TuneReport', report);
      for (const r of reports.slice(0, 2)) S.add('an onReport argument of tune', 'W.KernelTuneReport', r);
      S.add('engine.exportTuning()', "Awaited<ReturnType<W.Engine['exportTuning']>>", await e.exportTuning());
      S.add('engine.releaseMemory()', "Awaited<ReturnType<W.Engine['releaseMemory']>>", await e.releaseMemory());
      await m.dispose();
      lap('tune');

      // Loads through the caches, and the cache calls.
      const u1 = `${TINY}?types=${uniq()}`;
      const u2 = `${TINY}?types=${uniq()}`;
      const stored = await e.loadModel(u1, { cache: 'opfs' });
      S.add("TextModel.load storing an OPFS copy", 'W.LoadInfo', stored.load);
      await stored.dispose();
      const hit = await e.loadModel(u1, { cache: 'opfs' });
      if (!hit.load.fromCache) fail(`second OPFS load: ${JSON.stringify(hit.load)}`);
      S.add('TextModel.load from the OPFS copy', 'W.LoadInfo', hit.load);
      await hit.dispose();
      const capi = await e.loadModel(u2, { cache: 'cache-api' });
      S.add('TextModel.load storing in the Cache API', 'W.LoadInfo', capi.load);
      await capi.dispose();
      S.add('listCachedModels()', 'W.CachedModel[]', await pkg.listCachedModels());
      S.add('hasModelInCache() of a stored URL', 'Awaited<ReturnType<typeof W.hasModelInCache>>', await pkg.hasModelInCache(u1));
      S.add('hasModelInCache() of another URL', 'Awaited<ReturnType<typeof W.hasModelInCache>>', await pkg.hasModelInCache(`${TINY}?none`));
      S.add('clearModelCache({url})', 'Awaited<ReturnType<typeof W.clearModelCache>>', await clearModelCache({ url: u1 }));
      S.add('clearModelCache()', 'Awaited<ReturnType<typeof W.clearModelCache>>', await clearModelCache());
      const blob = await (await fetch(TINY)).blob();
      const fromBlob = await e.loadModel(blob, { maxContext: 64 });
      S.add('TextModel.load of a Blob', 'W.LoadInfo', fromBlob.load);
      const badOption = await expectCode(collect(fromBlob.generateTokens('Hi', { maxTokens: -1 })), 'INVALID_ARGUMENT', 'maxTokens -1');
      await fromBlob.dispose();
      const res = await fetch(TINY);
      const fromStream = await e.loadModel(res.body, { totalBytes: blob.size, onProgress: (p) => events.push(p) });
      S.add('TextModel.load of a ReadableStream', 'W.LoadInfo', fromStream.load);
      S.add('a progress event of a stream load', 'W.LoadProgress', events[events.length - 1]);
      await fromStream.dispose();
      lap('caches');

      // Errors: the package's own, the network's, the engine's (with its finer `detail`).
      const errors = [
        badOption,
        await expectCode(e.loadModel(`${MODELS}/missing-${uniq()}.gguf`), 'NETWORK', 'a 404 model'),
        await expectCode(e.loadModel(blob.slice(0, 2000)), 'BAD_MODEL_FILE', 'a cut GGUF'),
        await expectCode(e.loadModel(TINY, { signal: AbortSignal.abort('test') }), 'ABORTED', 'an aborted load'),
        await expectCode(Engine.create({ workerUrl: '/pkg/missing-worker.js' }), 'WORKER', 'a missing worker'),
      ];
      for (const err of errors) {
        if (!(err instanceof pkg.WebjitError)) fail(`${err.code}: not a WebjitError`);
        S.add(`a WebjitError (${err.code})`, 'W.WebjitError', err);
      }
      if (!errors[2].detail) fail(`an engine error has no detail (the README promises it): ${JSON.stringify(enc(errors[2]))}`);
      lap('errors');

      // A model with a chat template: chat and the OpenAI-style API.
      const q = await e.loadModel(QWEN, { maxContext: 256 });
      S.add('TextModel.info (tiny-qwen2)', "W.TextModel['info']", q.info);
      S.add('TextModel.chatPrompt', "Awaited<ReturnType<W.TextModel['chatPrompt']>>", await q.chatPrompt(MESSAGES));
      S.add('TextModel.chatPromptIds', "Awaited<ReturnType<W.TextModel['chatPromptIds']>>", await q.chatPromptIds(MESSAGES));
      for (const p of await collect(q.chat(MESSAGES, { maxTokens: 2 }))) S.add('a piece of chat', 'string', p);
      S.add('TextModel.lastStats after chat', 'W.GenerateStats', q.lastStats);
      const create = (r) => e.chat.completions.create(r);
      S.add('chat.completions.create()', 'W.ChatCompletion', await create({ messages: MESSAGES, max_tokens: 2, temperature: 0 }));
      const stream = await create({ messages: MESSAGES, max_tokens: 2, stream: true, stream_options: { include_usage: true } });
      S.members('a chat completion stream', 'W.ChatCompletionStream', stream, { ownOnly: true, exact: false });
      const chunks = await collect(stream);
      if (chunks.length < 3 || !chunks[chunks.length - 1].usage) fail(`stream with include_usage: ${JSON.stringify(chunks)}`);
      for (const c of chunks) S.add(`a chunk (${c.choices.length ? 'choice' : 'usage'}) of a stream with include_usage`, 'W.ChatCompletionChunk', c);
      const plain = await collect(await create({ messages: MESSAGES, max_tokens: 1, stream: true, model: q }));
      for (const c of ends(plain)) S.add('a chunk of a stream', 'W.ChatCompletionChunk', c);
      await q.dispose();
      lap('chat');
      const template = await pkg.builtinChatTemplate('gemma3');
      S.add('builtinChatTemplate()', 'Awaited<ReturnType<typeof W.builtinChatTemplate>>', template);
      S.add('builtinChatTemplate() of an unknown architecture', 'Awaited<ReturnType<typeof W.builtinChatTemplate>>', await pkg.builtinChatTemplate('none'));
      S.add('chatPrompt()', 'Awaited<ReturnType<typeof W.chatPrompt>>', await pkg.chatPrompt(MESSAGES.slice(1), template, { bosToken: '<bos>' }));

      // The embedder.
      const eevents = [];
      const emb = await e.loadEmbedder(MINILM, { onProgress: (p) => eevents.push(p) });
      for (const p of ends(eevents)) S.add(`a progress event (${p.phase}) of loadEmbedder`, 'W.LoadProgress', p);
      S.members('an Embedder', 'W.Embedder', emb);
      S.add('Embedder.load', "W.Embedder['load']", emb.load);
      S.add('Embedder.dim', "W.Embedder['dim']", emb.dim);
      S.add('Embedder.maxSeqLen', "W.Embedder['maxSeqLen']", emb.maxSeqLen);
      const vecs = await emb.embed(['A man is eating food.', 'word '.repeat(400)]);
      if (vecs.length !== 2 || vecs[0].length !== emb.dim) fail(`embed: ${vecs.length} vectors of ${vecs[0]?.length}`);
      // An array with extra keys: its elements and its extra keys are checked apart.
      S.add('the vectors of embed()', 'Float32Array[]', [...vecs]);
      S.add("embed()'s keys beside the vectors", "Omit<Awaited<ReturnType<W.Embedder['embed']>>, keyof Float32Array[]>", Object.fromEntries(Object.entries(vecs).filter(([k]) => !/^\d+$/.test(k))));
      S.add('Embedder.tokenize', "Awaited<ReturnType<W.Embedder['tokenize']>>", await emb.tokenize('Hello'));
      await emb.dispose();
      lap('embedder');

      // Attention on typed arrays.
      const x = Float32Array.from({ length: 2 * 8 * 8 }, (_, i) => Math.sin(i));
      S.add('neighborhoodAttention()', 'W.AttentionResult', await e.neighborhoodAttention(x, x, x, { shape: [1, 2, 8, 8], kernel: [3], repeat: 1 }));
      const y = Float32Array.from({ length: 16 * 2 * 8 }, (_, i) => Math.cos(i));
      const bs = { qShape: [1, 16, 2, 8], kvShape: [1, 16, 2, 8], block: 4, select: { topK: 2 }, causal: true };
      S.add('blockSparseAttention() with a selection', 'W.BlockSparseResult', await e.blockSparseAttention(y, y, y, { ...bs, returnSelection: true, repeat: 1 }));
      S.add('blockSparseAttention()', 'W.BlockSparseResult', await e.blockSparseAttention(y, y, y, bs));
      S.add('denseAttention()', 'W.AttentionResult', await e.denseAttention(y, y, y, { qShape: bs.qShape, kvShape: bs.kvShape, causal: true }));
      S.add('engine.info() after all this', 'W.EngineInfo', await e.info());
      lap('attention');
    } finally {
      await e.dispose();
    }

    // The engine in the page's thread.
    const local = await Engine.create({ worker: false, tuningStore: 'none', readbackNudge: false });
    try {
      S.add('engine.info() of {worker: false}', 'W.EngineInfo', await local.info());
      S.members('an Engine of {worker: false}', 'W.Engine', local);
    } finally {
      await local.dispose();
    }
    S.add('a WebjitError (DISPOSED)', 'W.WebjitError', await expectCode(local.info(), 'DISPOSED', 'a disposed engine'));
    log(`  ${S.list.length} samples for the types check`);
    return { samples: S.list };
  },
};
