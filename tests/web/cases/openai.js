// Browser cases of the OpenAI-style chat API (engine.chat.completions.create, web/js/openai.js)
// on tiny-qwen2.gguf (random weights, its GGUF carries Qwen 2.5's chat template). The answers
// are checked against TextModel's own chat()/generateTokens() with the same sampling settings,
// the usage counts against the prompt ids and the generated tokens, the stop strings against
// the greedy text itself (so they are sure to occur); then streaming, aborts, model selection
// and the request errors.

import { Engine, MODELS, TINY, collect, expectCode, fail } from './common.js';
import { WebjitError } from '/pkg/index.js';

const QWEN = `${MODELS}/tiny-qwen2.gguf`;
const CONTEXT = 512;
const MESSAGES = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Name three colors.' },
];
// SwiftShader decodes tiny-qwen2 (a 32k vocabulary) at a few tokens per second: keep runs short.
const STEPS = 12;

const j = (x) => JSON.stringify(x);

/** TextModel.chat's answer as one string, and the stats of that generation. */
async function chatText(m, opts) {
  let s = '';
  for await (const piece of m.chat(MESSAGES, opts)) s += piece;
  return { text: s, stats: m.lastStats };
}

/** The greedy reference: TextModel.chat's answer and the text after each token. */
async function reference(m) {
  const ids = await m.chatPromptIds(MESSAGES);
  const prefix = [];
  let text = '';
  for await (const t of m.generateTokens(ids, { maxTokens: STEPS })) {
    text += t.text;
    prefix.push(text);
  }
  const stats = m.lastStats;
  const chat = await chatText(m, { maxTokens: STEPS });
  if (chat.text !== text + stats.text) fail(`chat() ${j(chat.text)} != generateTokens' text ${j(text + stats.text)}`);
  return { ids, prefix, stats, text: chat.text };
}

/** Checks a chat.completion object; returns its content. */
function checkCompletion(what, r, { model, finish, usage }) {
  if (r.object !== 'chat.completion') fail(`${what}: object ${j(r.object)}`);
  if (!/^chatcmpl-[0-9a-f]+$/.test(r.id)) fail(`${what}: id ${j(r.id)}`);
  if (!Number.isInteger(r.created) || Math.abs(r.created - Date.now() / 1000) > 600) fail(`${what}: created ${r.created}`);
  if (r.model !== model) fail(`${what}: model ${j(r.model)}, expected ${j(model)}`);
  if (r.choices?.length !== 1) fail(`${what}: ${r.choices?.length} choices`);
  const c = r.choices[0];
  if (c.index !== 0 || c.logprobs !== null || c.message?.role !== 'assistant' || typeof c.message.content !== 'string') fail(`${what}: choice ${j(c)}`);
  if (c.finish_reason !== finish) fail(`${what}: finish_reason ${j(c.finish_reason)}, expected ${j(finish)}`);
  const u = r.usage;
  if (!u || u.prompt_tokens !== usage[0] || u.completion_tokens !== usage[1] || u.total_tokens !== usage[0] + usage[1]) {
    fail(`${what}: usage ${j(u)}, expected ${usage[0]} prompt and ${usage[1]} completion tokens`);
  }
  return c.message.content;
}

/** Checks the chunks of a stream; returns the concatenated deltas. */
function checkChunks(what, chunks, { finish, usage }) {
  const id = chunks[0]?.id;
  const withUsage = usage !== undefined;
  const n = chunks.length - (withUsage ? 1 : 0);
  if (n < 2) fail(`${what}: ${chunks.length} chunks`);
  let text = '';
  chunks.forEach((c, i) => {
    if (c.object !== 'chat.completion.chunk' || c.id !== id || !/^chatcmpl-/.test(id)) fail(`${what}: chunk ${i} ${j(c)}`);
    if (i >= n) return;
    if (withUsage ? c.usage !== null : 'usage' in c) fail(`${what}: chunk ${i} usage ${j(c.usage)}`);
    const ch = c.choices?.[0];
    if (c.choices.length !== 1 || ch.index !== 0 || ch.logprobs !== null) fail(`${what}: chunk ${i} choices ${j(c.choices)}`);
    if (i === 0) {
      if (j(ch.delta) !== j({ role: 'assistant', content: '' }) || ch.finish_reason !== null) fail(`${what}: first chunk ${j(c)}`);
    } else if (i === n - 1) {
      if (j(ch.delta) !== '{}' || ch.finish_reason !== finish) fail(`${what}: last chunk ${j(c)}, expected finish_reason ${finish}`);
    } else {
      if (Object.keys(ch.delta).length !== 1 || typeof ch.delta.content !== 'string' || ch.delta.content === '' || ch.finish_reason !== null) {
        fail(`${what}: chunk ${i} ${j(c)}`);
      }
      text += ch.delta.content;
    }
  });
  if (withUsage) {
    const last = chunks[n];
    const u = last.usage;
    if (last.choices.length !== 0 || !u || u.prompt_tokens !== usage[0] || u.completion_tokens !== usage[1] || u.total_tokens !== usage[0] + usage[1]) {
      fail(`${what}: usage chunk ${j(last)}, expected ${j(usage)}`);
    }
  }
  return text;
}

