// The package's API as web/README.md uses it, typed: compiled (never run) by tests/web/types.mjs
// with `tsc --strict` against web/pkg, resolved as `webjit` through the package's exports. A
// README example that stops compiling means the types and the documented calls disagree.
// Follow the README's sections; the checks marked @ts-expect-error must stay errors.

import {
  Engine,
  ErrorCode,
  MODEL_CACHES,
  WebjitError,
  builtinChatTemplate,
  chatPrompt,
  clearModelCache,
  hasModelInCache,
  listCachedModels,
} from 'webjit';
import type {
  CachedModel,
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionStream,
  ChatMessage,
  DeviceLostInfo,
  EngineInfo,
  GenerateStats,
  GeneratedToken,
  KernelTuneReport,
  LoadInfo,
  LoadProgress,
  TextModel,
  TuneReport,
} from 'webjit';
import DefaultEngine from 'webjit';

declare const output: HTMLElement;
declare const url: string;
declare const file: File;
declare const q: Float32Array, k: Float32Array, v: Float32Array;
declare function showFallbackMessage(): void;

export async function generateText(): Promise<void> {
  const engine: Engine = await Engine.create();
  const ac = new AbortController();
  const model = await engine.loadModel('/models/gemma-3-270m-q4_k_m.gguf', {
    signal: ac.signal,
    cache: 'cache-api',
    onProgress: (p) =>
      console.log(
        `${p.fraction === null ? '?' : Math.round(p.fraction * 100)}% ` +
          `(${p.loadedBytes} of ${p.totalBytes || '?'} bytes), ` +
          `${p.layersReady}/${p.nLayers} layers (${p.phase})`,
      ),
  });
  for await (const piece of model.chat([{ role: 'user', content: 'Write a haiku about rain.' }], { maxTokens: 64 })) {
    output.textContent += piece;
  }
  const stats: GenerateStats | null = model.lastStats;
  if (stats) console.log(stats.reason, stats.promptTokens, stats.tokens.length, stats.prefillMs, stats.decodeMs);

  const stop = new AbortController();
  for await (const piece of model.generate('The sea at night is', { temperature: 0.7, topK: 40, seed: 1, signal: stop.signal })) {
    output.textContent += piece;
  }
  for await (const t of model.generateTokens('2 + 2 =', { maxTokens: 4 })) console.log(t.id, t.top);
  const first: GeneratedToken | undefined = (await model.generateTokens([1, 2, 3], { topP: 0.9, repeatPenalty: 1.1 }).next()).value || undefined;
  console.log(first?.text);
  await model.dispose();

  // Sources and the load options.
  await engine.loadModel(file, { maxContext: 1024, format: 'gguf' });
  await engine.loadModel(new URL(url), { totalBytes: 1 << 20, format: '' });
  await engine.loadModel(await fetch(url));
  await engine.loadModel((await fetch(url)).body!, { totalBytes: 1 << 20 });
  await engine.loadModel(new ArrayBuffer(8));
  await engine.loadModel(new Uint8Array(8));
  const load: LoadInfo = (await engine.loadModel(url, { cache: 'opfs' })).load;
  console.log(load.fromCache, load.cached, load.cacheError, load.etag, load.name);

  // A prompt prefilled while the file streams in.
  const prefilled = await engine.loadModel(url, { prompt: 'The sea at night is' });
  for await (const piece of prefilled.generate(null, { maxTokens: 32 })) output.textContent += piece;
  await engine.loadModel(url, { promptIds: [1, 2, 3] });
  await engine.loadModel(url, { promptIds: new Uint32Array([1, 2, 3]) });

  const template = await builtinChatTemplate('gemma3');
  const history: ChatMessage[] = [{ role: 'user', content: 'Why is the sea salty?' }];
  const m2 = await engine.loadModel(url, {
    prompt: await chatPrompt(history, template ?? '', { bosToken: '<bos>', eosToken: '<eos>' }),
    onProgress: (p: LoadProgress) => console.log(`${p.layersReady} layers in, ${p.layersPrefilled} read the prompt`),
  });
  let answer = '';
  for await (const piece of m2.generate(null, { maxTokens: 128 })) answer += piece;
  history.push({ role: 'assistant', content: answer }, { role: 'user', content: 'And the Dead Sea?' });
  for await (const piece of m2.chat(history)) output.textContent += piece;
  for await (const piece of m2.generate('more', { continue: true, addBos: false, onDone: (s) => console.log(s.reason) })) output.textContent += piece;

  const logits: Float32Array = await m2.logits('The capital of France is');
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  console.log(await m2.detokenize([best]), await m2.logits([1, 2], { addBos: false }));
  const ids: Uint32Array = await m2.tokenize('Hello', { addBos: false });
  console.log(ids, m2.info.architecture, m2.info.chat_template, m2.info.max_context, m2.info.position);
  await m2.reset();
}

