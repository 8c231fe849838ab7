// An OpenAI-style chat API over TextModel, so code written for the OpenAI JS client or WebLLM
// ports: `engine.chat.completions.create(request)` takes the request fields those take and
// resolves with a `chat.completion` object or, with `stream: true`, an async iterable of
// `chat.completion.chunk` objects. Nothing here generates: the prompt is the model's own chat
// template (TextModel.chatPromptIds) and the tokens come from TextModel.generateTokens; this
// file translates the request, cuts the text at `stop` strings and writes the answer objects.

import { ErrorCode, WebjitError, abortedError } from './errors.js';

const WHERE = 'chat.completions.create';
const bad = (msg) => new WebjitError(ErrorCode.INVALID_ARGUMENT, `${WHERE}: ${msg}`);
const show = (v) => {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v == null) return String(v);
  try {
    return JSON.stringify(v) ?? typeof v;
  } catch {
    return typeof v;
  }
};

// Every request field this API reads. Anything else is refused: a field that changes the answer
// must never be dropped quietly. `user`, `store` and `metadata` only label a request for
// OpenAI's servers and change nothing here.
const FIELDS = [
  'model', 'messages', 'stream', 'stream_options', 'max_tokens', 'max_completion_tokens',
  'temperature', 'top_p', 'seed', 'stop', 'n', 'frequency_penalty', 'presence_penalty',
  'repetition_penalty', 'logprobs', 'top_logprobs', 'logit_bias', 'response_format', 'tools',
  'tool_choice', 'parallel_tool_calls', 'user', 'store', 'metadata', 'signal',
];
const ROLES = ['system', 'user', 'assistant'];

/** `req[key]` as a finite number in [lo, hi], or undefined when absent (undefined or null). */
function number(req, key, lo, hi) {
  const v = req[key];
  if (v == null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi) {
    throw bad(`${key} must be a number in [${lo}, ${hi}], got ${show(v)}`);
  }
  return v;
}

/** `req[key]` as an integer >= lo, or undefined when absent. */
function integer(req, key, lo) {
  const v = req[key];
  if (v == null) return undefined;
  if (!Number.isSafeInteger(v) || v < lo) throw bad(`${key} must be an integer >= ${lo}, got ${show(v)}`);
  return v;
}

/** A message's text: a string, or an array of text parts. */
function contentOf(c, at) {
  if (typeof c === 'string') return c;
  if (Array.isArray(c)) {
    return c
      .map((p, j) => {
        if (p && p.type === 'text' && typeof p.text === 'string') return p.text;
        throw bad(`${at}.content[${j}] is ${show(p?.type ?? p)}: only text parts ({type: 'text', text}) are supported (text models)`);
      })
      // Text parts joined by a newline, as vLLM does for text-only models.
      .join('\n');
  }
  throw bad(`${at}.content must be a string or an array of text parts, got ${show(c)}`);
}

/** OpenAI messages -> the {role, content} list the chat template renders. */
function messagesOf(list) {
  if (!Array.isArray(list) || list.length === 0) throw bad(`messages must be a non-empty array of {role, content}, got ${show(list)}`);
  return list.map((m, i) => {
    const at = `messages[${i}]`;
    if (!m || typeof m !== 'object' || Array.isArray(m)) throw bad(`${at} must be an object {role, content}, got ${show(m)}`);
    // OpenAI's 'developer' role is the 'system' role of newer models; templates know 'system'.
    const role = m.role === 'developer' ? 'system' : m.role;
    if (!ROLES.includes(role)) {
      throw bad(`${at}.role ${show(m.role)} is not supported: use 'system' (or 'developer'), 'user' or 'assistant' (no tool messages)`);
    }
    if (m.tool_calls != null && !(Array.isArray(m.tool_calls) && m.tool_calls.length === 0)) {
      throw bad(`${at}.tool_calls: tool calling is not supported`);
    }
    return { role, content: contentOf(m.content, at) };
  });
}

