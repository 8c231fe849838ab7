// The native engine's answers for the browser cases of the decoder families, computed when the
// suite runs (not recorded): `webjit generate --json` (the CLI, target/release/webjit, or
// WEBJIT_CLI) on the same tiny GGUF, so a browser case can compare its prompt ids, greedy
// tokens and top logits with the native build of the same engine. Also the jinja2 reference
// renders (tests/data/chat_templates/refs.json) of the template each tiny GGUF carries.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { modelDir } from './server.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
export const CLI = process.env.WEBJIT_CLI || path.join(ROOT, 'target', 'release', 'webjit');

/** The tiny GGUFs of scripts/make_tiny_families.py (family -> its chat template file). */
export const FAMILIES = ['llama3', 'smollm2', 'mistral', 'qwen2', 'qwen3', 'phi3', 'gemma2'];
/** The family whose chat() the `family_chat` case checks (a byte-level BPE tokenizer). */
export const CHAT_FAMILY = 'qwen2';
export const PROMPT = 'The quick brown fox jumps over the lazy dog.';
/** Greedy steps compared per family (SwiftShader decodes these tiny models quickly). */
export const STEPS = 12;
/** The KV cache of both runs (the native tests' n_ctx). */
export const CONTEXT = 512;

/** `webjit generate --json` on tiny-<family>.gguf: {prompt_tokens, tokens, top_logits,
 *  kv_cache, kv_cache_bytes}; `kvCache` picks the KV cache format (--kv-cache). */
export function nativeGenerate(family, { prompt, promptIds, maxTokens, kvCache }) {
  const model = path.join(modelDir(), `tiny-${family}.gguf`);
  if (!fs.existsSync(model)) throw new Error(`${model} is missing: run \`make models\``);
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run \`cargo build --release -p webjit-cli\``);
  const args = ['generate', '--model', model, '--max-tokens', String(maxTokens), '--max-context', String(CONTEXT), '--json'];
  if (promptIds) args.push('--prompt-ids', promptIds.join(','));
  else args.push('--prompt', prompt);
  if (kvCache) args.push('--kv-cache', kvCache);
  const r = spawnSync(CLI, args, {
    encoding: 'utf8',
    timeout: 300000,
    env: { XDG_RUNTIME_DIR: '/tmp', ...process.env },
  });
  if (r.status !== 0) throw new Error(`${CLI} ${args.join(' ')}: exit ${r.status}\n${(r.stderr || '').slice(-2000)}`);
  const line = r.stdout.trim().split('\n').pop();
  const out = JSON.parse(line);
  return { prompt_tokens: out.prompt_tokens, tokens: out.tokens, top_logits: out.top_logits, kv_cache: out.kv_cache, kv_cache_bytes: out.kv_cache_bytes };
}

/** Params of the `kv_cache_q8_0` case: the native greedy run of tiny-llama.gguf with a q8_0
 *  KV cache. */
export function kvCacheParams() {
  const native = nativeGenerate('llama', { prompt: PROMPT, maxTokens: STEPS, kvCache: 'q8_0' });
  return { steps: STEPS, context: CONTEXT, native };
}

/** Params of the `kv_cache_kivi2` case: the native greedy run of tiny-llama.gguf with a kivi2
 *  KV cache over a prompt of ~250 tokens (positions 128 and 256 complete groups). */
export function kvCacheKiviParams() {
  const prompt = Array(7).fill(PROMPT).join(' ');
  const native = nativeGenerate('llama', { prompt, maxTokens: STEPS, kvCache: 'kivi2' });
  return { steps: STEPS, context: CONTEXT, native };
}

/** The Jinja source of a family's template, as make_tiny_families.py writes it into the GGUF. */
function templateSource(family) {
  return fs.readFileSync(path.join(ROOT, 'scripts', 'chat_templates', `${family}.jinja`), 'utf8');
}