export async function chatTemplates(model: TextModel, plainModel: TextModel): Promise<void> {
  const messages = [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: 'What is 2+2?' },
  ];
  const text: string = await model.chatPrompt(messages);
  const ids: Uint32Array = await model.chatPromptIds(messages);
  console.log(text, ids);
  for await (const piece of model.chat(messages, { maxTokens: 64 })) output.textContent += piece;
  const chatml =
    "{% for m in messages %}{{ '<|im_start|>' + m.role + '\n' + m.content + '<|im_end|>\n' }}{% endfor %}" +
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
  for await (const piece of model.chat(messages, { template: chatml })) output.textContent += piece;
  await model.chatPrompt(messages, { template: chatml, addGenerationPrompt: false });
  try {
    await plainModel.chatPrompt(messages);
  } catch (e) {
    if (e instanceof WebjitError && e.code === ErrorCode.CHAT_TEMPLATE) console.log(e.message);
  }
  // @ts-expect-error chat() starts fresh: `continue` is not one of its options.
  model.chat(messages, { continue: true });
}

export async function openaiApi(signal: AbortSignal): Promise<void> {
  const engine = await Engine.create();
  const model = await engine.loadModel('/models/qwen2.5-0.5b-instruct-q4_k_m.gguf');
  const messages = [
    { role: 'system' as const, content: 'You are terse.' },
    { role: 'user' as const, content: 'What is 2+2?' },
  ];
  const r: ChatCompletion = await engine.chat.completions.create({
    model: 'qwen',
    messages,
    max_tokens: 64,
    temperature: 0.7,
    top_p: 0.9,
    seed: 42,
    stop: ['\n\n'],
  });
  console.log(r.choices[0].message.content, r.choices[0].finish_reason, r.usage.total_tokens);
  const stream: ChatCompletionStream = await engine.chat.completions.create(
    { messages, stream: true, stream_options: { include_usage: true } },
    { signal },
  );
  for await (const chunk of stream) output.textContent += chunk.choices[0]?.delta.content ?? '';
  stream.controller.abort();
  const again = await engine.chat.completions.create({ messages, stream: false, model, max_completion_tokens: 8, repetition_penalty: 1.1 });
  console.log(again.id, again.created, again.model);
  for await (const chunk of await engine.chat.completions.create({ messages, stream: true })) {
    const c: ChatCompletionChunk = chunk;
    console.log(c.usage?.prompt_tokens, c.choices[0]?.finish_reason);
  }
  const either = await engine.chat.completions.create({ messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }], stream: Math.random() > 0.5 });
  if ('controller' in either) either.controller.abort();
  // @ts-expect-error a streamed answer is no chat.completion.
  const wrong: ChatCompletion = await engine.chat.completions.create({ messages, stream: true });
  console.log(wrong);
}

export async function caches(engine: Engine): Promise<void> {
  const model = await engine.loadModel(url, { cache: 'opfs' });
  console.log(model.load.fromCache, model.load.cached, model.load.cacheError);
  const removed: { cacheApi: number; opfs: number } = await clearModelCache({ cache: 'opfs', url });
  await clearModelCache();
  console.log(removed, MODEL_CACHES.cacheApi, MODEL_CACHES.opfsDir);
  for (const m of await listCachedModels()) console.log(m.url, m.cache, m.size, m.storedAt);
  const list: CachedModel[] = await listCachedModels();
  const { cacheApi, opfs, size } = await hasModelInCache(url);
  console.log(list, cacheApi, opfs, size);
}