/** The request's settings, checked: {messages, stream, includeUsage, gen, stops, signal}. */
function parseRequest(req, opts) {
  if (!req || typeof req !== 'object' || Array.isArray(req)) throw bad(`the request must be an object {messages, ...}, got ${show(req)}`);
  for (const k of Object.keys(req)) {
    if (req[k] !== undefined && !FIELDS.includes(k)) throw bad(`unknown field ${k} (supported: ${FIELDS.join(', ')})`);
  }
  const messages = messagesOf(req.messages);
  if (req.stream != null && typeof req.stream !== 'boolean') throw bad(`stream must be a boolean, got ${show(req.stream)}`);
  const stream = req.stream === true;
  let includeUsage = false;
  if (req.stream_options != null) {
    const so = req.stream_options;
    if (!stream) throw bad('stream_options needs stream: true');
    if (typeof so !== 'object' || Array.isArray(so)) throw bad(`stream_options must be an object {include_usage}, got ${show(so)}`);
    for (const k of Object.keys(so)) if (k !== 'include_usage' && so[k] !== undefined) throw bad(`unknown field stream_options.${k} (supported: include_usage)`);
    if (so.include_usage != null && typeof so.include_usage !== 'boolean') throw bad(`stream_options.include_usage must be a boolean, got ${show(so.include_usage)}`);
    includeUsage = so.include_usage === true;
  }
  const n = integer(req, 'n', 1);
  if (n !== undefined && n !== 1) throw bad(`n must be 1 (one choice per request), got ${n}`);
  const maxTokens = integer(req, 'max_tokens', 1);
  const maxCompletion = integer(req, 'max_completion_tokens', 1);
  if (maxTokens !== undefined && maxCompletion !== undefined && maxTokens !== maxCompletion) {
    throw bad(`max_tokens (${maxTokens}) and max_completion_tokens (${maxCompletion}) differ: give one`);
  }
  // OpenAI's defaults: temperature 1, top_p 1.
  let temperature = number(req, 'temperature', 0, 2) ?? 1;
  const topP = number(req, 'top_p', 0, 1) ?? 1;
  // top_p 0 keeps only the most likely token: greedy (the sampler wants top_p in (0, 1]).
  if (topP === 0) temperature = 0;
  const seed = integer(req, 'seed', 0);
  if (seed !== undefined && seed > Number.MAX_SAFE_INTEGER) throw bad(`seed must be at most ${Number.MAX_SAFE_INTEGER}`);
  for (const k of ['frequency_penalty', 'presence_penalty']) {
    if (number(req, k, -2, 2)) {
      throw bad(
        `${k} is not supported (only 0): the sampler has llama.cpp's multiplicative repetition penalty, not OpenAI's additive ones; use repetition_penalty (> 0, 1 = off) instead`,
      );
    }
  }
  const rp = req.repetition_penalty;
  if (rp != null && !(typeof rp === 'number' && Number.isFinite(rp) && rp > 0)) throw bad(`repetition_penalty must be a number > 0 (1 = off), got ${show(rp)}`);
  if (req.logprobs != null && req.logprobs !== false) throw bad('logprobs is not supported (only false)');
  if (req.top_logprobs != null) throw bad('top_logprobs is not supported');
  if (req.logit_bias != null && !(typeof req.logit_bias === 'object' && Object.keys(req.logit_bias).length === 0)) {
    throw bad('logit_bias is not supported (only {})');
  }
  const rf = req.response_format;
  if (rf != null && rf.type !== 'text') throw bad(`response_format ${show(rf.type ?? rf)} is not supported (only {type: 'text'}: no constrained decoding)`);
  if (req.tools != null && !(Array.isArray(req.tools) && req.tools.length === 0)) throw bad('tools: tool calling is not supported');
  if (req.tool_choice != null && req.tool_choice !== 'none' && req.tool_choice !== 'auto') throw bad(`tool_choice ${show(req.tool_choice)} is not supported (no tools)`);
  let stops = req.stop == null ? [] : typeof req.stop === 'string' ? [req.stop] : req.stop;
  if (!Array.isArray(stops) || stops.some((s) => typeof s !== 'string' || s === '')) {
    throw bad(`stop must be a non-empty string or an array of them, got ${show(req.stop)}`);
  }
  stops = [...new Set(stops)];
  const signal = opts?.signal ?? req.signal;
  if (signal != null && !(typeof signal === 'object' && 'aborted' in signal && typeof signal.addEventListener === 'function')) {
    throw bad(`signal must be an AbortSignal, got ${show(signal)}`);
  }
  const gen = {
    maxTokens: maxTokens ?? maxCompletion,
    temperature,
    topP: topP === 0 ? 1 : topP,
    // No top-k in OpenAI's API: 0 is the sampler's widest, its 64 most likely tokens.
    topK: 0,
    repeatPenalty: rp ?? 1,
    // OpenAI samples differently each time unless a seed is given.
    seed: seed ?? Math.floor(Math.random() * 2 ** 32),
  };
  return { messages, stream, includeUsage, gen, stops, signal: signal ?? undefined };
}

