// webjit: neural-network inference on WebGPU, in the browser. The public API.
//
// By default the engine runs in the Worker this package ships (worker.js) and these classes
// are thin proxies: each call is a message with a request id, results come back with their
// typed arrays transferred, AbortSignals are forwarded. `Engine.create({worker: false})` runs
// the same engine code (core.js) in the calling thread instead.

import { LocalBackend, WorkerBackend, loadCore } from './backends.js';
import { ErrorCode, WebjitError, toWebjitError } from './errors.js';
import { chatApi } from './openai.js';

export { ErrorCode, WebjitError } from './errors.js';
import { CACHE_NAME } from './source.js';
import { OPFS_DIR, opfsClear, opfsList, opfsLookup } from './opfs.js';

function absolute(u) {
  const base = globalThis.document?.baseURI ?? globalThis.location?.href;
  return base ? new URL(String(u), base).href : String(u);
}

/** Model sources cross to the worker as cloneable/transferable values. */
function prepareSource(src, transfer) {
  if (typeof src === 'string' || src instanceof URL) return { source: absolute(src) };
  if (typeof Response !== 'undefined' && src instanceof Response) {
    if (!src.ok) throw new WebjitError(ErrorCode.NETWORK, `HTTP ${src.status} for ${src.url}`, { status: src.status });
    transfer.push(src.body);
    return { source: src.body, totalBytes: Number(src.headers.get('content-length')) || 0 };
  }
  if (typeof ReadableStream !== 'undefined' && src instanceof ReadableStream) transfer.push(src);
  return { source: src };
}

class Handle {
  constructor(engine, id) {
    this._engine = engine;
    this._id = id;
    this._disposed = false;
  }
  _call(method, args = {}, opts) {
    if (this._disposed) return Promise.reject(new WebjitError(ErrorCode.DISPOSED, 'disposed'));
    return this._engine._call(method, { id: this._id, ...args }, opts);
  }
  /** Frees every GPU buffer of this object. Idempotent. */
  async dispose() {
    if (this._disposed) return;
    this._disposed = true;
    this._engine._handles.delete(this);
    await this._engine._call('disposeHandle', { id: this._id }).catch(() => {});
  }
}

export class TextModel extends Handle {
  constructor(engine, id, info, load) {
    super(engine, id);
    /** {architecture, n_layers, vocab, d_model, n_heads, n_kv_heads, max_context, position,
     *  chat_template ('gguf' | 'builtin:gemma3' | 'none')} at load time. */
    this.info = info;
    /** How the file arrived: {totalBytes, fromCache, cached, resumes, peakWasmMemoryBytes}. */
    this.load = load;
    /** The final record of the last generation ({reason, promptTokens, tokens, prefillMs, decodeMs}). */
    this.lastStats = null;
    this._busy = false;
  }

  tokenize(text, { addBos = true } = {}) {
    return this._call('tokenize', { text, addBos });
  }
  detokenize(ids) {
    return this._call('detokenize', { ids: Uint32Array.from(ids) });
  }
  /**
   * The prompt text of `messages` ([{role, content}]) in the model's own chat template (the
   * GGUF's `tokenizer.chat_template`; Gemma 3 files without one get Gemma 3's published
   * template), or in `template` (a Jinja string) when given. Rejects with CHAT_TEMPLATE when
   * there is no template, or it does not parse, fails or refuses the messages.
   * opts: {template, addGenerationPrompt (default true)}.
   */
  chatPrompt(messages, { template, addGenerationPrompt } = {}) {
    return this._call('chatPrompt', { messages, template, addGenerationPrompt });
  }
  /** The token ids of chatPrompt's text (BOS added only when the text does not start with it). */
  chatPromptIds(messages, { template, addGenerationPrompt } = {}) {
    return this._call('chatPromptIds', { messages, template, addGenerationPrompt });
  }
  /**
   * The logits of the token after `prompt` (text or token ids; text gets the BOS token unless
   * {addBos: false}): a Float32Array of `info.vocab` entries, from a fresh context, which holds
   * the prompt afterwards. For scoring, custom sampling, or checking against a reference.
   */
  logits(prompt, { addBos = true } = {}) {
    if (this._busy) return Promise.reject(new WebjitError(ErrorCode.BUSY, 'this model is generating: finish or stop that first'));
    const src = typeof prompt === 'string' ? prompt : Uint32Array.from(prompt);
    return this._call('logits', { prompt: src, addBos });
  }
  /**
   * Perplexity of `text` as `webjit perplexity` and llama.cpp's llama-perplexity compute it:
   * chunks of `ctx` tokens (default 512; at most the model's maxContext), each from an empty
   * cache with BOS first, the second half of each chunk scored. `chunks` caps the chunks
   * (default: every whole chunk; the text needs 2 x ctx tokens). onChunk({chunk, chunks, seconds,
   * ppl, scored}) after each chunk. Resolves to {ppl, ppl_err, mean_nll, n_ctx, chunks,
   * text_tokens, scored, seconds, running_ppl}. Forgets the conversation.
   */
  perplexity(text, { ctx = 512, chunks = null, onChunk } = {}) {
    if (this._busy) return Promise.reject(new WebjitError(ErrorCode.BUSY, 'this model is generating: finish or stop that first'));
    return this._call('perplexity', { text, ctx, chunks }, { onEvent: (e) => e.type === 'perplexity' && onChunk?.(e.chunk) });
  }
  /** Forgets the conversation (KV cache back to position 0). */
  reset() {
    return this._call('reset');
  }

