// The chat panel: streams a GGUF model in (bytes and layers on the load bar), then answers in
// the model's own chat template (the GGUF's `tokenizer.chat_template`; Gemma 3 files without one
// get the package's Gemma 3 template) with the whole conversation as context; Stop aborts the running
// answer, Reset forgets the conversation.
//
// The first message may be sent before the model is there. The load then carries that turn's
// chat prompt (`loadModel(url, {prompt})`), written with `firstPrompt` (a guess at the template:
// the model's is known only once its header has arrived; after the load the page compares the
// two and reads the prompt again when they differ): each layer reads it as soon as its weights have
// arrived, and the answer starts from the prefilled prompt (`generate(null)`) when the last
// layer is in, without reading the prompt again. A message sent while a plain load runs
// restarts it with the prompt when less than half of the file is in (the bytes read so far
// come again); later, the message waits for the load and is answered as usual.

const $ = (id) => document.getElementById(id);
const MB = 1e6;
// Below this share of the file, a message restarts a plain load with its prompt.
const RESTART_BELOW = 0.5;

function fmtMB(bytes) {
  return `${(bytes / MB).toFixed(bytes < 10 * MB ? 2 : 1)} MB`;
}

/** `firstPrompt(history)` resolves to the prompt text of a turn sent before the model is
 *  there, in the template `guessTemplate()` resolves to (app.js writes it with the package's
 *  model-free chatPrompt, so that a missing package is reported on the page rather than
 *  failing this module). A model whose file has no chat template is answered in that one. */