/** The text model a request runs on: `model` when it is one, else the one loaded last. */
function pickModel(engine, TextModel, model) {
  if (engine._disposed) throw new WebjitError(ErrorCode.DISPOSED, 'the engine was disposed');
  if (model instanceof TextModel) {
    if (model._engine !== engine) throw bad('model is a TextModel of another engine');
    if (model._disposed) throw new WebjitError(ErrorCode.DISPOSED, `${WHERE}: the model was disposed`);
    return model;
  }
  if (model != null && typeof model !== 'string') {
    throw bad(`model must be a TextModel of this engine or a string (any string means the text model loaded last), got ${show(model)}`);
  }
  let last = null;
  // _handles keeps load order and drops disposed handles.
  for (const h of engine._handles) if (h instanceof TextModel && !h._disposed) last = h;
  if (!last) throw new WebjitError(ErrorCode.INVALID_STATE, `${WHERE}: no text model is loaded on this engine: load one with engine.loadModel(url) first`);
  return last;
}

/** The earliest start of any of `stops` in `text` at or after `from`, or -1. */
function findStop(text, stops, from) {
  let at = -1;
  for (const s of stops) {
    const i = text.indexOf(s, from);
    if (i >= 0 && (at < 0 || i < at)) at = i;
  }
  return at;
}

/** Length of the longest end of `text` that begins some stop string (held back until the
 *  next piece shows whether the stop string follows). */
function heldBack(text, stops) {
  let k = 0;
  for (const s of stops) {
    for (let n = Math.min(s.length - 1, text.length); n > k; n--) {
      if (text.endsWith(s.slice(0, n))) {
        k = n;
        break;
      }
    }
  }
  return k;
}

/**
 * The answer's text pieces as they are generated; fills `out` with {finishReason,
 * promptTokens, completionTokens} at the end. Throws ABORTED when `signal` stopped it.
 */
async function* answer(model, ids, gen, stops, signal, out) {
  const longest = Math.max(0, ...stops.map((s) => s.length));
  let text = '';
  let sent = 0;
  let count = 0;
  let cut = false;
  let stats = null;
  const onDone = (s) => (stats = s);
  for await (const t of model.generateTokens(ids, { ...gen, signal, onDone, continue: false })) {
    count++;
    if (!t.text) continue;
    // A stop string not in the text so far must end inside the new piece.
    const from = Math.max(0, text.length - longest + 1);
    text += t.text;
    const at = stops.length ? findStop(text, stops, from) : -1;
    if (at >= 0) {
      // Leaving the loop stops the generation (generateTokens' finally).
      text = text.slice(0, at);
      cut = true;
      break;
    }
    const safe = text.length - heldBack(text, stops);
    if (safe > sent) {
      yield text.slice(sent, safe);
      sent = safe;
    }
  }
  if (!cut && stats?.reason === 'stopped' && signal?.aborted) throw abortedError(signal);
  if (!cut && stats?.text) {
    // Bytes the detokenizer held back for an unfinished character come with the final record.
    const from = Math.max(0, text.length - longest + 1);
    text += stats.text;
    const at = stops.length ? findStop(text, stops, from) : -1;
    if (at >= 0) {
      text = text.slice(0, at);
      cut = true;
    }
  }
  if (text.length > sent) yield text.slice(sent);
  out.finishReason = cut || stats?.reason === 'eog' ? 'stop' : 'length';
  out.promptTokens = stats?.promptTokens ?? ids.length;
  out.completionTokens = count;
}