  /**
   * Tokens as they are generated: {id, text, top: [[id, logit] x5]}. `prompt` is text or
   * token ids, or null to continue from the prompt given to loadModel({prompt | promptIds})
   * (prefilled while the file streamed in). opts: {maxTokens, temperature, topK, topP, repeatPenalty, seed, signal,
   * continue (keep the context instead of starting fresh), addBos, onDone(stats)}.
   * Aborting `signal` ends the iteration (stats.reason 'stopped'); it does not throw.
   */
  async *generateTokens(prompt, opts = {}) {
    if (this._busy) throw new WebjitError(ErrorCode.BUSY, 'this model is already generating: finish or stop that first');
    this._busy = true;
    let final = null;
    try {
      const { signal } = opts;
      const options = {};
      for (const k of ['maxTokens', 'temperature', 'topK', 'topP', 'repeatPenalty', 'seed']) {
        if (opts[k] !== undefined) options[k] = opts[k];
      }
      const src = prompt == null ? null : typeof prompt === 'string' ? prompt : Uint32Array.from(prompt);
      await this._call('start', { prompt: src, options, reset: !opts.continue, addBos: opts.addBos });
      for (;;) {
        if (signal?.aborted) {
          final = await this._call('stop');
          break;
        }
        const r = await this._call('next');
        if (r.done) {
          final = r;
          break;
        }
        yield { id: r.id, text: r.text, top: r.top };
      }
    } finally {
      // Also reached when the consumer leaves the loop early: stop the engine side too.
      if (!final && !this._disposed) final = await this._call('stop').catch(() => null);
      this._busy = false;
      this.lastStats = final;
      if (final) opts.onDone?.(final);
    }
  }

  /** Text pieces as they are generated (see generateTokens for opts). */
  async *generate(prompt, opts = {}) {
    for await (const t of this.generateTokens(prompt, opts)) if (t.text) yield t.text;
    // Bytes the detokenizer held back for an unfinished character come with the final record.
    if (this.lastStats?.text) yield this.lastStats.text;
  }

  /**
   * Generates the model's answer to `messages` ([{role, content}]) from a fresh context, the
   * prompt written by the model's chat template (or opts.template). opts: those of
   * generateTokens (but continue and addBos) and {template}.
   */
  async *chat(messages, { template, ...opts } = {}) {
    if (this._busy) throw new WebjitError(ErrorCode.BUSY, 'this model is already generating: finish or stop that first');
    const ids = await this.chatPromptIds(messages, { template });
    yield* this.generate(ids, { ...opts, continue: false });
  }
}

/**
 * `messages` ([{role, content}]) in `template` (a Jinja chat template string), without a
 * model or an engine: the engine's renderer, so the text equals what `model.chatPrompt(messages,
 * {template})` writes for a model whose BOS/EOS texts are `bosToken`/`eosToken`. For giving the
 * first turn to loadModel({prompt}) before the model is there. Instantiates the wasm module in
 * the calling thread on first use. opts: {bosToken, eosToken (default ''), addGenerationPrompt
 * (default true), wasmUrl}. Rejects with CHAT_TEMPLATE (bad template) or INVALID_ARGUMENT.
 */
export function chatPrompt(messages, template, opts = {}) {
  const wasmUrl = opts.wasmUrl ? absolute(opts.wasmUrl) : undefined;
  return loadCore().then(({ renderChat }) => renderChat(messages, template, { ...opts, wasmUrl }));
}

/**
 * The chat template the package uses for a model of `architecture` whose GGUF carries none
 * (today 'gemma3': Gemma 3's published template), or null.
 */
