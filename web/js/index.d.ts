// Type declarations of the `webjit` npm package.

// The OpenAI-style chat API's types (engine.chat.completions): openai.d.ts.
import type { ChatCompletion, ChatCompletionRequest, ChatCompletionStream } from './openai.js';
export * from './openai.js';


/** Stable error codes. Engine errors may carry further codes (e.g. SHAPE, BAD_TOKENIZER). */
export type ErrorCodeName =
  | 'WEBGPU_UNAVAILABLE'
  | 'BAD_MODEL_FILE'
  | 'UNSUPPORTED_TENSOR_TYPE'
  | 'UNSUPPORTED_MODEL'
  | 'UNSUPPORTED_ARCHITECTURE'
  | 'CHAT_TEMPLATE'
  | 'OUT_OF_MEMORY'
  | 'DEVICE_LOST'
  | 'ABORTED'
  | 'QUOTA_EXCEEDED'
  | 'INVALID_ARGUMENT'
  | 'NETWORK'
  | 'DISPOSED'
  | 'BUSY'
  | 'INVALID_STATE'
  | 'WORKER'
  | 'INTERNAL';

export declare const ErrorCode: Readonly<{ [K in ErrorCodeName]: K }>;

/** Every error the package throws or rejects with. */
export declare class WebjitError extends Error {
  readonly code: ErrorCodeName | string;
  /** HTTP status, for NETWORK errors that got a response. */
  readonly status?: number;
  readonly url?: string;
  /** The engine's finer code, on errors the engine raised (e.g. LOAD_TRUNCATED under
   *  BAD_MODEL_FILE): for bug reports. */
  readonly detail?: string;
  constructor(code: string, message: string, extra?: object);
}

/** Progress of `TextModel.perplexity` after one chunk. */
export interface PerplexityChunk {
  /** 1-based. */
  chunk: number;
  chunks: number;
  /** Seconds this chunk took. */
  seconds: number;
  /** Perplexity over the chunks so far. */
  ppl: number;
  /** Tokens scored so far. */
  scored: number;
}

/** `TextModel.perplexity`'s result (the fields of `webjit perplexity --json`). */
export interface PerplexityReport {
  ppl: number;
  /** llama.cpp's +/- estimate. */
  ppl_err: number;
  /** Mean negative log-likelihood, nats per token. */
  mean_nll: number;
  n_ctx: number;
  chunks: number;
  /** Tokens of the whole text, BOS included when the model adds it. */
  text_tokens: number;
  scored: number;
  seconds: number;
  /** Perplexity over the first 1, 2, ... chunks. */
  running_ppl: number[];
}

export interface EngineOptions {
  powerPreference?: 'high-performance' | 'low-power';
  /** Run the engine in the package's Web Worker (default true where Worker exists). */
  worker?: boolean;
  /**
   * Where the package's worker.js is (default: next to the package's modules; bundlers find it).
   * A cross-origin URL is started from a same-origin blob and needs CORS headers.
   */
  workerUrl?: string | URL;
  /** Where wasm/webjit_web_bg.wasm is (default: next to core.js, i.e. the package's own origin). */
  wasmUrl?: string | URL;
  /** Where tuning records persist: IndexedDB (default; loaded at create) or nowhere. */
  tuningStore?: 'indexeddb' | 'none';
  /**
   * While a result is read back, send empty queue submits so the browser's GPU process
   * notices the finished work sooner (Chromium otherwise checks on a timer: about 1-2 ms per
   * result). Default: on, except on CPU adapters (SwiftShader), whose work takes far longer.
   */
  readbackNudge?: boolean;
}

export interface DeviceLostInfo {
  reason: 'destroyed' | 'unknown';
  message: string;
}

