// The chat panel: streams a GGUF model in (bytes and layers on the load bar), then answers in
// the model's chat template with the whole conversation as context; Stop aborts the running
// answer, Reset forgets the conversation.

const $ = (id) => document.getElementById(id);
const MB = 1e6;

function fmtMB(bytes) {
  return `${(bytes / MB).toFixed(bytes < 10 * MB ? 2 : 1)} MB`;
}

export function setupChat(engine, { file, url, maxTokens, onModel, onActivity, setStatus }) {
  const panel = $('chat');
  const prompt = $('prompt');
  const send = $('send');
  const stop = $('stop');
  const reset = $('reset');
  const messages = $('messages');
  const layers = $('layers');
  let model = null;
  let history = []; // [{role: 'user'|'model', content}]
  let generation = null; // AbortController of the running answer
  let loading = null;

  $('model-name').textContent = file ?? '(none)';
  panel.dataset.state = 'idle';

  function setState(state) {
    panel.dataset.state = state;
    const ready = state === 'ready';
    prompt.disabled = !model;
    send.disabled = !ready;
    reset.disabled = !ready;
    stop.disabled = state !== 'generating';
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
      const cells = layers.children;
      for (let i = 0; i < cells.length; i++) cells[i].classList.toggle('ready', i < p.layersReady);
      layers.dataset.ready = String(p.layersReady);
      layers.title = `${p.layersReady} of ${p.nLayers} layers on the GPU`;
    }
  }

  async function load() {
    if (loading) return loading;
    loading = (async () => {
      setState('loading');
      setStatus(`Loading ${file}…`);
      const t0 = performance.now();
      let last = null;
      let events = 0;
      try {
        model = await engine.loadModel(url, {
          cache: 'cache-api',
          onProgress: (p) => {
            last = p;
            events++;
            showProgress(p);
          },
        });
      } catch (e) {
        setState('error');
        $('load-bytes').textContent = `load failed: ${e.code ?? ''} ${e.message}`;
        setStatus(`Could not load ${file}: ${e.message}`, true);
        loading = null;
        return null;
      }
      const secs = (performance.now() - t0) / 1000;
      // The package sends a last progress event at the end; the bar shows what it said.
      if (!last) {
        const total = model.load.totalBytes || 0;
        showProgress({ loadedBytes: total, totalBytes: total, layersReady: model.info.n_layers, nLayers: model.info.n_layers, fromCache: model.load.fromCache });
      }
      $('load-bar').dataset.events = String(events);
      $('load-bar').classList.add('done');
      const i = model.info;
      $('model-info').textContent = `${i.architecture}, ${i.n_layers} layers, d_model ${i.d_model}, vocab ${i.vocab}, context ${i.max_context}`;
      $('load-bytes').textContent += ` in ${secs.toFixed(1)} s`;
      setStatus(`${file} is on the GPU. Ask it something.`);
      setState('ready');
      onModel?.(model);
      onActivity?.();
      return model;
    })();
    return loading;
  }

  async function ask(text) {
    if (!model || panel.dataset.state !== 'ready') return;
    history.push({ role: 'user', content: text });
    bubble('user', text);
    const out = bubble('model streaming', '');
    const ac = new AbortController();
    generation = ac;
    setState('generating');
    let answer = '';
    let pieces = 0;
    let first = 0;
    $('tok-rate').textContent = 'reading the prompt…';
    $('gen-stats').textContent = '';
    try {
      for await (const piece of model.chat(history, { maxTokens, signal: ac.signal })) {
        if (!pieces) first = performance.now();
        pieces++;
        answer += piece;
        out.textContent = answer;
        messages.scrollTop = messages.scrollHeight;
        const secs = (performance.now() - first) / 1000;
        if (pieces > 1 && secs > 0) $('tok-rate').textContent = `${((pieces - 1) / secs).toFixed(2)} tok/s`;
        out.dataset.pieces = String(pieces);
      }
      const s = model.lastStats;
      if (s) {
        // `tokens` is the generated ids in this package version (a count in index.d.ts).
        const n = Array.isArray(s.tokens) ? s.tokens.length : Number(s.tokens) || 0;
        const rate = s.decodeMs > 0 && n ? (n / (s.decodeMs / 1000)).toFixed(2) : '–';
        $('tok-rate').textContent = `${rate} tok/s`;
        $('gen-stats').textContent = ` · ${n} tokens, prompt ${s.promptTokens} tokens in ${(s.prefillMs / 1000).toFixed(2)} s, ${s.reason === 'eog' ? 'end of turn' : s.reason}`;
        out.dataset.tokens = String(n);
        out.dataset.reason = s.reason;
        out.classList.toggle('stopped', s.reason === 'stopped');
      }
    } catch (e) {
      note(`error: ${e.code ?? ''} ${e.message}`);
      $('tok-rate').textContent = '';
    } finally {
      out.classList.remove('streaming');
      if (!answer && !ac.signal.aborted) out.textContent = '(no answer)';
      history.push({ role: 'model', content: answer });
      generation = null;
      out.dataset.done = '1';
      setState('ready');
      onActivity?.();
    }
  }

  $('chat-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = prompt.value.trim();
    if (!text) return;
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
    if (!model) return;
    history = [];
    messages.replaceChildren();
    $('tok-rate').textContent = '';
    $('gen-stats').textContent = '';
    await model.reset().catch((e) => note(`reset failed: ${e.message}`));
    note('New conversation.');
  });
  // Before the model is loaded (?autoload=0), the prompt box offers to load it.
  prompt.addEventListener('focus', () => {
    if (!model && file) load();
  });

  setState('idle');
  prompt.disabled = !file;
  return { load, ask, get model() { return model; } };
}