export function builtinChatTemplate(architecture, opts = {}) {
  const wasmUrl = opts.wasmUrl ? absolute(opts.wasmUrl) : undefined;
  return loadCore().then(({ builtinTemplate }) => builtinTemplate(architecture, { wasmUrl }));
}

export class Embedder extends Handle {
  constructor(engine, id, dim, maxSeqLen, load) {
    super(engine, id);
    this.dim = dim;
    this.maxSeqLen = maxSeqLen;
    /** How the weights arrived: {totalBytes, fromCache, cached, resumes, peakWasmMemoryBytes}. */
    this.load = load;
  }
  /**
   * One L2-normalized, mean-pooled vector per text. A text longer than `maxSeqLen` tokens is
   * embedded from its first tokens (as sentence-transformers does) and flagged in the result's
   * `truncated` (one boolean per text); `{truncate: false}` refuses such texts with
   * INVALID_ARGUMENT instead.
   */
  async embed(texts, { truncate = true } = {}) {
    const list = typeof texts === 'string' ? [texts] : texts;
    const { flat, dim, truncated } = await this._call('embed', { texts: list, truncate });
    const out = [];
    for (let i = 0; i < list.length; i++) out.push(flat.subarray(i * dim, (i + 1) * dim));
    out.truncated = truncated;
    return out;
  }
  tokenize(text) {
    return this._call('embedderTokenize', { text });
  }
}

/**
 * Removes stored model files: those of `cache` ('cache-api', 'opfs' or 'all', the default),
 * only `url`'s when given (resolved against the page like loadModel's URLs). Runs in the
 * calling thread (both stores belong to the origin, not to an engine). Resolves to
 * {cacheApi, opfs}: entries removed from each (files for OPFS). Rejects with BUSY when a load
 * in progress is writing an OPFS file it would remove.
 */
export async function clearModelCache({ cache = 'all', url } = {}) {
  if (!['all', 'cache-api', 'opfs'].includes(cache)) {
    throw new WebjitError(ErrorCode.INVALID_ARGUMENT, `cache must be 'all', 'cache-api' or 'opfs', got ${cache}`);
  }
  const u = url === undefined ? undefined : absolute(url);
  const out = { cacheApi: 0, opfs: 0 };
  try {
    if (cache !== 'opfs' && typeof caches !== 'undefined') {
      if (u === undefined) {
        const c = await caches.open(CACHE_NAME);
        out.cacheApi = (await c.keys()).length;
        await caches.delete(CACHE_NAME);
      } else {
        out.cacheApi = (await (await caches.open(CACHE_NAME)).delete(u)) ? 1 : 0;
      }
    }
    if (cache !== 'cache-api') out.opfs = await opfsClear({ url: u });
  } catch (e) {
    throw toWebjitError(e);
  }
  return out;
}

/** Size of a Cache API entry: its Content-Length, else its body's length (read once). */
async function cachedSize(res) {
  const n = Number(res.headers.get('content-length'));
  if (Number.isFinite(n) && n > 0) return n;
  return (await res.blob()).size;
}

/**
 * The model files stored by `cache: 'cache-api'` and `cache: 'opfs'` loads of this origin:
 * [{url, cache: 'cache-api' | 'opfs', size (bytes), storedAt (ms since 1970, OPFS only; null
 * for the Cache API)}]. Runs in the calling thread, like clearModelCache.
 */
export async function listCachedModels() {
  const out = [];
  try {
    if (typeof caches !== 'undefined' && (await caches.has(CACHE_NAME))) {
      const c = await caches.open(CACHE_NAME);
      for (const req of await c.keys()) {
        const res = await c.match(req);
        if (res) out.push({ url: req.url, cache: 'cache-api', size: await cachedSize(res), storedAt: null });
      }
    }
    for (const e of await opfsList()) out.push({ ...e, cache: 'opfs' });
  } catch (e) {
    throw toWebjitError(e);
  }
  return out;
}

/**
 * Whether a complete copy of `url` (resolved against the page like loadModel's URLs) is
 * stored: {cacheApi: bool, opfs: bool, size: bytes of the copy found, or 0}.
 */