export interface EngineInfo {
  /** The adapter's name: its description, or where the browser gives none, its vendor and
   *  architecture (e.g. 'google swiftshader'). */
  adapter: string;
  backend: string;
  /** Whether readbacks nudge the browser (EngineOptions.readbackNudge, resolved). */
  readback_nudge: boolean;
  /** `subgroups`: the subgroup sizes the device guarantees, or null without subgroups. */
  features: { shader_f16: boolean; timestamp_query: boolean; subgroups: { min_size: number; max_size: number } | null };
  limits: Record<string, number>;
  fingerprint: string;
  /** GPU memory held by the engine: bytes in use, bytes pooled for reuse, and how many
   *  buffers were created and reused since create. */
  memory: { live_bytes: number; pooled_bytes: number; buffers_created: number; buffers_reused: number };
  tuning?: { records: number };
  /** Why the GPU device was lost, or null while it lives (see Engine.lost). */
  device_lost: string | null;
  /** Size of the wasm instance's linear memory (it never shrinks). */
  wasm_memory_bytes: number;
  version: string;
}

export interface LoadProgress {
  type: 'progress';
  loadedBytes: number;
  /** File size when known (Content-Length, Blob size, the `totalBytes` option), else 0. */
  totalBytes: number;
  /** loadedBytes / totalBytes (0 to 1), or null while the size is unknown. */
  fraction: number | null;
  tensorsReady: number;
  nTensors: number;
  layersReady: number;
  nLayers: number;
  /** Layers the streamed prompt has gone through (loads with `prompt`). */
  layersPrefilled?: number;
  phase: 'header' | 'weights' | 'done';
  fromCache: boolean;
  /** Range requests made after dropped connections so far. */
  resumes: number;
  wasmMemoryBytes: number;
  peakWasmMemoryBytes: number;
}

/** How a weights file arrived (`TextModel.load`, `Embedder.load`). */
export interface LoadInfo {
  /** The URL read (a Response's URL), a File's name, or '' (a Blob, buffer or stream). */
  name: string;
  totalBytes: number;
  /** Read from the Cache API or OPFS copy (no network). */
  fromCache: boolean;
  /** Stored for the next load by this one. */
  cached: boolean;
  resumes: number;
  /** The wasm memory's size at its largest during the load (it never shrinks): the file
   *  streams onto the GPU, so this stays far below the file's size. */
  peakWasmMemoryBytes: number;
  /** Why the file could not be stored: 'QUOTA_EXCEEDED', or a sentence. */
  cacheError?: string;
  /** The server's ETag / Last-Modified of the file (recorded with an OPFS copy). */
  etag?: string;
  lastModified?: string;
  /** How an OPFS copy was written: a sync access handle (in the package's worker) or
   *  createWritable (in the page's thread). */
  cacheWriter?: 'sync-access-handle' | 'writable';
}

/** Anything a model can be read from. Strings are URLs, resolved against the page. */
export type ModelSource = string | URL | Blob | Response | ReadableStream<Uint8Array> | ArrayBuffer | ArrayBufferView;

export type CacheKind = 'none' | 'cache-api' | 'opfs';

export type KvCacheMode = 'f16' | 'f32' | 'q8_0' | 'q4_0' | 'kivi2';

export interface LoadModelOptions {
  onProgress?: (p: LoadProgress) => void;
  /** Aborting rejects with code ABORTED, frees what was uploaded; the engine stays usable. */
  signal?: AbortSignal;
  /** Where a URL's file is kept for the next load (Blob, buffer and stream sources are never
   *  stored). 'cache-api': the Cache API (cache 'webjit-models-v1'). 'opfs': the origin private
   *  file system (folder 'webjit-models-v1'), written as the bytes stream in and kept only
   *  once the whole file arrived and the engine accepted it; a later load of the same URL
   *  reads it without the network. Default 'none'. A failure to store (e.g. QUOTA_EXCEEDED)
   *  does not fail the load: see `TextModel.load.cacheError`. */
  cache?: CacheKind;
  /** KV-cache length of global-attention layers (default 2048). */
  maxContext?: number;
  /** KV-cache format: 'f16' (default; 'f32' where the adapter has no shader-f16), 'f32', or
   *  llama.cpp's 'q8_0' / 'q4_0' (blocks of 32 values with an f16 scale, ~1.9x / ~3.6x less
   *  memory than f16), or 'kivi2' (KIVI: 2-bit keys per channel over groups of 128 tokens,
   *  2-bit values per token over runs of 32 channels, the newest tokens in f16; ~5.8x less
   *  memory than f16 on the global layers at 32k context; sliding-window layers keep f16).
   *  Another name fails with INVALID_ARGUMENT. `info.kv_cache_bytes` tells the size. */
  kvCache?: KvCacheMode;
  /** The file's size in bytes, for a source that does not tell it (a server without
   *  Content-Length or that compresses on the fly, a ReadableStream): gives progress events a
   *  `fraction`. */
  totalBytes?: number;
  /** 'gguf', or '' to detect from the first bytes (default). */
  format?: 'gguf' | '';
  /** A prompt to prefill layer by layer while the file streams in (control tokens parsed; the
   *  BOS token added unless the text starts with it, as a chat template may write it);
   *  `generate(null, ...)` then starts from it. */
  prompt?: string;
  /** The same as token ids. */
  promptIds?: ArrayLike<number>;
}