function randomId() {
  const b = new Uint8Array(12);
  globalThis.crypto.getRandomValues(b);
  return `chatcmpl-${Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')}`;
}

const usageOf = (o) => ({
  prompt_tokens: o.promptTokens,
  completion_tokens: o.completionTokens,
  total_tokens: o.promptTokens + o.completionTokens,
});

async function create(engine, TextModel, req, opts) {
  const r = parseRequest(req, opts);
  const model = pickModel(engine, TextModel, req.model);
  if (r.signal?.aborted) throw abortedError(r.signal);
  if (model._busy) throw new WebjitError(ErrorCode.BUSY, `${WHERE}: the model is generating: finish or stop that first`);
  const ids = await model.chatPromptIds(r.messages);
  const ctx = model.info.max_context;
  if (ids.length >= ctx) throw bad(`the prompt is ${ids.length} tokens, the model's context holds ${ctx} (loadModel's maxContext)`);
  // Without max_tokens the answer may fill the context (finish_reason 'length' there).
  const gen = { ...r.gen, maxTokens: r.gen.maxTokens ?? ctx };
  const name = typeof req.model === 'string' ? req.model : String(model.load?.name ?? '').split(/[/\\]/).pop() || model.info.architecture;
  const head = { id: randomId(), created: Math.floor(Date.now() / 1000), model: name };
  // One controller for the request's signal and the stream's `controller`.
  if (r.signal?.aborted) throw abortedError(r.signal); // aborted while the prompt was written
  const ac = new AbortController();
  const forward = () => ac.abort(r.signal.reason);
  r.signal?.addEventListener('abort', forward, { once: true });
  const unlink = () => r.signal?.removeEventListener('abort', forward);
  const out = {};

  if (!r.stream) {
    let content = '';
    try {
      for await (const piece of answer(model, ids, gen, r.stops, ac.signal, out)) content += piece;
    } finally {
      unlink();
    }
    return {
      ...head,
      object: 'chat.completion',
      choices: [{ index: 0, message: { role: 'assistant', content }, logprobs: null, finish_reason: out.finishReason }],
      usage: usageOf(out),
    };
  }

  const chunk = (delta, finish) => ({
    ...head,
    object: 'chat.completion.chunk',
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    ...(r.includeUsage ? { usage: null } : {}),
  });
  async function* chunks() {
    try {
      yield chunk({ role: 'assistant', content: '' }, null);
      for await (const piece of answer(model, ids, gen, r.stops, ac.signal, out)) yield chunk({ content: piece }, null);
      yield chunk({}, out.finishReason);
      if (r.includeUsage) yield { ...head, object: 'chat.completion.chunk', choices: [], usage: usageOf(out) };
    } finally {
      unlink();
    }
  }
  const it = chunks();
  // As the OpenAI client's Stream: `stream.controller.abort()` stops the generation.
  it.controller = ac;
  return it;
}

/** The `engine.chat` object: `{completions: {create(request, {signal}?)}}`. */
export function chatApi(engine, TextModel) {
  return Object.freeze({
    completions: Object.freeze({ create: (req, opts) => create(engine, TextModel, req, opts) }),
  });
}