export async function hasModelInCache(url) {
  if (url === undefined || url === null || url === '') {
    throw new WebjitError(ErrorCode.INVALID_ARGUMENT, 'hasModelInCache needs the model URL');
  }
  const u = absolute(url);
  const out = { cacheApi: false, opfs: false, size: 0 };
  try {
    if (typeof caches !== 'undefined' && (await caches.has(CACHE_NAME))) {
      const res = await (await caches.open(CACHE_NAME)).match(u);
      if (res) {
        out.cacheApi = true;
        out.size = await cachedSize(res);
      }
    }
    const hit = await opfsLookup(u);
    if (hit) {
      out.opfs = true;
      out.size = hit.marker.size;
    }
  } catch (e) {
    throw toWebjitError(e);
  }
  return out;
}

/** Names of the stores, for looking at them in the browser's devtools. */
export const MODEL_CACHES = Object.freeze({ cacheApi: CACHE_NAME, opfsDir: OPFS_DIR });

/** {reason: 'destroyed' | 'unknown', message} from the engine's device-lost reason. */
function lostInfo(message) {
  const m = String(message);
  return { reason: /^destroyed/i.test(m) ? 'destroyed' : 'unknown', message: m };
}

export class Engine {
  constructor(backend, created, worker, lost) {
    this._backend = backend;
    this._handles = new Set();
    this._disposed = false;
    this.worker = worker;
    /** Number of tuning records imported from IndexedDB at create (0 or 1 document). */
    this.importedTuning = created.importedTuning;
    /**
     * Resolves with {reason, message} when the GPU device is lost (a driver reset, the GPU
     * process restarting, `device.destroy()`), never when `dispose()` ends the engine. Every
     * call that needs the GPU then rejects with DEVICE_LOST: dispose this engine and create a
     * new one.
     */
    this.lost = lost;
  }

  /**
   * Calls `callback({reason, message})` once when the GPU device is lost (see `lost`); at once
   * (asynchronously) when it already is. Returns a function that removes the callback.
   */
  onDeviceLost(callback) {
    let on = true;
    this.lost.then((info) => {
      if (on) callback(info);
    });
    return () => {
      on = false;
    };
  }

  /**
   * opts: {powerPreference: 'high-performance'|'low-power', worker: true (default) | false,
   * workerUrl, wasmUrl, tuningStore: 'indexeddb' (default) | 'none', readbackNudge: boolean
   * (default: on, except on CPU adapters such as SwiftShader)}. readbackNudge sends empty
   * queue submits while a result is read back, so the browser delivers it sooner (about 1-2 ms
   * less per result on a GPU in Chromium).
   * Rejects with code WEBGPU_UNAVAILABLE when the browser has no WebGPU or no adapter, WORKER
   * when the worker cannot start (the message says why and what to do), NETWORK (with status)
   * when the wasm cannot be fetched or is not wasm. Imported from another origin (a CDN), the
   * worker starts from a same-origin blob URL that imports the package's worker.js.
   */
  static async create(opts = {}) {
    const worker = opts.worker ?? typeof Worker !== 'undefined';
    // Throws WORKER (with what to do) when no Worker can be constructed, e.g. cross-origin.
    const backend = worker ? new WorkerBackend(opts.workerUrl ? absolute(opts.workerUrl) : undefined) : new LocalBackend();
    const lost = new Promise((resolve) => {
      backend.onDeviceLost = (message) => resolve(lostInfo(message));
    });
    try {
      const created = await backend.call('create', {
        powerPreference: opts.powerPreference,
        readbackNudge: opts.readbackNudge,
        wasmUrl: opts.wasmUrl ? absolute(opts.wasmUrl) : undefined,
        tuningStore: opts.tuningStore ?? 'indexeddb',
      });
      return new Engine(backend, created, worker, lost);
    } catch (e) {
      backend.terminate();
      throw toWebjitError(e);
    }
  }

  _call(method, args, opts) {
    if (this._disposed) return Promise.reject(new WebjitError(ErrorCode.DISPOSED, 'the engine was disposed'));
    return this._backend.call(method, args, opts);
  }

  /** {adapter, backend, features, limits, fingerprint, memory: {live_bytes, pooled_bytes,
   *  buffers_created, buffers_reused}, tuning: {records}, device_lost, wasm_memory_bytes,
   *  version}. */
  info() {
    return this._call('info');
  }