export interface GenerateOptions {
  maxTokens?: number;
  /** 0 (default) = greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  repeatPenalty?: number;
  seed?: number;
  /** Aborting ends the iteration quietly (stats.reason 'stopped'). */
  signal?: AbortSignal;
  /** Keep the conversation so far instead of starting fresh (default false). */
  continue?: boolean;
  /** Prepend the BOS token to a text prompt (default: when starting fresh). */
  addBos?: boolean;
  onDone?: (stats: GenerateStats) => void;
}

export interface GeneratedToken {
  id: number;
  /** Newly completed UTF-8 text (may be '' inside a multi-token character). */
  text: string;
  /** The 5 largest [id, logit] pairs of this step. */
  top: [number, number][];
}

export interface GenerateStats {
  done: true;
  reason: 'eog' | 'max_tokens' | 'context' | 'stopped';
  promptTokens: number;
  /** The generated token ids. */
  tokens: number[];
  /** Text completed only at the end (bytes held back for an unfinished UTF-8 character);
   *  `generate` yields it as its last piece. */
  text: string;
  prefillMs: number;
  decodeMs: number;
  dispatchesPerToken: number;
  /** Tokens read back while the step after them was already queued on the GPU (decode runs
   *  one step ahead): all but the first and last of a run, none with a repeatPenalty. */
  queuedBehind: number;
}

export interface ChatMessage {
  /** Usually 'system', 'user' or 'assistant'; what else is accepted is up to the template
   *  (Gemma's also takes 'model'; many refuse other roles with CHAT_TEMPLATE). */
  role: string;
  content: string;
}

export interface ChatTemplateOptions {
  /** A Jinja chat template to use instead of the model's own. */
  template?: string;
  /** End with the opener of the assistant's turn (default true). */
  addGenerationPrompt?: boolean;
}

/**
 * `messages` in `template` (a Jinja chat template string, e.g. a model's
 * `tokenizer.chat_template`), without a model or an engine: the engine's renderer, the same
 * text `TextModel.chatPrompt(messages, {template})` writes for a model whose BOS/EOS texts are
 * `bosToken`/`eosToken`. For giving the first turn to `loadModel({prompt})` before the model is
 * there. Instantiates the wasm module in the calling thread on first use. Rejects with
 * CHAT_TEMPLATE when the template does not parse, fails or refuses the messages.
 */
export declare function chatPrompt(
  messages: ChatMessage[],
  template: string,
  opts?: {
    /** The text the template writes for `bos_token` (default ''; e.g. '<bos>' for Gemma). */
    bosToken?: string;
    eosToken?: string;
    addGenerationPrompt?: boolean;
    /** Where the wasm module is, when not next to the package's core.js. */
    wasmUrl?: string | URL;
  },
): Promise<string>;

/**
 * The chat template the package uses for a model of `architecture` whose GGUF has none
 * (today only 'gemma3': Gemma 3's published template), or null.
 */
