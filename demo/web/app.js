// The webjit demo page: one engine (in the package's worker) shared by four panels.
// Served by `webjit serve`: this folder at /, the npm package at /pkg/, the model cache at
// /models/. URL parameters: ?model=FILE (a GGUF file under /models/, default Gemma 3 270M),
// ?maxTokens=N (answer length, default 200), ?autoload=0 (no load at once: the first
// message loads the chat model and is read during the load).
//
// Each panel reports its state in data-state attributes so that tests (tests/web/demo.mjs)
// can wait on it; window.demo holds the engine for poking at it from the console.

import { setupChat } from './chat.js';
import { setupDevice } from './device.js';
import { setupEmbeddings } from './embed.js';
import { setupAttention } from './attention.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const DEFAULT_MODEL = 'gemma-3-270m-q4_k_m.gguf';

function setStatus(text, error = false) {
  const s = $('status');
  s.textContent = text;
  s.classList.toggle('error', error);
}

/** The file name of ?model=, refusing anything that would leave /models/. */
function modelFile() {
  const name = params.get('model') || DEFAULT_MODEL;
  if (name.startsWith('/') || name.includes('..') || name.includes('://') || name.includes('\\')) {
    throw new Error(`?model=${name}: give a file name under /models/, e.g. ?model=tiny-llama.gguf`);
  }
  return name;
}

function positiveInt(name, fallback) {
  const v = Number(params.get(name));
  return Number.isInteger(v) && v > 0 ? v : fallback;
}

/** What is missing, in words, or '' when this page's thread sees a WebGPU adapter. */
async function probeWebGPU() {
  if (!('gpu' in navigator) || !navigator.gpu) {
    const insecure = window.isSecureContext ? '' : ' This page is not a secure context either: WebGPU needs https:// or http://localhost.';
    return `This browser does not expose WebGPU: navigator.gpu is missing.${insecure}`;
  }
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) {
      return 'navigator.gpu is present, but requestAdapter() found no GPU adapter (the GPU may be disabled, block-listed, or absent).';
    }
  } catch (e) {
    return `navigator.gpu is present, but requestAdapter() failed: ${e.message}`;
  }
  return '';
}

function showNoWebGPU(what, code) {
  $('nogpu-what').textContent = what;
  $('nogpu-code').textContent = code || 'WEBGPU_UNAVAILABLE';
  $('nogpu').hidden = false;
  $('app').hidden = true;
  document.body.dataset.engine = 'nowebgpu';
  setStatus('WebGPU is not available: see below.', true);
}

async function main() {
  document.body.dataset.engine = 'starting';
  let webjit;
  try {
    webjit = await import('/pkg/index.js');
  } catch (e) {
    document.body.dataset.engine = 'error';
    setStatus(`Could not load the webjit package from /pkg/index.js (${e.message}). Build it with \`make web\`.`, true);
    return;
  }
  const probe = await probeWebGPU();
  let engine;
  try {
    engine = await webjit.Engine.create();
  } catch (e) {
    if (e.code === 'WEBGPU_UNAVAILABLE') {
      showNoWebGPU(probe || e.message, e.code);
      return;
    }
    document.body.dataset.engine = 'error';
    setStatus(`The engine did not start: ${e.code ? `${e.code}: ` : ''}${e.message}`, true);
    return;
  }
  window.demo = { engine, webjit };
  document.body.dataset.engine = 'ready';
  setStatus(`Engine ready${engine.worker ? ' (in a Web Worker)' : ''}.`);

  let file;
  try {
    file = modelFile();
  } catch (e) {
    setStatus(e.message, true);
    file = null;
  }
  // A message sent before the model is there is written in a template guessed before the
  // file's header arrives: Gemma 3's (the default model's; the package builds it in for Gemma 3
  // files, which carry none). The chat panel checks it against the model's own after the load.
  let guess = null;
  const guessTemplate = async () => (guess ??= await webjit.builtinChatTemplate('gemma3'));
  // Without bosToken: the load adds the model's own BOS to a prompt that does not start with it.
  const firstPrompt = async (history) => webjit.chatPrompt(history, await guessTemplate());
  const device = setupDevice(engine);
  const chat = setupChat(engine, {
    file,
    url: file ? `/models/${encodeURIComponent(file)}` : null,
    maxTokens: positiveInt('maxTokens', 200),
    firstPrompt,
    guessTemplate,
    onModel: (model) => device.setModel(model),
    onActivity: () => device.refresh(),
    setStatus,
  });
  const embed = setupEmbeddings(engine, { url: '/models/all-MiniLM-L6-v2/', onActivity: () => device.refresh() });
  const attn = setupAttention(engine, { onActivity: () => device.refresh() });
  window.demo.panels = { chat, device, embed, attn };

  await device.refresh();
  // The chat model first (its load bar is what a visitor watches), then the small demos,
  // so that they do not compete for the engine while the weights stream in.
  if (file && params.get('autoload') !== '0') await chat.load();
  await embed.run().catch(() => {});
  await attn.run().catch(() => {});
}

main().catch((e) => {
  document.body.dataset.engine = 'error';
  setStatus(`Unexpected error: ${e.message}`, true);
  console.error(e);
});