  /**
   * Streams a GGUF model into GPU memory. source: URL string | URL | File | Blob | Response |
   * ReadableStream | ArrayBuffer | typed array. opts: {onProgress, signal, cache: 'none' |
   * 'cache-api' | 'opfs', maxContext, kvCache: 'f16' | 'f32' | 'q8_0' | 'q4_0' | 'kivi2', format: 'gguf'|'',
   * prompt | promptIds (prefilled layer by layer while the file streams in; then
   * generate(null, ...) continues from it)}.
   */
  async loadModel(source, opts = {}) {
    const transfer = [];
    const src = prepareSource(source, transfer);
    const r = await this._call(
      'loadModel',
      {
        ...src,
        format: opts.format ?? '',
        cache: opts.cache ?? 'none',
        maxContext: opts.maxContext,
        kvCache: opts.kvCache,
        // The size of a source that does not tell it (no Content-Length, a stream).
        ...(opts.totalBytes === undefined ? {} : { totalBytes: opts.totalBytes }),
        prompt: opts.prompt,
        promptIds: opts.promptIds === undefined ? undefined : Uint32Array.from(opts.promptIds),
      },
      { onEvent: (e) => e.type === 'progress' && opts.onProgress?.(e), signal: opts.signal, transfer },
    );
    const m = new TextModel(this, r.id, r.info, r.load);
    this._handles.add(m);
    return m;
  }

  /**
   * A sentence embedder (BERT family, e.g. all-MiniLM-L6-v2). source: a folder URL holding
   * config.json, model.safetensors, tokenizer.json (and sentence_bert_config.json), or
   * {config, weights, tokenizer, sentenceBertConfig?} of URLs/Files/Blobs/buffers. The
   * weights stream onto the GPU as loadModel's do (bounded wasm memory).
   * opts: {onProgress, signal, cache, maxSeqLen}.
   */
  async loadEmbedder(source, opts = {}) {
    let src = source;
    // Streams cross to the worker transferred, as loadModel's do (they cannot be copied).
    const transfer = [];
    if (typeof source === 'string' || source instanceof URL) src = absolute(source);
    else if (source && typeof source === 'object') {
      src = {};
      for (const [k, v] of Object.entries(source)) src[k] = prepareSource(v, transfer).source;
    }
    const r = await this._call(
      'loadEmbedder',
      { source: src, cache: opts.cache ?? 'none', maxSeqLen: opts.maxSeqLen, totalBytes: opts.totalBytes },
      { onEvent: (e) => e.type === 'progress' && opts.onProgress?.(e), signal: opts.signal, transfer },
    );
    const e = new Embedder(this, r.id, r.dim, r.maxSeqLen, r.load);
    this._handles.add(e);
    return e;
  }

  /**
   * OpenAI-style chat completions (openai.js): `engine.chat.completions.create({messages,
   * stream, max_tokens, temperature, top_p, seed, stop, ...})` on `model` (a TextModel), or on
   * the text model loaded last when `model` is a string or omitted.
   */
  get chat() {
    return (this._chat ??= chatApi(this, TextModel));
  }

  /** Neighborhood attention (NATTEN semantics), q/k/v f32 [batch, heads, X(, Y(, Z)), d].
   *  opts: {shape, kernel, dilation?, causal?, scale?} -> {output, gpuMs}. */
  neighborhoodAttention(q, k, v, opts) {
    return this._call('neighborhoodAttention', { q, k, v, options: opts });
  }
  /** Block-sparse attention, q [b, s, h, d], k/v [b, s, hk, d] -> {output, selection?, gpuMs}. */
  blockSparseAttention(q, k, v, opts) {
    return this._call('blockSparseAttention', { q, k, v, options: opts });
  }
  /** Dense attention with blockSparseAttention's layout (a baseline) -> {output, gpuMs}. */
  denseAttention(q, k, v, opts) {
    return this._call('denseAttention', { q, k, v, options: opts });
  }

  /**
   * Tunes the kernels of the text model loaded last within budgetMs (the model must be idle)
   * and stores the winners in IndexedDB -> the whole report. onReport gets each problem's
   * report as it lands. int8: also try the int8 matvec path (8-bit activations; faster on
   * some devices, results differ slightly from untuned runs).
   */
  tune({ budgetMs = 2000, onReport, int8 = false } = {}) {
    return this._call('tune', { budgetMs, int8 }, { onEvent: (e) => e.type === 'tune' && onReport?.(e.report) });
  }
  exportTuning() {
    return this._call('exportTuning');
  }
  importTuning(json) {
    return this._call('importTuning', { json });
  }
  /** Drops pooled (free) GPU buffers. */
  releaseMemory() {
    return this._call('releaseMemory');
  }

  /** Frees every model, embedder and GPU buffer, and ends the worker. Idempotent. */
  async dispose() {
    if (this._disposed) return;
    for (const h of this._handles) h._disposed = true;
    this._handles.clear();
    try {
      await this._backend.call('dispose', {});
    } finally {
      this._disposed = true;
      this._backend.terminate();
    }
  }
}

export default Engine;