export declare function builtinChatTemplate(architecture: string, opts?: { wasmUrl?: string | URL }): Promise<string | null>;

/**
 * Removes stored model files from the Cache API, OPFS or both (default), or only `url`'s.
 * Runs in the calling thread. Rejects with BUSY when a running load writes an OPFS file it
 * would remove.
 */
export declare function clearModelCache(opts?: {
  cache?: 'all' | 'cache-api' | 'opfs';
  url?: string | URL;
}): Promise<{ cacheApi: number; opfs: number }>;

export interface CachedModel {
  url: string;
  cache: 'cache-api' | 'opfs';
  /** Bytes of the stored copy. */
  size: number;
  /** When it was stored (ms since 1970; OPFS only, null for the Cache API). */
  storedAt: number | null;
}

/** Every model file stored by `cache: 'cache-api' | 'opfs'` loads of this origin. */
export declare function listCachedModels(): Promise<CachedModel[]>;

/** Whether a complete copy of `url` is stored, and its size in bytes (0 when none). */
export declare function hasModelInCache(url: string | URL): Promise<{ cacheApi: boolean; opfs: boolean; size: number }>;

/** The names of the two stores. */
export declare const MODEL_CACHES: Readonly<{ cacheApi: 'webjit-models-v1'; opfsDir: 'webjit-models-v1' }>;

export declare class TextModel {
  readonly info: {
    architecture: string;
    n_layers: number;
    vocab: number;
    d_model: number;
    n_heads: number;
    n_kv_heads: number;
    max_context: number;
    position: number;
    /** Where chatPrompt's template comes from: the GGUF ('gguf'), the package's for a file
     *  without one ('builtin:gemma3'), or nowhere ('none': pass {template}). */
    chat_template: 'gguf' | `builtin:${string}` | 'none';
    /** The KV cache format (loadModel's kvCache) and the GPU memory all layers' caches take. */
    kv_cache: KvCacheMode;
    kv_cache_bytes: number;
  };
  readonly load: LoadInfo;
  /** Final record of the last generation. */
  readonly lastStats: GenerateStats | null;
  /** Text pieces as they are generated: `for await (const piece of model.generate(p))`.
   *  `null` continues from the prompt prefilled by loadModel({prompt}). */
  generate(prompt: string | ArrayLike<number> | null, opts?: GenerateOptions): AsyncGenerator<string, void>;
  /** Token ids with their top logits. */
  generateTokens(prompt: string | ArrayLike<number> | null, opts?: GenerateOptions): AsyncGenerator<GeneratedToken, void>;
  /** The answer to `messages`, the prompt written by the model's chat template (or
   *  `opts.template`), from a fresh context. */
  chat(messages: ChatMessage[], opts?: Omit<GenerateOptions, 'continue' | 'addBos'> & { template?: string }): AsyncGenerator<string, void>;
  /** `messages` in the model's chat template (or `opts.template`). Rejects with CHAT_TEMPLATE
   *  when the model has none and none is given, or the template fails or refuses them. */
  chatPrompt(messages: ChatMessage[], opts?: ChatTemplateOptions): Promise<string>;
  /** The token ids of chatPrompt's text: the BOS token added only when the text does not
   *  already start with it (Llama 3's and Gemma's templates write it). */
  chatPromptIds(messages: ChatMessage[], opts?: ChatTemplateOptions): Promise<Uint32Array>;
  tokenize(text: string, opts?: { addBos?: boolean }): Promise<Uint32Array>;
  detokenize(ids: ArrayLike<number>): Promise<string>;
  /**
   * The logits of the token after `prompt` (text, which gets the BOS token unless
   * `addBos: false`, or token ids): `info.vocab` floats, from a fresh context that holds the
   * prompt afterwards. Rejects with BUSY while the model generates.
   */
  logits(prompt: string | ArrayLike<number>, opts?: { addBos?: boolean }): Promise<Float32Array>;
  /**
   * Perplexity of `text` as `webjit perplexity` and llama.cpp's llama-perplexity compute it
   * (chunks of `ctx` tokens, default 512 and at most the model's maxContext; BOS first; the
   * second half of each chunk scored). The text needs 2 x ctx tokens. Forgets the conversation.
   */
  perplexity(text: string, opts?: { ctx?: number; chunks?: number | null; onChunk?: (p: PerplexityChunk) => void }): Promise<PerplexityReport>;
  reset(): Promise<void>;
  /** Frees every GPU buffer of the model. */
  dispose(): Promise<void>;
}

