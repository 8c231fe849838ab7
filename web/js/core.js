// The engine side of the package: owns the wasm module and every engine object, and runs in
// whichever thread the engine lives in (the package's Worker by default, or the page's thread
// with {worker: false}). Both modes talk to it through one entry point, `Core.call(method,
// args, ctx)`, so they behave the same; index.js holds the public classes.

import initWasm, * as wasm from './wasm/webjit_web.js';
import { ErrorCode, WebjitError, abortedError, toWebjitError } from './errors.js';
import { openSource, readAll, transferables } from './source.js';
import { loadTuning, saveTuning } from './tuning-store.js';
import { loadWasm } from './wasm-fetch.js';

let wasmReady = null;

/**
 * Instantiates the wasm module once per thread; returns its exports (for `memory`). The default
 * URL is relative to this file, so a package imported from a CDN fetches its own wasm; a failed
 * load (NETWORK / WORKER) is not kept, so a later call may try again.
 */
export function initOnce(wasmUrl) {
  if (!wasmReady) {
    const url = wasmUrl ?? new URL('./wasm/webjit_web_bg.wasm', import.meta.url);
    wasmReady = loadWasm(initWasm, url);
    wasmReady.catch(() => (wasmReady = null));
  }
  return wasmReady;
}

/** Checks chat arguments; returns [messages as JSON, template or undefined]. */
function chatArgs(messages, template) {
  need(Array.isArray(messages), 'messages must be an array of {role, content}');
  need(template === undefined || template === null || typeof template === 'string', 'template must be a string (a Jinja chat template)');
  return [JSON.stringify(messages), template ?? undefined];
}

/**
 * The engine's chat-template renderer without a model or an engine: instantiates the wasm
 * module in the calling thread on first use. opts: {bosToken, eosToken, addGenerationPrompt,
 * wasmUrl}.
 */
export async function renderChat(messages, template, { wasmUrl, ...opts } = {}) {
  need(typeof template === 'string', 'chatPrompt needs a template string (a Jinja chat template); a loaded model renders its own with model.chatPrompt');
  const [json] = chatArgs(messages, template);
  await initOnce(wasmUrl);
  try {
    return wasm.renderChat(json, template, JSON.stringify(opts));
  } catch (e) {
    throw toWebjitError(e);
  }
}

/** The template the package uses for an `architecture` whose GGUF has none ('gemma3'), or null. */
export async function builtinTemplate(architecture, { wasmUrl } = {}) {
  await initOnce(wasmUrl);
  return wasm.builtinChatTemplate(String(architecture)) ?? null;
}

const PROGRESS_EVERY_MS = 50;
// The engine objects are not re-entrant (wasm-bindgen refuses a second borrow while an async
// method holds one), so every call into them goes through this one queue.
class Lock {
  #tail = Promise.resolve();
  run(fn) {
    const p = this.#tail.then(fn);
    this.#tail = p.catch(() => {});
    return p;
  }
}

function parse(json) {
  return typeof json === 'string' ? JSON.parse(json) : json;
}

function need(cond, msg) {
  if (!cond) throw new WebjitError(ErrorCode.INVALID_ARGUMENT, msg);
}

// Generation options: [test, what is allowed]. Checked here so that a bad value is named in
// the package's words (never serde's, and NaN is not sent as JSON null).
const GEN_OPTIONS = {
  maxTokens: [(v) => Number.isInteger(v) && v >= 0 && v <= 2 ** 31 - 1, 'a whole number >= 0 (0: only read the prompt)'],
  temperature: [(v) => Number.isFinite(v) && v >= 0, 'a finite number >= 0 (0 = greedy)'],
  topK: [(v) => Number.isInteger(v) && v >= 0 && v <= 64, 'a whole number from 0 to 64 (0 = 64)'],
  topP: [(v) => Number.isFinite(v) && v > 0 && v <= 1, 'a number > 0 and <= 1'],
  repeatPenalty: [(v) => Number.isFinite(v) && v > 0, 'a finite number > 0 (1 = off)'],
  seed: [(v) => Number.isSafeInteger(v) && v >= 0, 'a whole number >= 0'],
};