export function setupChat(engine, { file, url, maxTokens, firstPrompt, guessTemplate, onModel, onActivity, setStatus }) {
  const panel = $('chat');
  const prompt = $('prompt');
  const send = $('send');
  const stop = $('stop');
  const reset = $('reset');
  const messages = $('messages');
  const layers = $('layers');
  const hint = $('chat-hint');
  let model = null;
  let history = []; // [{role: 'user'|'assistant', content}]
  let generation = null; // AbortController of the answer in progress (also while it waits for the load)
  let loading = null; // promise of the load in progress
  let loadCtl = null; // its AbortController
  let loadPrompt = null; // the chat prompt that load prefills, or null
  let lastProgress = null;
  // Every progress event of the current load (for the page's tests: window.demo.panels.chat.loadLog).
  let loadLog = [];
  // The template of a model whose file has none (and no built-in one in the package).
  let fallback;
  const chatOpts = (o) => (fallback ? { ...o, template: fallback } : o);

  $('model-name').textContent = file ?? '(none)';

  function setState(state) {
    panel.dataset.state = state;
    const waiting = !!generation; // an answer runs or waits for the load
    prompt.disabled = !file || state === 'error';
    send.disabled = !file || waiting || state === 'error';
    stop.disabled = !waiting;
    reset.disabled = waiting || state === 'loading' || (!model && !history.length);
    panel.dataset.prefill = loadPrompt !== null && state === 'loading' ? '1' : '0';
    hint.hidden = !!model || !file;
  }

  function note(text) {
    const el = document.createElement('div');
    el.className = 'msg note';
    el.textContent = text;
    messages.append(el);
    messages.scrollTop = messages.scrollHeight;
    return el;
  }

  function bubble(role, text) {
    const el = document.createElement('div');
    el.className = `msg ${role}`;
    el.textContent = text;
    messages.append(el);
    messages.scrollTop = messages.scrollHeight;
    return el;
  }

  function layerCells(n) {
    if (layers.childElementCount === n) return;
    layers.replaceChildren();
    for (let i = 0; i < n; i++) {
      const c = document.createElement('div');
      c.className = 'cell';
      c.title = `layer ${i}`;
      layers.append(c);
    }
  }

  function showProgress(p) {
    const total = p.totalBytes || 0;
    const frac = total ? Math.min(1, p.loadedBytes / total) : 0;
    $('load-fill').style.width = `${(frac * 100).toFixed(1)}%`;
    $('load-bytes').textContent = total
      ? `${fmtMB(p.loadedBytes)} / ${fmtMB(total)}${p.fromCache ? ' (from cache)' : ''}`
      : `${fmtMB(p.loadedBytes)}`;
    $('load-pct').textContent = total ? `${Math.floor(frac * 100)}%` : '';
    $('load-bar').dataset.pct = String(Math.floor(frac * 100));
    if (p.nLayers > 0) {
      layerCells(p.nLayers);
      const read = p.layersPrefilled ?? 0;
      const cells = layers.children;
      for (let i = 0; i < cells.length; i++) {
        cells[i].classList.toggle('ready', i < p.layersReady);
        cells[i].classList.toggle('prefilled', i < read);
      }
      layers.dataset.ready = String(p.layersReady);
      layers.dataset.prefilled = String(read);
      const prefill = loadPrompt !== null ? `, ${read} read your message` : '';
      layers.title = `${p.layersReady} of ${p.nLayers} layers on the GPU${prefill}`;
      $('load-layers').textContent = `${p.layersReady}/${p.nLayers} layers arrived${prefill}`;
    }
  }

  function clearBar() {
    $('load-fill').style.width = '0%';
    $('load-pct').textContent = '';
    $('load-bar').dataset.pct = '0';
    $('load-bar').classList.remove('done');
    $('load-layers').textContent = '';
    layers.dataset.ready = '0';
    layers.dataset.prefilled = '0';
    for (const c of layers.children) c.classList.remove('ready', 'prefilled');
  }

  /** Starts a load (prefilling `withPrompt` when given); resolves to the model or null. */
  function startLoad(withPrompt = null) {
    const ac = new AbortController();
    loadCtl = ac;
    loadPrompt = withPrompt;
    lastProgress = null;
    loadLog = [];
    const log = loadLog;
    clearBar();
    setState('loading');
    setStatus(withPrompt !== null ? `Loading ${file}; your message is read layer by layer as the weights arrive…` : `Loading ${file}…`);
    const t0 = performance.now();
    const p = (async () => {
      let events = 0;
      try {
        const m = await engine.loadModel(url, {
          cache: 'cache-api',
          signal: ac.signal,
          ...(withPrompt !== null ? { prompt: withPrompt } : {}),
          onProgress: (ev) => {
            lastProgress = ev;
            events++;
            log.push({ loadedBytes: ev.loadedBytes, totalBytes: ev.totalBytes, layersReady: ev.layersReady, layersPrefilled: ev.layersPrefilled ?? 0, nLayers: ev.nLayers, phase: ev.phase });
            showProgress(ev);
          },
        });
        model = m;
      } catch (e) {
        // A restart (a message arrived) leaves the bar to the load that replaced this one.
        if (ac.signal.reason === 'restart') return null;
        if (ac.signal.aborted) {
          $('load-bytes').textContent = 'load stopped: send a message (or click here) to load again';
          setStatus(`Stopped loading ${file}.`);
          setState('idle');
        } else {
          $('load-bytes').textContent = `load failed: ${e.code ?? ''} ${e.message}`;
          setStatus(`Could not load ${file}: ${e.message}`, true);
          // A load that carried a message may have failed on the message (e.g. longer than
          // the context): the next message may try again.
          setState(withPrompt !== null ? 'idle' : 'error');
        }
        return null;
      } finally {
        if (loading === p) {
          loading = null;
          loadCtl = null;
        }
      }
      const secs = (performance.now() - t0) / 1000;
      // The package sends a last progress event at the end; the bar shows what it said.
      if (!lastProgress) {
        const total = model.load.totalBytes || 0;
        const n = model.info.n_layers;
        showProgress({ loadedBytes: total, totalBytes: total, layersReady: n, layersPrefilled: withPrompt !== null ? n : 0, nLayers: n, fromCache: model.load.fromCache });
      }
      $('load-bar').dataset.events = String(events);
      $('load-bar').classList.add('done');
      const i = model.info;
      $('model-info').textContent = `${i.architecture}, ${i.n_layers} layers, d_model ${i.d_model}, vocab ${i.vocab}, context ${i.max_context}`;
      $('load-bytes').textContent += ` in ${secs.toFixed(1)} s`;
      if (model.info.chat_template === 'none') {
        fallback = await guessTemplate();
        note(`${file} has no chat template: its prompts are written in Gemma 3's.`);
      }
      setStatus(`${file} is on the GPU. Ask it something.`);
      setState('ready');
      onModel?.(model);
      onActivity?.();
      return model;
    })();
    loading = p;
    return p;
  }

  /** Resolves when no load runs any more (following restarts): the model, or null. */
  async function settled() {
    while (loading) await loading;
    return model;
  }

  async function load() {
    if (model) return model;
    if (!loading && file) startLoad(null);
    return settled();
  }

  /** Streams `pieces` into the bubble `out`, then records the answer in the history. */
  async function stream(out, ac, pieces, t0 = performance.now()) {
    setState('generating');
    let answer = '';
    let n = 0;
    let first = 0;
    try {
      for await (const piece of pieces) {
        if (!n) {
          first = performance.now();
          out.dataset.firstPieceMs = String(Math.round(first - t0));
        }
        n++;
        answer += piece;
        out.textContent = answer;
        messages.scrollTop = messages.scrollHeight;
        const secs = (performance.now() - first) / 1000;
        if (n > 1 && secs > 0) $('tok-rate').textContent = `${((n - 1) / secs).toFixed(2)} tok/s`;
        out.dataset.pieces = String(n);
      }
      const s = model.lastStats;
      if (s) {
        // `tokens` is the generated ids in this package version (a count in index.d.ts).
        const count = Array.isArray(s.tokens) ? s.tokens.length : Number(s.tokens) || 0;
        const rate = s.decodeMs > 0 && count ? (count / (s.decodeMs / 1000)).toFixed(2) : '–';
        $('tok-rate').textContent = `${rate} tok/s`;
        const read = out.dataset.prefilled === '1'
          ? `prompt ${s.promptTokens} tokens read during the load`
          : `prompt ${s.promptTokens} tokens in ${(s.prefillMs / 1000).toFixed(2)} s`;
        $('gen-stats').textContent = ` · ${count} tokens, ${read}, ${s.reason === 'eog' ? 'end of turn' : s.reason}`;
        out.dataset.tokens = String(count);
        out.dataset.reason = s.reason;
        out.classList.toggle('stopped', s.reason === 'stopped');
      }
    } catch (e) {
      note(`error: ${e.code ?? ''} ${e.message}`);
      $('tok-rate').textContent = '';
    } finally {
      finish(out, ac, answer);
    }
  }

  function finish(out, ac, answer) {
    out.classList.remove('streaming');
    if (!answer && !ac.signal.aborted) out.textContent = '(no answer)';
    history.push({ role: 'assistant', content: answer });
    generation = null;
    out.dataset.done = '1';
    setState(model ? 'ready' : panel.dataset.state === 'loading' ? 'loading' : panel.dataset.state);
    onActivity?.();
  }

  /** A turn: answered at once when the model is there, else with (or after) the load. */
  async function ask(text) {
    if (generation || !file || panel.dataset.state === 'error') return;
    history.push({ role: 'user', content: text });
    bubble('user', text);
    const out = bubble('model streaming', '');
    const ac = new AbortController();
    generation = ac;
    $('tok-rate').textContent = 'reading the prompt…';
    $('gen-stats').textContent = '';
    const t0 = performance.now();
    if (model) {
      await stream(out, ac, model.chat(history, chatOpts({ maxTokens, signal: ac.signal })), t0);
      return;
    }
    const frac = lastProgress?.totalBytes ? lastProgress.loadedBytes / lastProgress.totalBytes : 0;
    if (loading && frac >= RESTART_BELOW) {
      // Most of the file is in: wait for it, then answer as usual.
      out.dataset.waiting = 'load';
      $('tok-rate').textContent = 'waiting for the last layer…';
      setState('loading');
      // Stop gives up the wait at once; the load itself goes on.
      await Promise.race([settled(), new Promise((r) => ac.signal.addEventListener('abort', r, { once: true }))]);
      if (ac.signal.aborted || !model) {
        out.textContent = ac.signal.aborted ? '' : '(the model did not load)';
        out.classList.toggle('stopped', ac.signal.aborted);
        if (ac.signal.aborted) out.dataset.reason = 'stopped';
        finish(out, ac, '');
        return;
      }
      await stream(out, ac, model.chat(history, chatOpts({ maxTokens, signal: ac.signal })), t0);
      return;
    }
    // Load (again) with this turn's prompt: the layers read it while the weights stream in.
    let text0;
    try {
      text0 = await firstPrompt(history);
    } catch (e) {
      // The guessed template refused the conversation: load without it, answer afterwards.
      note(`the first prompt could not be written before the load (${e.code ?? ''} ${e.message}): answering once the model is there`);
      out.dataset.waiting = 'load';
      const m0 = await load();
      if (!m0 || ac.signal.aborted) {
        finish(out, ac, '');
        return;
      }
      await stream(out, ac, m0.chat(history, chatOpts({ maxTokens, signal: ac.signal })), t0);
      return;
    }
    if (loading) loadCtl.abort('restart');
    out.dataset.prefilled = '1';
    out.dataset.waiting = 'prefill';
    $('tok-rate').textContent = 'reading your message while the weights arrive…';
    const p = startLoad(text0);
    const onStop = () => loadCtl?.abort('stopped by the user');
    ac.signal.addEventListener('abort', onStop, { once: true });
    setState('loading');
    const m = await p;
    ac.signal.removeEventListener('abort', onStop);
    if (!m) {
      out.textContent = ac.signal.aborted ? '' : `(the model did not load: ${$('load-bytes').textContent})`;
      out.classList.toggle('stopped', ac.signal.aborted);
      if (ac.signal.aborted) out.dataset.reason = 'stopped';
      $('tok-rate').textContent = '';
      finish(out, ac, '');
      if (ac.signal.aborted) note('Stopped: the model was not loaded. Send a message to load it again.');
      return;
    }
    // The page guessed the template: the ids read during the load (the text with the model's
    // BOS, which the guess leaves out) must be those of the model's own template.
    const ids = async () => {
      const [read, own] = [await m.tokenize(text0, { addBos: true }), await m.chatPromptIds(history, chatOpts({}))];
      return read.length === own.length && read.every((x, i) => x === own[i]);
    };
    const same = await ids().catch((e) => {
      note(`error: ${e.code ?? ''} ${e.message}`);
      return null;
    });
    out.dataset.template = same ? 'same' : 'differs';
    if (!same) {
      if (same !== null) note('the prompt read during the load differs from the model\'s chat template: reading it again');
      out.dataset.prefilled = '0';
      await stream(out, ac, m.chat(history, chatOpts({ maxTokens, signal: ac.signal })), t0);
      return;
    }
    await stream(out, ac, m.generate(null, { maxTokens, signal: ac.signal }), t0);
  }

  $('chat-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = prompt.value.trim();
    if (!text || send.disabled) return;
    prompt.value = '';
    ask(text);
  });
  prompt.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey) {
      ev.preventDefault();
      $('chat-form').requestSubmit();
    }
  });
  stop.addEventListener('click', () => generation?.abort('stopped by the user'));
  reset.addEventListener('click', async () => {
    if (generation) return;
    history = [];
    messages.replaceChildren();
    $('tok-rate').textContent = '';
    $('gen-stats').textContent = '';
    setState(panel.dataset.state);
    if (model) await model.reset().catch((e) => note(`reset failed: ${e.message}`));
    note('New conversation.');
  });
  // Before the model is loaded (?autoload=0 or a stopped load), clicking the load text loads it.
  $('load-bytes').addEventListener('click', () => {
    if (!model && !loading && file && !generation) load();
  });

  setState('idle');
  return {
    load,
    ask,
    get model() {
      return model;
    },
    get loadLog() {
      return loadLog;
    },
    get history() {
      return history.map((m) => ({ ...m }));
    },
  };
}