export declare class Embedder {
  readonly dim: number;
  readonly maxSeqLen: number;
  /** How model.safetensors arrived (streamed onto the GPU like a GGUF). */
  readonly load: LoadInfo;
  /** One L2-normalized, mean-pooled vector per text. A text longer than maxSeqLen tokens is
   *  embedded from its first tokens and flagged in `truncated`; `{truncate: false}` refuses it
   *  with INVALID_ARGUMENT. */
  embed(texts: string[] | string, opts?: { truncate?: boolean }): Promise<Float32Array[] & { truncated: boolean[] }>;
  tokenize(text: string): Promise<Uint32Array>;
  dispose(): Promise<void>;
}

export interface EmbedderFiles {
  config: ModelSource;
  weights: ModelSource;
  tokenizer: ModelSource;
  sentenceBertConfig?: ModelSource;
}

export interface NeighborhoodOptions {
  /** Shape of q, k and v: [batch, heads, X(, Y(, Z)), headDim]. */
  shape: number[];
  /** Window size per axis (<= the axis length). */
  kernel: number[];
  dilation?: number[];
  causal?: boolean[];
  /** Default 1/sqrt(headDim). */
  scale?: number;
  /** Extra timed runs after the first (0: no timing). */
  repeat?: number;
}

export type BlockSelect =
  | { topK: number }
  | { threshold: number }
  | { strided: { local: number; stride: number } }
  | { fixed: { chunk: number; summary: number } };

export interface BlockSparseOptions {
  /** [batch, seq, heads, headDim] */
  qShape: [number, number, number, number];
  /** [batch, seq, kvHeads, headDim] */
  kvShape: [number, number, number, number];
  /** Tokens per block (1-D), or a [t, h, w] box. */
  block: number | [number, number, number];
  select: BlockSelect;
  /** 2-D [h, w] or 3-D [t, h, w] layout of the seq tokens (row-major). */
  grid?: [number, number] | [number, number, number];
  causal?: boolean;
  global?: boolean;
  granularity?: 'query' | 'queryBlock';
  scale?: number;
  returnSelection?: boolean;
  /** Extra timed runs after the first (0: no timing). */
  repeat?: number;
}

export interface AttentionResult {
  output: Float32Array;
  /** Milliseconds per run over `repeat` extra runs (only when opts.repeat > 0). */
  gpuMs?: number;
}

export interface BlockSparseResult extends AttentionResult {
  /** With returnSelection: the key blocks each row chose. Rows are queries (perQuery) or
   *  query blocks; row r holds counts[r] block indices at indices[r * nBlocks ...]. */
  selection?: {
    perQuery: boolean;
    /** [batch, heads, rows] (static patterns: [1, 1, rows], shared). */
    dims: number[];
    nBlocks: number;
    counts: Uint32Array;
    indices: Uint32Array;
  };
}

/** One tuned problem, as `onReport` sees it and as `TuneReport.kernels` lists it. */
export interface KernelTuneReport {
  /** Kernel family and bucketed shape, e.g. `qmatvec.q8_0|m1.n262144.k1024`. */
  tune_key: string;
  default_key: string;
  winner_key: string;
  default_us: number;
  tuned_us: number;
  speedup: number;
  /** Candidates timed (the default included). */
  tried: number;
  /** Candidates whose output disagreed with the default's. */
  rejected: number;
  /** Candidates left untried when the problem's share of the budget ran out. */
  skipped: number;
  spent_ms: number;
  /** How candidates were timed: GPU timestamp queries where the adapter exposes
   * `timestamp-query`, else the wall clock around batches (or one checked run for slow problems). */
  timer: 'gpu-timestamps' | 'wall-clock' | 'single-run';
  /** Problems in the whole run (onReport only). */
  total?: number;
}

