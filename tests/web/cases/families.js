// Browser cases of the decoder families (llama 3, SmolLM2, Mistral, Qwen2, Qwen3, Phi-3,
// Gemma 2) on the tiny random-weight GGUFs of scripts/make_tiny_families.py, against the native
// build of the engine run by tests/web/native.mjs when the suite starts (prompt ids, greedy
// tokens, top logits), llama.cpp's recorded greedy tokens where tests/data/families has them,
// and jinja2's renders of each file's chat template; and the chat-template API (a caller's
// template, a model without one, the model-free chatPrompt).

import { Engine, MODELS, TINY, checkGreedy, collect, expectCode, fail } from './common.js';
import { builtinChatTemplate, chatPrompt } from '/pkg/index.js';

// The browser (SwiftShader) and the native build (lavapipe) run the same kernels on different
// Vulkan/WebGPU implementations (and kernel configs chosen per device): logits agree to f32
// rounding, about 1e-4 to 1e-3 of their size (these random-weight models' logits reach ~50).
// Past a step where the native top-2 gap is below GAP the two may pick different tokens
// legitimately, so ids are compared up to and including that step's logits only.
const LOGIT_TOL = 0.05;
const LOGIT_RTOL = 2e-3;
const GAP = 0.05;

/** Compares generated tokens ({id, top}) with the native run; returns {compared, worst}. */
function checkNative(name, toks, native) {
  if (toks.length !== native.tokens.length) fail(`${name}: ${toks.length} tokens, native ${native.tokens.length}`);
  let compared = 0;
  let worst = 0;
  for (let i = 0; i < toks.length; i++) {
    const want = native.top_logits[i];
    const tol = Math.max(LOGIT_TOL, LOGIT_RTOL * Math.abs(want[0][1]));
    compared++;
    want.forEach(([, wl], k) => {
      const got = toks[i].top[k];
      const d = got ? Math.abs(got[1] - wl) : Infinity;
      worst = Math.max(worst, d);
      if (!(d <= tol)) fail(`${name} step ${i}: rank-${k} logit ${got && got[1]} vs native ${wl} (ours ${JSON.stringify(toks[i].top)}, native ${JSON.stringify(want)})`);
    });
    if (toks[i].id !== native.tokens[i]) fail(`${name} step ${i}: token ${toks[i].id}, native ${native.tokens[i]} (native top ${JSON.stringify(want)})`);
    if (want[0][1] - want[1][1] < GAP) break;
  }
  return { compared, worst };
}