export async function embeddings(engine: Engine, longArticle: string, title: string): Promise<void> {
  const embedder = await engine.loadEmbedder('/models/all-MiniLM-L6-v2/', {
    onProgress: (p) => console.log(p.fraction),
    cache: 'cache-api',
    maxSeqLen: 128,
    totalBytes: 90868376,
    signal: new AbortController().signal,
  });
  const [a, b] = await embedder.embed(['A man is eating food.', 'A man eats a meal.']);
  let cos = 0;
  for (let i = 0; i < a.length; i++) cos += a[i] * b[i];
  console.log(cos, embedder.load.peakWasmMemoryBytes, embedder.dim);
  const vecs = await embedder.embed([longArticle, title]);
  if (vecs.truncated[0]) console.warn(`only the first ${embedder.maxSeqLen} tokens were embedded`);
  await embedder.embed([longArticle], { truncate: false });
  await embedder.embed('one text');
  await engine.loadEmbedder({ config: '/c.json', weights: file, tokenizer: new URL(url), sentenceBertConfig: '/s.json' });
  console.log(await embedder.tokenize('hi'));
  await embedder.dispose();
}

export async function attention(engine: Engine): Promise<void> {
  const { output: out } = await engine.neighborhoodAttention(q, k, v, {
    shape: [1, 4, 32, 32, 64],
    kernel: [7, 7],
    dilation: [1, 2],
    causal: [false, false],
  });
  console.log(out.length);
  const r = await engine.blockSparseAttention(q, k, v, {
    qShape: [1, 4096, 8, 64],
    kvShape: [1, 4096, 2, 64],
    block: 128,
    select: { topK: 4 },
    causal: true,
    returnSelection: true,
    repeat: 10,
  });
  console.log(r.gpuMs, r.selection?.counts);
  await engine.denseAttention(q, k, v, { qShape: [1, 16, 2, 8], kvShape: [1, 16, 2, 8], causal: true });
}

export async function tuning(engine: Engine): Promise<void> {
  await engine.loadModel(url);
  const report: TuneReport = await engine.tune({
    budgetMs: 5000,
    onReport: (kr: KernelTuneReport) => console.log(kr.tune_key, kr.speedup),
    int8: true,
  });
  console.log(report.geomean_speedup, report.persisted);
  const json: string = await engine.exportTuning();
  await engine.importTuning(json);
  await engine.importTuning(JSON.parse(json) as object);
  await engine.releaseMemory();
}

export async function options(): Promise<void> {
  const engine = await Engine.create({ readbackNudge: false });
  const info: EngineInfo = await engine.info();
  console.log(info.readback_nudge, info.adapter, info.memory.live_bytes, info.wasm_memory_bytes, info.device_lost);
  await Engine.create({
    powerPreference: 'low-power',
    worker: false,
    workerUrl: new URL('./worker.js', import.meta.url),
    wasmUrl: '/pkg/wasm/webjit_web_bg.wasm',
    tuningStore: 'none',
  });
  console.log(engine.worker, engine.importedTuning);
  const e2 = await DefaultEngine.create();
  await e2.dispose();
  // @ts-expect-error not a power preference.
  await Engine.create({ powerPreference: 'fast' });
}

export async function errors(): Promise<void> {
  try {
    await Engine.create();
  } catch (e) {
    if ((e as WebjitError).code === 'WEBGPU_UNAVAILABLE') showFallbackMessage();
    else throw e;
  }
  try {
    await Engine.create();
  } catch (e) {
    if (e instanceof WebjitError) console.log(e.code, e.message, e.status, e.url, e.detail);
  }
  const err = new WebjitError('NETWORK', 'HTTP 404', { status: 404 });
  console.log(err.code satisfies string);
}

export async function deviceLost(): Promise<void> {
  let engine = await Engine.create();
  const off: () => void = engine.onDeviceLost(async ({ reason, message }) => {
    console.warn('GPU lost:', reason, message);
    await engine.dispose();
    engine = await Engine.create();
  });
  off();
  const info: DeviceLostInfo = await engine.lost;
  console.log(info.reason === 'destroyed' || info.reason === 'unknown');
}

export async function plainScript(): Promise<void> {
  const engine = await Engine.create();
  const model = await engine.loadModel('./gemma-3-270m-q4_k_m.gguf', {
    onProgress: (p) => (document.title = `${Math.round((100 * p.loadedBytes) / p.totalBytes)}%`),
  });
  for await (const piece of model.generate('Once upon a time', { maxTokens: 32 })) {
    document.body.append(piece);
  }
}