export const cases = {
  /** Answers: non-streamed = streamed = TextModel.chat with the same settings; usage;
   *  finish_reason 'length' and 'stop' (stop strings cut from the greedy text); seeded sampling
   *  and repetition_penalty reach the sampler. */
  async openai_chat({ log }) {
    const e = await Engine.create();
    try {
      const create = (req, opts) => e.chat.completions.create(req, opts);
      await expectCode(create({ messages: MESSAGES }), 'INVALID_STATE', 'no text model loaded');
      const m = await e.loadModel(QWEN, { maxContext: CONTEXT });
      const ref = await reference(m);
      const P = ref.ids.length;
      const K = ref.stats.tokens.length;
      if (ref.stats.promptTokens !== P) fail(`reference read ${ref.stats.promptTokens} prompt tokens, chatPromptIds has ${P}`);
      const refFinish = ref.stats.reason === 'eog' ? 'stop' : 'length';
      if (K < 6) fail(`the greedy reference has only ${K} tokens (${ref.stats.reason}): the stop and length checks need more`);

      // Greedy, not streamed: TextModel.chat's text, the prompt ids and generated tokens.
      const greedy = { messages: MESSAGES, max_tokens: STEPS, temperature: 0 };
      const r = await create({ ...greedy, model: 'any-name' });
      const content = checkCompletion('greedy', r, { model: 'any-name', finish: refFinish, usage: [P, K] });
      if (content !== ref.text) fail(`greedy content ${j(content)} != TextModel.chat ${j(ref.text)}`);

      // Streamed: the deltas add up to the same text; include_usage adds the usage chunk.
      const withUsage = await collect(await create({ ...greedy, stream: true, stream_options: { include_usage: true } }));
      const streamed = checkChunks('stream with usage', withUsage, { finish: refFinish, usage: [P, K] });
      if (streamed !== ref.text) fail(`streamed deltas ${j(streamed)} != non-streamed ${j(ref.text)}`);

      // finish_reason 'length' at max_tokens (and max_completion_tokens), before the reference ends.
      const L = Math.min(5, K - 1);
      const short = await chatText(m, { maxTokens: L });
      const rl = await create({ messages: MESSAGES, max_tokens: L, temperature: 0 });
      if (checkCompletion('max_tokens', rl, { model: 'tiny-qwen2.gguf', finish: 'length', usage: [P, L] }) !== short.text) fail(`max_tokens ${L}: ${j(rl.choices[0].message.content)} != ${j(short.text)}`);
      // Streamed without include_usage: no usage anywhere.
      const rc = await create({ messages: MESSAGES, max_completion_tokens: L, temperature: 0, stream: true });
      if (checkChunks('max_completion_tokens', await collect(rc), { finish: 'length' }) !== short.text) fail('max_completion_tokens: other text');

      // Stop strings taken from the greedy text itself: the content ends right before the
      // first occurrence, the tokens counted are those up to the one that completes it.
      const mid = Math.ceil(K / 2);
      const stop = ref.prefix.slice(0, mid).findLast((t) => t.length > 0)?.slice(-3);
      if (!stop) fail(`no text in the first ${mid} greedy tokens: ${j(ref.prefix)}`);
      const want = ref.text.slice(0, ref.text.indexOf(stop));
      const used = ref.prefix.findIndex((t) => t.includes(stop)) + 1;
      const rs = await create({ messages: MESSAGES, max_tokens: STEPS, temperature: 0, stop, model: m });
      const got = checkCompletion(`stop ${j(stop)}`, rs, { model: 'tiny-qwen2.gguf', finish: 'stop', usage: [P, used] });
      if (got !== want) fail(`stop ${j(stop)}: ${j(got)}, expected ${j(want)} (greedy text ${j(ref.text)})`);
      const stops = ['\u0000never\u0000', stop];
      const cs = await collect(await create({ messages: MESSAGES, max_tokens: STEPS, temperature: 0, stop: stops, stream: true, stream_options: { include_usage: true } }));
      if (checkChunks(`stream stop ${j(stops)}`, cs, { finish: 'stop', usage: [P, used] }) !== want) fail(`stream stop ${j(stops)}: other text`);

      // Sampling settings reach the sampler: the same seed gives TextModel.chat's tokens with
      // the same temperature / top_p (OpenAI has no top-k: the sampler's widest, 0).
      const sampled = { messages: MESSAGES, max_tokens: 6, temperature: 1.5, top_p: 0.9, seed: 1234 };
      const s1 = (await create(sampled)).choices[0].message.content;
      const sRef = (await chatText(m, { maxTokens: 6, temperature: 1.5, topP: 0.9, topK: 0, seed: 1234 })).text;
      if (s1 !== sRef) fail(`seed 1234: ${j(s1)} != TextModel.chat ${j(sRef)}`);
      const rp = (await create({ ...greedy, max_tokens: 6, repetition_penalty: 1.5, presence_penalty: 0, frequency_penalty: 0 })).choices[0].message.content;
      const rpRef = (await chatText(m, { maxTokens: 6, repeatPenalty: 1.5 })).text;
      if (rp !== rpRef) fail(`repetition_penalty 1.5: ${j(rp)} != TextModel.chat ${j(rpRef)}`);
      log(`  ${P} prompt + ${K} greedy tokens (${ref.stats.reason}) = TextModel.chat ${j(ref.text)}; streamed ${withUsage.length} chunks; length at ${L}; stop ${j(stop)} after ${used} tokens; seeded sampling = TextModel.chat`);
      return { P, K, used };
    } finally {
      await e.dispose();
    }
  },

  /** Stopping a stream (signal, controller, break), BUSY while one runs, which model a
   *  request runs on, and the request errors. */
  async openai_control({ log }) {
    const e = await Engine.create();
    try {
      const create = (req, opts) => e.chat.completions.create(req, opts);
      const m = await e.loadModel(QWEN, { maxContext: CONTEXT });
      const greedy = { messages: MESSAGES, max_tokens: 6, temperature: 0 };
      const ref = (await create(greedy)).choices[0].message.content;

      // Aborting the signal mid-stream: the iteration rejects with ABORTED and the model stops.
      const ac = new AbortController();
      const seen = [];
      const aborted = (async () => {
        for await (const c of await create({ ...greedy, stream: true }, { signal: ac.signal })) {
          seen.push(c);
          if (seen.length === 2) ac.abort();
        }
      })();
      await expectCode(aborted, 'ABORTED', 'signal aborted mid-stream');
      if (m.lastStats?.reason !== 'stopped') fail(`after the abort: ${j(m.lastStats)}`);
      // stream.controller (as the OpenAI client's Stream has) and a signal in the request.
      const s = await create({ ...greedy, stream: true });
      await s.next();
      await s.next();
      s.controller.abort();
      await expectCode(collect(s), 'ABORTED', 'stream.controller.abort()');
      const pre = new AbortController();
      pre.abort();
      await expectCode(create({ ...greedy, signal: pre.signal }), 'ABORTED', 'a signal aborted before the request');
      // Aborted while the prompt is being written (create has returned its promise).
      const late = new AbortController();
      const p = create(greedy, { signal: late.signal });
      late.abort();
      await expectCode(p, 'ABORTED', 'non-streamed request aborted');

      // Leaving the loop stops the generation; while a stream runs, the model is BUSY.
      const busy = await create({ ...greedy, stream: true });
      await busy.next();
      await busy.next();
      await expectCode(create(greedy), 'BUSY', 'a request while a stream runs');
      for await (const c of busy) if (c) break;
      if (m.lastStats?.reason !== 'stopped') fail(`after break: ${j(m.lastStats)}`);
      const again = (await create(greedy)).choices[0].message.content;
      if (again !== ref) fail(`after the stops: ${j(again)} != ${j(ref)}`);

      // Which model: omitted or a string is the text model loaded last (tiny-llama has no chat
      // template: CHAT_TEMPLATE); a TextModel runs on it; disposing the last falls back.
      const llama = await e.loadModel(TINY);
      await expectCode(create(greedy), 'CHAT_TEMPLATE', 'the last loaded model (no template)');
      await expectCode(create({ ...greedy, model: 'qwen' }), 'CHAT_TEMPLATE', 'a string model is the last loaded');
      const byObject = await create({ ...greedy, model: m });
      if (byObject.choices[0].message.content !== ref || byObject.model !== 'tiny-qwen2.gguf') fail(`model: m after loading another: ${j(byObject)}`);
      await llama.dispose();
      if ((await create(greedy)).choices[0].message.content !== ref) fail('after disposing the last loaded model');

      // Request errors: WebjitErrors with INVALID_ARGUMENT, naming the field.
      const bad = [
        [{ messages: [] }, 'messages'],
        [{ messages: 'hi' }, 'messages'],
        [{}, 'messages'],
        [{ messages: [{ role: 'user' }] }, 'content'],
        [{ messages: [{ role: 'tool', content: 'x' }] }, 'role'],
        [{ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, 'image_url'],
        [{ ...greedy, n: 2 }, 'n must be 1'],
        [{ ...greedy, max_tokens: -1 }, 'max_tokens'],
        [{ ...greedy, max_tokens: 1.5 }, 'max_tokens'],
        [{ ...greedy, temperature: 2.5 }, 'temperature'],
        [{ ...greedy, temperature: NaN }, 'temperature'],
        [{ ...greedy, top_p: 1.2 }, 'top_p'],
        [{ ...greedy, seed: -1 }, 'seed'],
        [{ ...greedy, stop: '' }, 'stop'],
        [{ ...greedy, stop: [1] }, 'stop'],
        [{ ...greedy, frequency_penalty: 0.5 }, 'frequency_penalty'],
        [{ ...greedy, presence_penalty: -1 }, 'presence_penalty'],
        [{ ...greedy, repetition_penalty: 0 }, 'repetition_penalty'],
        [{ ...greedy, logprobs: true }, 'logprobs'],
        [{ ...greedy, response_format: { type: 'json_object' } }, 'response_format'],
        [{ ...greedy, tools: [{ type: 'function', function: { name: 'f' } }] }, 'tools'],
        [{ ...greedy, stream_options: { include_usage: true } }, 'stream_options'],
        [{ ...greedy, max_tokens: 3, max_completion_tokens: 4 }, 'max_completion_tokens'],
        [{ ...greedy, top_k: 5 }, 'unknown field top_k'],
        [{ ...greedy, model: 7 }, 'model'],
      ];
      for (const [req, word] of bad) {
        const err = await expectCode(create(req), 'INVALID_ARGUMENT', j(req));
        if (!(err instanceof WebjitError) || !err.message.includes(word)) fail(`${j(req)}: ${err.name} ${j(err.message)} does not name ${j(word)}`);
      }
      // Not a bad request: 'developer' is 'system'; text parts are joined.
      const dev = await create({ ...greedy, messages: [{ role: 'developer', content: 'You are terse.' }, { role: 'user', content: [{ type: 'text', text: 'Name three colors.' }] }] });
      if (dev.choices[0].message.content !== ref) fail(`developer role / text parts: ${j(dev.choices[0].message.content)} != ${j(ref)}`);
      await m.dispose();
      await expectCode(create(greedy), 'INVALID_STATE', 'every text model disposed');
      await e.dispose();
      await expectCode(create(greedy), 'DISPOSED', 'a disposed engine');
      log(`  aborts (signal, controller, before, non-streamed), break, BUSY, model selection and ${bad.length} bad requests checked`);
    } finally {
      await e.dispose();
    }
  },
};