/** ids equal, or fail naming both. */
function sameIds(what, got, want) {
  const g = Array.from(got);
  if (JSON.stringify(g) !== JSON.stringify(want)) fail(`${what}: ${JSON.stringify(g)} != ${JSON.stringify(want)}`);
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
/** strftime('%d %b %Y') of a date (UTC), as templates such as Llama 3.2's write today's date. */
function dmy(d) {
  return `${String(d.getUTCDate()).padStart(2, '0')} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()}`;
}

/** The model's chatPrompt against each jinja2 render of its template. The references were
 *  rendered on refs.date; the browser renders today's date (`strftime_now`). */
async function checkTemplate(name, m, t) {
  const refDate = dmy(new Date(`${t.date}T00:00:00Z`));
  const today = dmy(new Date());
  for (const c of t.cases) {
    const got = await m.chatPrompt(c.messages, { addGenerationPrompt: c.addGenerationPrompt });
    const want = c.expected.replaceAll(refDate, today);
    if (got !== want) fail(`${name}: chatPrompt of ${c.conversation} (generation prompt ${c.addGenerationPrompt}) in ${t.name}: ${JSON.stringify(got)} != jinja2 ${JSON.stringify(want)}`);
  }
  return t.cases.length;
}

async function familyCase({ log, params: p }) {
  const name = `tiny-${p.family}`;
  const e = await Engine.create();
  try {
    const m = await e.loadModel(`${MODELS}/${name}.gguf`, { maxContext: p.context });
    if (m.info.chat_template !== 'gguf') fail(`${name}: info.chat_template ${m.info.chat_template}, the file carries one`);
    // The tokenizer (SentencePiece or byte-level BPE) gives the native ids.
    sameIds(`${name}: ids of ${JSON.stringify(p.prompt)} vs native`, await m.tokenize(p.prompt, { addBos: true }), p.native.prompt_tokens);
    const toks = await collect(m.generateTokens(p.native.prompt_tokens, { maxTokens: p.steps }));
    const { compared, worst } = checkNative(name, toks, p.native);
    // llama.cpp's greedy tokens of the same prompt, where recorded (the golden rule).
    let llama = 'no llama.cpp record';
    if (p.llama) {
      sameIds(`${name}: ids vs llama.cpp`, p.native.prompt_tokens, p.llama.prompt_ids);
      llama = `llama.cpp: ${checkGreedy(name, toks, p.llama.greedy)} steps`;
    }
    const n = await checkTemplate(name, m, p.templates);
    log(`  ${m.info.architecture}: ${p.native.prompt_tokens.length} prompt ids = native; ${compared} of ${toks.length} greedy steps = native (top-5 logits within ${worst.toExponential(1)}); ${llama}; ${n} chat prompts = jinja2 (${p.templates.name})`);
    await m.dispose();
    return { compared, worst };
  } finally {
    await e.dispose();
  }
}

export const cases = {
  family_llama3: familyCase,
  family_smollm2: familyCase,
  family_mistral: familyCase,
  family_qwen2: familyCase,
  family_qwen3: familyCase,
  family_phi3: familyCase,
  family_gemma2: familyCase,

  /** chat() writes the prompt with the model's own template (a byte-level BPE model): the
   *  text is jinja2's, the ids the native tokenizer's, the answer the native greedy one. A
   *  caller's template, the model-free chatPrompt, and the CHAT_TEMPLATE errors. */
  async family_chat({ log, params: p }) {
    const name = `tiny-${p.family}`;
    const e = await Engine.create();
    try {
      const m = await e.loadModel(`${MODELS}/${name}.gguf`, { maxContext: p.context });
      const text = await m.chatPrompt(p.messages);
      if (text !== p.expected) fail(`${name}: chatPrompt ${JSON.stringify(text)} != jinja2 ${JSON.stringify(p.expected)}`);
      sameIds(`${name}: chatPromptIds vs native`, await m.chatPromptIds(p.messages), p.native.prompt_tokens);
      let answer = '';
      for await (const piece of m.chat(p.messages, { maxTokens: p.steps })) answer += piece;
      const st = m.lastStats;
      if (st.promptTokens !== p.native.prompt_tokens.length) fail(`${name}: chat() read ${st.promptTokens} prompt tokens, native ${p.native.prompt_tokens.length}`);
      // chat() reports ids only: compare them with the native tokens up to the first near tie.
      let compared = 0;
      for (let i = 0; i < st.tokens.length; i++) {
        compared++;
        if (st.tokens[i] !== p.native.tokens[i]) fail(`${name}: chat() token ${i} ${st.tokens[i]}, native ${p.native.tokens[i]}`);
        const top = p.native.top_logits[i];
        if (top[0][1] - top[1][1] < GAP) break;
      }
      if (st.reason === 'max_tokens' && st.tokens.length !== p.steps) fail(`${name}: chat() gave ${st.tokens.length} tokens`);

      // A caller's template (ChatML, rendered by jinja2 in tests/data/chat_templates) and the
      // model-free chatPrompt give the same text.
      const refs = await (await fetch('/data/chat_templates/refs.json')).json();
      const chatml = refs.templates.chatml.source;
      const want = refs.cases.find((c) => c.template === 'chatml' && c.conversation === 'system_user' && c.add_generation_prompt).expected;
      const msgs = refs.conversations.system_user;
      const own = await m.chatPrompt(msgs, { template: chatml });
      if (own !== want) fail(`chatPrompt({template: ChatML}) ${JSON.stringify(own)} != jinja2 ${JSON.stringify(want)}`);
      const free = await chatPrompt(msgs, chatml);
      if (free !== want) fail(`model-free chatPrompt ${JSON.stringify(free)} != jinja2 ${JSON.stringify(want)}`);
      // The built-in template is for gemma3 files only (the gemma case checks its ids
      // against llama.cpp's).
      if (typeof (await builtinChatTemplate('gemma3')) !== 'string' || (await builtinChatTemplate('llama')) !== null) fail('builtinChatTemplate');

      // Errors: a template that does not parse, one that refuses the messages, a model without
      // one (tiny-llama.gguf carries none and is not gemma3).
      await expectCode(m.chatPrompt(msgs, { template: '{% for m in messages %}' }), 'CHAT_TEMPLATE', 'a template that does not parse');
      await expectCode(chatPrompt(msgs, '{{ raise_exception("no system role") }}'), 'CHAT_TEMPLATE', 'a template that raises');
      await expectCode(chatPrompt('hi', chatml), 'INVALID_ARGUMENT', 'messages that are not a list');
      const plain = await e.loadModel(TINY);
      if (plain.info.chat_template !== 'none') fail(`tiny-llama: info.chat_template ${plain.info.chat_template}`);
      const err = await expectCode(plain.chatPrompt(msgs), 'CHAT_TEMPLATE', 'a model without a template');
      if (!/template/.test(err.message) || !/\{template\}/.test(err.message)) fail(`the missing-template message does not say how to pass one: ${err.message}`);
      await expectCode(collect(plain.chat(msgs, { maxTokens: 1 })), 'CHAT_TEMPLATE', 'chat() on a model without a template');
      const withOne = await plain.chatPrompt(msgs, { template: chatml });
      if (withOne !== want) fail(`tiny-llama with a caller's template: ${JSON.stringify(withOne)}`);
      await plain.dispose();
      log(`  ${name}: chat prompt = jinja2 (${p.template}), ${p.native.prompt_tokens.length} ids = native, ${compared} answer tokens = native ${JSON.stringify(answer)}; caller template, model-free chatPrompt and CHAT_TEMPLATE errors checked`);
      await m.dispose();
      return { compared };
    } finally {
      await e.dispose();
    }
  },
};