/** The jinja2 renders of the family's template (refs.json cases without an error). */
export function templateRefs(family) {
  const refs = JSON.parse(fs.readFileSync(path.join(ROOT, 'tests', 'data', 'chat_templates', 'refs.json'), 'utf8'));
  const src = templateSource(family);
  const name = Object.keys(refs.templates).find((k) => refs.templates[k].source === src);
  if (!name) throw new Error(`scripts/chat_templates/${family}.jinja is none of the templates of tests/data/chat_templates/refs.json`);
  const cases = refs.cases
    .filter((c) => c.template === name && typeof c.expected === 'string')
    .map((c) => ({ conversation: c.conversation, messages: refs.conversations[c.conversation], addGenerationPrompt: c.add_generation_prompt, expected: c.expected }));
  return { name, date: refs.date, bos: refs.templates[name].bos, eos: refs.templates[name].eos, cases };
}

/** llama.cpp's record of the family's 'short' prompt (tests/data/families/<family>.json), or
 *  null where none is committed; a record of other bytes than the model file is an error. */
function llamaRefs(family) {
  const p = path.join(ROOT, 'tests', 'data', 'families', `${family}.json`);
  if (!fs.existsSync(p)) return null;
  const doc = JSON.parse(fs.readFileSync(p, 'utf8'));
  const sha = createHash('sha256').update(fs.readFileSync(path.join(modelDir(), `tiny-${family}.gguf`))).digest('hex');
  if (sha !== doc.gguf_sha256) throw new Error(`tiny-${family}.gguf is not the file ${p} was recorded on (rerun \`make models\`)`);
  const short = doc.prompts.find((x) => x.name === 'short');
  if (!short) throw new Error(`${p} has no 'short' prompt`);
  return { text: short.text, prompt_ids: short.prompt_ids, greedy: short.greedy };
}

/** Params of the `family_<name>` case: the native run (of llama.cpp's recorded prompt where
 *  there is one), llama.cpp's record and the template references. */
export function familyParams(family) {
  const llama = llamaRefs(family);
  const prompt = llama?.text ?? PROMPT;
  const native = nativeGenerate(family, { prompt, maxTokens: STEPS });
  return { family, prompt, steps: STEPS, context: CONTEXT, native, llama, templates: templateRefs(family) };
}

/** Params of the `family_chat` case: a conversation rendered by jinja2, then the native ids
 *  and greedy tokens of that text. */
export function chatParams() {
  const t = templateRefs(CHAT_FAMILY);
  const c = t.cases.find((x) => x.conversation === 'system_user' && x.addGenerationPrompt);
  if (!c) throw new Error(`no system_user reference for ${t.name}`);
  const native = nativeGenerate(CHAT_FAMILY, { prompt: c.expected, maxTokens: STEPS });
  return { family: CHAT_FAMILY, template: t.name, messages: c.messages, expected: c.expected, steps: STEPS, context: CONTEXT, native };
}

/** Params of the `perplexity` case: the first 24 KB of the perplexity corpus (make models caches
 *  it) and `webjit perplexity --json` on tiny-llama.gguf over it, ctx 64, 3 chunks. */
export function perplexityParams() {
  const corpus = path.join(process.env.WEBJIT_CACHE || path.join(process.env.HOME, '.cache', 'webjit'), 'corpus', 'sotu-2014-2016.txt');
  if (!fs.existsSync(corpus)) throw new Error(`${corpus} is missing: run \`make models\``);
  const text = fs.readFileSync(corpus, 'utf8').slice(0, 24000);
  const file = path.join(process.env.TMPDIR || '/tmp', `webjit-ppl-${process.pid}.txt`);
  fs.writeFileSync(file, text);
  const model = path.join(modelDir(), 'tiny-llama.gguf');
  const args = ['perplexity', '--model', model, '--text', file, '--ctx', '64', '--chunks', '3', '--json'];
  const r = spawnSync(CLI, args, { encoding: 'utf8', timeout: 300000, env: { XDG_RUNTIME_DIR: '/tmp', ...process.env } });
  fs.rmSync(file, { force: true });
  if (r.status !== 0) throw new Error(`${CLI} ${args.join(' ')}: exit ${r.status}\n${(r.stderr || '').slice(-2000)}`);
  return { text, ctx: 64, chunks: 3, native: JSON.parse(r.stdout.trim().split('\n').pop()) };
}