/** The engine's generation options from `options`, each checked; unknown keys are ignored. */
export function genOptions(options) {
  need(options !== null && typeof options === 'object', `generation options must be an object, got ${options}`);
  const o = {};
  for (const [k, [ok, allowed]] of Object.entries(GEN_OPTIONS)) {
    const v = options[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !ok(v)) {
      const shown = typeof v === 'string' ? JSON.stringify(v) : String(v);
      throw new WebjitError(ErrorCode.INVALID_ARGUMENT, `${k}: ${shown} is not allowed: expected ${allowed}`);
    }
    o[k] = v;
  }
  return o;
}

function f32(x, name) {
  if (x instanceof Float32Array) return x;
  need(Array.isArray(x) || ArrayBuffer.isView(x), `${name} must be a Float32Array (or an array of numbers)`);
  return Float32Array.from(x);
}

export class Core {
  #engine = null;
  #exports = null;
  #lock = new Lock();
  #handles = new Map(); // id -> {kind: 'model'|'embedder', obj}
  #nextId = 1;
  #tuningStore = 'indexeddb';
  #fingerprint = '';
  #disposed = false;
  /** The device-lost reason once the engine's device is gone (not when dispose destroys it). */
  #lost = null;
  #freeing = false;
  /** Called once with the reason when the GPU device is lost (worker.js and LocalBackend set it). */
  onLost = null;

  /** args: {powerPreference, readbackNudge, wasmUrl, tuningStore: 'indexeddb'|'none'} */
  async create({ powerPreference, readbackNudge, wasmUrl, tuningStore = 'indexeddb' } = {}) {
    if (typeof navigator === 'undefined' || !navigator.gpu) {
      throw new WebjitError(
        ErrorCode.WEBGPU_UNAVAILABLE,
        'WebGPU is not available here (navigator.gpu is missing): use a browser with WebGPU enabled',
      );
    }
    this.#exports = await initOnce(wasmUrl);
    try {
      if (readbackNudge !== undefined && typeof readbackNudge !== 'boolean') {
        throw new WebjitError(ErrorCode.INVALID_ARGUMENT, `readbackNudge must be true, false or undefined, got ${readbackNudge}`);
      }
      this.#engine = await wasm.Engine.create(powerPreference, readbackNudge);
    } catch (e) {
      throw toWebjitError(e);
    }
    // The device can go at any time (driver reset, GPU process crash, `device.destroy()`):
    // tell the page once, unless this engine's own dispose destroyed it.
    this.#engine.whenLost().then((reason) => {
      if (this.#freeing || this.#lost) return;
      this.#lost = String(reason);
      this.onLost?.(this.#lost);
    });
    this.#tuningStore = tuningStore;
    const info = this.info();
    this.#fingerprint = String(info.fingerprint ?? '');
    let imported = 0;
    if (tuningStore === 'indexeddb') {
      const json = await loadTuning(this.#fingerprint).catch(() => null);
      if (json) {
        try {
          this.#engine.importTuning(json);
          imported = 1;
        } catch {
          // Records of an older build or another device: ignore them rather than fail create.
        }
      }
    }
    return { info: this.info(), importedTuning: imported };
  }

  #alive() {
    if (this.#disposed || !this.#engine) throw new WebjitError(ErrorCode.DISPOSED, 'the engine was disposed');
    return this.#engine;
  }

  #handle(id, kind) {
    const h = this.#handles.get(id);
    if (!h || h.kind !== kind) throw new WebjitError(ErrorCode.DISPOSED, `${kind} ${id} was disposed`);
    return h;
  }