export interface TuneReport {
  kernels: KernelTuneReport[];
  spent_ms: number;
  geomean_speedup: number;
  records?: number;
  /** Whether the records reached IndexedDB. */
  persisted?: boolean;
  /** Why they did not (an error code, e.g. QUOTA_EXCEEDED), when `persisted` is false. */
  persistError?: string;
}

export declare class Engine {
  /** Rejects with WEBGPU_UNAVAILABLE when WebGPU or an adapter is missing. */
  static create(opts?: EngineOptions): Promise<Engine>;
  /** Whether the engine runs in the package's Worker. */
  readonly worker: boolean;
  readonly importedTuning: number;
  /** Resolves once the GPU device is lost (a driver reset, the GPU process restarting,
   *  `device.destroy()`); never when dispose() ends the engine. Every call that needs the GPU
   *  then rejects with DEVICE_LOST: dispose this engine and create a new one. */
  readonly lost: Promise<DeviceLostInfo>;
  /** Calls back once when the device is lost (at once if it already is); returns an
   *  unsubscribe function. */
  onDeviceLost(callback: (info: DeviceLostInfo) => void): () => void;
  info(): Promise<EngineInfo>;
  /** OpenAI-style chat completions (as the OpenAI client and WebLLM): a `chat.completion`, or
   *  with `stream: true` an async iterable of chunks. Rejects with INVALID_STATE when no text
   *  model is loaded, INVALID_ARGUMENT for a bad request, BUSY while the model generates. */
  readonly chat: {
    readonly completions: {
      create(request: ChatCompletionRequest & { stream: true }, opts?: { signal?: AbortSignal }): Promise<ChatCompletionStream>;
      create(request: ChatCompletionRequest & { stream?: false | null }, opts?: { signal?: AbortSignal }): Promise<ChatCompletion>;
      create(request: ChatCompletionRequest, opts?: { signal?: AbortSignal }): Promise<ChatCompletion | ChatCompletionStream>;
    };
  };
  loadModel(source: ModelSource, opts?: LoadModelOptions): Promise<TextModel>;
  loadEmbedder(
    source: string | URL | EmbedderFiles,
    opts?: {
      onProgress?: (p: LoadProgress) => void;
      signal?: AbortSignal;
      cache?: CacheKind;
      maxSeqLen?: number;
      /** The weights' size when the server does not send Content-Length (for `fraction`). */
      totalBytes?: number;
    },
  ): Promise<Embedder>;
  neighborhoodAttention(q: Float32Array, k: Float32Array, v: Float32Array, opts: NeighborhoodOptions): Promise<AttentionResult>;
  blockSparseAttention(q: Float32Array, k: Float32Array, v: Float32Array, opts: BlockSparseOptions): Promise<BlockSparseResult>;
  denseAttention(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    opts: Pick<BlockSparseOptions, 'qShape' | 'kvShape' | 'causal' | 'scale'>,
  ): Promise<AttentionResult>;
  /** Tunes every kernel that a prompt step and a decode step of the text model loaded last
   *  dispatch, within the budget, and persists the winners (IndexedDB; the next Engine.create
   *  loads them). The conversation is kept; a generation in progress is stopped first.
   *  Rejects with INVALID_STATE when no text model is loaded, BUSY while a next() call runs. */
  tune(opts?: {
    budgetMs?: number;
    onReport?: (kernelReport: KernelTuneReport) => void;
    /** Also try the int8 matvec path (activations rounded to 8 bits per block of 32,
     *  dot4I8Packed): faster on some devices, results differ slightly from untuned runs. */
    int8?: boolean;
  }): Promise<TuneReport>;
  exportTuning(): Promise<string>;
  importTuning(json: string | object): Promise<void>;
  releaseMemory(): Promise<void>;
  /** Frees everything and ends the worker. */
  dispose(): Promise<void>;
}

export default Engine;