  #add(kind, obj, extra = {}) {
    const id = this.#nextId++;
    this.#handles.set(id, { kind, obj, ...extra });
    return id;
  }

  wasmMemoryBytes() {
    return this.#exports?.memory?.buffer?.byteLength ?? 0;
  }

  info() {
    const i = parse(this.#alive().info());
    i.wasm_memory_bytes = this.wasmMemoryBytes();
    i.version = wasm.version();
    return i;
  }

  /**
   * Streams a model file into the engine. ctx.emit gets {type: 'progress', ...} events; the
   * whole file is never held: each chunk goes to ModelLoad.push as it arrives.
   */
  async loadModel({ source, format = '', cache = 'none', maxContext, kvCache, totalBytes, prompt, promptIds }, { emit, signal }) {
    const engine = this.#alive();
    need(maxContext === undefined || (Number.isInteger(maxContext) && maxContext >= 1 && maxContext <= 2 ** 20),
      `maxContext: ${maxContext} is not allowed: expected a whole number from 1 to ${2 ** 20} (tokens of KV cache)`);
    need(totalBytes === undefined || (Number.isSafeInteger(totalBytes) && totalBytes >= 0),
      `totalBytes: ${totalBytes} is not allowed: expected the file size in bytes (a whole number >= 0)`);
    need(promptIds === undefined || Array.from(promptIds).every((t) => Number.isInteger(t) && t >= 0 && t < 2 ** 32),
      'promptIds must be token ids (whole numbers >= 0)');
    const { chunks, meta } = await openSource(source, { signal, cache });
    if (!meta.totalBytes && totalBytes > 0) meta.totalBytes = totalBytes;
    // A prompt given here is prefilled block by block while the file streams in.
    const o = { textModel: true };
    if (maxContext) o.maxContext = maxContext;
    // Checked by the engine (INVALID_ARGUMENT naming the allowed formats).
    if (kvCache !== undefined) o.kvCache = String(kvCache);
    if (prompt !== undefined) o.prompt = String(prompt);
    if (promptIds !== undefined) o.promptIds = Array.from(promptIds);
    const { obj: model, load } = await this.#stream({
      chunks,
      meta,
      signal,
      emit,
      what: 'model source',
      begin: () => engine.beginLoad(format, meta.totalBytes || 0, JSON.stringify(o)),
      finish: (l) => l.finish(),
    });
    const id = this.#add('model', model);
    return { id, info: parse(model.info()), load };
  }

  /**
   * Streams `chunks` into a ModelLoad that `begin()` makes and builds the result with
   * `finish(load)`. Shared by text models and embedders: progress events (at most every
   * PROGRESS_EVERY_MS, with `fraction` when the size is known), the round trip that proves the
   * weights reached a live device, the cache commit, and the cleanup on failure.
   */
  async #stream({ chunks, meta, signal, emit, what, begin, finish }) {
    const engine = this.#alive();
    let load = null;
    let last = null;
    let lastEmit = 0;
    let peakWasm = this.wasmMemoryBytes();
    const report = (force) => {
      const now = Date.now();
      if (!last || (!force && now - lastEmit < PROGRESS_EVERY_MS)) return;
      lastEmit = now;
      const totalBytes = last.totalBytes || meta.totalBytes || 0;
      emit?.({
        type: 'progress',
        ...last,
        totalBytes,
        fraction: totalBytes > 0 ? Math.min(1, last.loadedBytes / totalBytes) : null,
        fromCache: meta.fromCache,
        resumes: meta.resumes,
        wasmMemoryBytes: this.wasmMemoryBytes(),
        peakWasmMemoryBytes: peakWasm,
      });
    };
    try {
      for await (const chunk of chunks) {
        if (!load) load = await this.#lock.run(begin);
        last = await this.#lock.run(() => parse(load.push(chunk)));
        peakWasm = Math.max(peakWasm, this.wasmMemoryBytes());
        report(false);
      }
      if (signal?.aborted) throw abortedError(signal);
      if (!load) throw new WebjitError(ErrorCode.BAD_MODEL_FILE, `${meta.name || what} is empty`);
      const obj = await this.#lock.run(() => finish(load));
      try {
        // Writes to a lost device vanish without an error: a round trip proves they landed.
        await this.#lock.run(() => engine.confirmAlive());
      } catch (e) {
        obj.free();
        throw e;
      }
      peakWasm = Math.max(peakWasm, this.wasmMemoryBytes());
      if (last) last.phase = 'done';
      report(true);
      // An OPFS copy becomes a hit only now that the engine has accepted the file.
      await meta.commitCache?.();
      const { commitCache, discardCache, dropCachedCopy, ...loadMeta } = meta;
      return { obj, load: { ...loadMeta, peakWasmMemoryBytes: peakWasm, cacheError: meta.cacheError } };
    } catch (e) {
      await meta.discardCache?.();
      let err = signal?.aborted ? abortedError(signal) : toWebjitError(e);
      // A stored copy the engine refuses (damaged on disk) is dropped: the next load downloads.
      if (meta.fromCache && meta.dropCachedCopy && err.code === ErrorCode.BAD_MODEL_FILE) {
        await meta.dropCachedCopy();
        err = new WebjitError(err.code, `${err.message} (the stored OPFS copy was refused and removed: the next load downloads the file again)`);
      }
      if (load) {
        try {
          load.abort();
        } catch {
          // A load that failed inside push is already dead; abort only frees what is left.
        }
      }
      throw err;
    } finally {
      if (load) {
        try {
          load.free();
        } catch {
          // finish() consumed it.
        }
      }
    }
  }

  /**
   * source: a base URL (folder with config.json, model.safetensors, tokenizer.json and
   * optionally sentence_bert_config.json) or {config, weights, tokenizer, sentenceBertConfig?}
   * where each is anything openSource takes. The small JSON files are read whole; the weights
   * stream onto the GPU chunk by chunk as loadModel's do (ctx.emit gets the same progress
   * events), so wasm memory stays bounded whatever the file's size.
   */
  async loadEmbedder({ source, cache = 'none', maxSeqLen, totalBytes }, { emit, signal }) {
    const engine = this.#alive();
    let files = source;
    if (typeof source === 'string' || source instanceof URL) {
      const base = String(source).endsWith('/') ? String(source) : `${source}/`;
      files = {
        config: `${base}config.json`,
        weights: `${base}model.safetensors`,
        tokenizer: `${base}tokenizer.json`,
        sentenceBertConfig: `${base}sentence_bert_config.json`,
      };
    }
    need(files && files.config && files.weights && files.tokenizer, 'embedder source needs config, weights and tokenizer');
    const small = 64 << 20;
    const [config, tokenizer] = await Promise.all([
      readAll(files.config, { signal, cache, maxBytes: small }),
      readAll(files.tokenizer, { signal, cache, maxBytes: small }),
    ]);
    let seq = maxSeqLen;
    if (!seq && files.sentenceBertConfig) {
      try {
        const sb = JSON.parse(new TextDecoder().decode(await readAll(files.sentenceBertConfig, { signal, cache, maxBytes: 1 << 20 })));
        seq = sb.max_seq_length;
      } catch (e) {
        if (signal?.aborted) throw abortedError(signal);
        // Optional file: without it the model's own position limit applies (below).
      }
    }
    if (!seq) {
      const c = JSON.parse(new TextDecoder().decode(config));
      seq = c.max_position_embeddings || 512;
    }
    need(Number.isInteger(seq) && seq > 0, `maxSeqLen must be a positive integer, got ${seq}`);
    const { chunks, meta } = await openSource(files.weights, { signal, cache });
    if (!meta.totalBytes && totalBytes > 0) meta.totalBytes = totalBytes;
    const { obj: emb, load } = await this.#stream({
      chunks,
      meta,
      signal,
      emit,
      what: 'embedder weights',
      begin: () => engine.beginLoad('safetensors', meta.totalBytes || 0, '{}'),
      finish: (l) => l.finishEmbedder(config, tokenizer, seq),
    });
    const id = this.#add('embedder', emb, { maxSeqLen: seq });
    return { id, dim: emb.dim(), maxSeqLen: seq, load };
  }

  // ---- text models ----
  modelInfo({ id }) {
    return parse(this.#handle(id, 'model').obj.info());
  }
  tokenize({ id, text, addBos = true }) {
    return this.#lock.run(() => this.#handle(id, 'model').obj.tokenize(String(text), !!addBos));
  }
  detokenize({ id, ids }) {
    return this.#lock.run(() => this.#handle(id, 'model').obj.detokenize(Uint32Array.from(ids)));
  }
  /** The model's chat template (or `template`, a Jinja string) applied to `messages`. */
  chatPrompt({ id, messages, template, addGenerationPrompt = true }) {
    const [json, t] = chatArgs(messages, template);
    return this.#lock.run(() => this.#handle(id, 'model').obj.chatPrompt(json, t, !!addGenerationPrompt));
  }
  /** chatPrompt's ids (the BOS token only when the text does not start with it). */
  chatPromptIds({ id, messages, template, addGenerationPrompt = true }) {
    const [json, t] = chatArgs(messages, template);
    return this.#lock.run(() => this.#handle(id, 'model').obj.chatPromptIds(json, t, !!addGenerationPrompt));
  }
  /** Tokenizes (string prompts), optionally resets, and starts generating. */
  start({ id, prompt, options = {}, reset = true, addBos }) {
    const m = this.#handle(id, 'model').obj;
    const o = genOptions(options ?? {});
    return this.#lock.run(() => {
      if (prompt === undefined || prompt === null) {
        // Continue from the prompt prefilled during loadModel({prompt | promptIds}).
        const n = m.prefilledPrompt().length;
        m.startPrefilled(JSON.stringify(o));
        return { promptTokens: n };
      }
      if (reset) m.reset();
      let ids;
      if (typeof prompt === 'string') {
        const bos = addBos ?? reset;
        ids = m.tokenize(prompt, false);
        if (bos) {
          // The chat template may already start with the BOS token: never feed it twice.
          const b = m.tokenize('', true);
          if (b.length === 1 && ids[0] !== b[0]) ids = Uint32Array.from([b[0], ...ids]);
        }
      } else {
        need(Array.isArray(prompt) || prompt instanceof Uint32Array, 'prompt must be a string or token ids');
        ids = Uint32Array.from(prompt);
      }
      m.start(ids, JSON.stringify(o));
      return { promptTokens: ids.length };
    });
  }
  /** Logits at the last position of `prompt` (text gets the BOS token), fresh context. */
  logits({ id, prompt, addBos = true }) {
    const m = this.#handle(id, 'model').obj;
    return this.#lock.run(async () => {
      let ids;
      if (typeof prompt === 'string') {
        ids = m.tokenize(prompt, !!addBos);
      } else {
        need(Array.isArray(prompt) || prompt instanceof Uint32Array, 'prompt must be a string or token ids');
        ids = Uint32Array.from(prompt);
      }
      return await m.logits(ids);
    });
  }
  /** llama-perplexity's method (TextModel.perplexity); ctx.emit gets {type: 'perplexity', chunk} per chunk. */
  perplexity({ id, text, ctx = 512, chunks = null }, { emit } = {}) {
    const m = this.#handle(id, 'model').obj;
    need(typeof text === 'string' && Number.isInteger(ctx) && ctx >= 4 && (chunks === null || (Number.isInteger(chunks) && chunks >= 1)),
      `perplexity: text must be a string (got ${typeof text}), ctx an integer >= 4 (got ${ctx}), chunks a positive integer or null (got ${chunks})`);
    return this.#lock.run(async () => parse(await m.perplexity(text, ctx, chunks ?? undefined, (j) => emit?.({ type: 'perplexity', chunk: parse(j) }))));
  }
  next({ id }) {
    const m = this.#handle(id, 'model').obj;
    return this.#lock.run(async () => parse(await m.next()));
  }
  /** Stops the running generation and returns its final record. */
  stop({ id }) {
    const m = this.#handle(id, 'model').obj;
    return this.#lock.run(async () => {
      m.stop();
      for (let i = 0; i < 4; i++) {
        const r = parse(await m.next());
        if (r.done) return r;
      }
      return { done: true, reason: 'stopped' };
    });
  }
  reset({ id }) {
    return this.#lock.run(() => this.#handle(id, 'model').obj.reset());
  }

  // ---- embedders ----
  async embed({ id, texts, truncate = true }) {
    need(Array.isArray(texts) && texts.every((t) => typeof t === 'string'), 'texts must be an array of strings');
    need(typeof truncate === 'boolean', `truncate must be true or false, got ${truncate}`);
    const h = this.#handle(id, 'embedder');
    const e = h.obj;
    const json = JSON.stringify(texts);
    const cut = Array.from(await this.#lock.run(() => e.truncated(json)), Boolean);
    if (!truncate && cut.some(Boolean)) {
      const which = cut.flatMap((c, i) => (c ? [i] : []));
      throw new WebjitError(
        ErrorCode.INVALID_ARGUMENT,
        `text${which.length > 1 ? 's' : ''} ${which.slice(0, 10).join(', ')}${which.length > 10 ? ', ...' : ''} ` +
          `of ${texts.length} ${which.length > 1 ? 'are' : 'is'} longer than the embedder's ${h.maxSeqLen} tokens ` +
          '(truncate: false refuses them; split the text, or leave truncate on to embed the first tokens)',
      );
    }
    const flat = await this.#lock.run(() => e.embed(json));
    return { flat, dim: e.dim(), truncated: cut };
  }
  embedderTokenize({ id, text }) {
    return this.#lock.run(() => this.#handle(id, 'embedder').obj.tokenize(String(text)));
  }

  // ---- op level ----
  #op(name, { q, k, v, options }) {
    const engine = this.#alive();
    const qq = f32(q, 'q');
    const kk = f32(k, 'k');
    const vv = f32(v, 'v');
    return this.#lock.run(async () => {
      if (typeof engine[name] !== 'function') {
        throw new WebjitError(ErrorCode.INTERNAL, `this wasm build has no ${name}`);
      }
      const r = parse(await engine[name](qq, kk, vv, JSON.stringify(options ?? {})));
      // The facade reports per-run milliseconds as `ms` when options.repeat > 0: the package's
      // name for them is `gpuMs` (index.d.ts AttentionResult), and only that one is handed out.
      if (r && r.ms !== undefined) {
        r.gpuMs ??= r.ms;
        delete r.ms;
      }
      return r;
    });
  }
  neighborhoodAttention(a) {
    return this.#op('neighborhoodAttention', a);
  }
  blockSparseAttention(a) {
    return this.#op('blockSparseAttention', a);
  }
  denseAttention(a) {
    return this.#op('denseAttention', a);
  }

  // ---- tuning and memory ----
  /** Tunes the kernels of the text model loaded last; ctx.emit gets {type: 'tune', report}
   *  per problem as it lands. */
  async tune({ budgetMs = 2000, int8 = false } = {}, { emit } = {}) {
    need(Number.isFinite(budgetMs) && budgetMs > 0, `budgetMs must be a positive number, got ${budgetMs}`);
    const engine = this.#alive();
    if (typeof engine.tune !== 'function') {
      throw new WebjitError(ErrorCode.INTERNAL, 'this wasm build has no Engine.tune');
    }
    const onReport = (json) => emit?.({ type: 'tune', report: parse(json) });
    const report = parse(await this.#lock.run(() => engine.tune(budgetMs, onReport, !!int8)));
    if (this.#tuningStore === 'indexeddb') {
      try {
        await saveTuning(this.#fingerprint, engine.exportTuning());
        report.persisted = true;
      } catch (e) {
        report.persisted = false;
        report.persistError = toWebjitError(e).code;
      }
    }
    return report;
  }
  exportTuning() {
    return this.#alive().exportTuning();
  }
  importTuning({ json }) {
    return this.#lock.run(() => this.#alive().importTuning(typeof json === 'string' ? json : JSON.stringify(json)));
  }
  releaseMemory() {
    return this.#lock.run(() => this.#alive().releaseMemory());
  }

  disposeHandle({ id }) {
    const h = this.#handles.get(id);
    if (!h) return;
    this.#handles.delete(id);
    return this.#lock.run(() => h.obj.free());
  }

  async dispose() {
    if (this.#disposed) return;
    const hs = [...this.#handles.values()];
    this.#handles.clear();
    this.#freeing = true;
    await this.#lock.run(() => {
      for (const h of hs) h.obj.free();
      this.#engine?.free();
    });
    this.#engine = null;
    this.#disposed = true;
  }

  /** The one entry point of both modes. Returns {value, transfer}. */
  async call(method, args, ctx = {}) {
    if (method === 'create') return { value: await this.create(args) };
    if (!METHODS.has(method)) throw new WebjitError(ErrorCode.INVALID_ARGUMENT, `unknown method ${method}`);
    try {
      const value = await this[method](args ?? {}, ctx);
      return { value, transfer: transferables(value) };
    } catch (e) {
      throw this.#lostError(e);
    }
  }

  /**
   * Once the device is gone, whatever an operation ran into (a failed map, a validation error
   * of a destroyed buffer) is DEVICE_LOST: the one code a page checks to make a new engine.
   */
  #lostError(e) {
    const err = toWebjitError(e);
    if ([ErrorCode.DEVICE_LOST, ErrorCode.DISPOSED, ErrorCode.ABORTED, ErrorCode.INVALID_ARGUMENT].includes(err.code)) return err;
    let lost = this.#lost;
    if (!lost && this.#engine && !this.#freeing) {
      try {
        lost = parse(this.#engine.info()).device_lost;
      } catch {
        lost = null;
      }
    }
    if (!lost) return err;
    return new WebjitError(ErrorCode.DEVICE_LOST, `the GPU device was lost (${lost}); create a new engine (while running: ${err.message})`);
  }
}

const METHODS = new Set([
  'info', 'loadModel', 'loadEmbedder', 'modelInfo', 'tokenize', 'detokenize', 'chatPrompt', 'chatPromptIds', 'start', 'logits',
  'perplexity', 'next', 'stop', 'reset', 'embed', 'embedderTokenize', 'neighborhoodAttention', 'blockSparseAttention',
  'denseAttention', 'tune', 'exportTuning', 'importTuning', 'releaseMemory', 'disposeHandle', 'dispose',
]);
