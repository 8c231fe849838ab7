// The embeddings panel: sentences (one per line) -> all-MiniLM-L6-v2 vectors -> a cosine
// similarity heatmap on a canvas, labelled with the sentences.

const $ = (id) => document.getElementById(id);
const MAX_SENTENCES = 24;

/** Cosine similarities of L2-normalized vectors: plain dot products. [n][n] */
export function cosineMatrix(vecs) {
  return vecs.map((a) =>
    vecs.map((b) => {
      let dot = 0;
      let na = 0;
      let nb = 0;
      for (let i = 0; i < a.length; i++) {
        dot += a[i] * b[i];
        na += a[i] * a[i];
        nb += b[i] * b[i];
      }
      return dot / Math.sqrt(na * nb || 1);
    }),
  );
}

/** White (0 and below) to deep blue (1). */
function color(v) {
  const t = Math.max(0, Math.min(1, v));
  const mix = (a, b) => Math.round(a + (b - a) * t);
  return `rgb(${mix(247, 24)}, ${mix(249, 62)}, ${mix(252, 170)})`;
}

function clip(text, ctx, width) {
  if (ctx.measureText(text).width <= width) return text;
  let s = text;
  while (s.length > 1 && ctx.measureText(`${s}…`).width > width) s = s.slice(0, -1);
  return `${s}…`;
}

/** Draws the matrix: row labels (the sentences) on the left, column numbers on top. */
export function drawHeatmap(canvas, labels, sim) {
  const n = labels.length;
  const ctx = canvas.getContext('2d');
  const labelW = 260;
  const top = 28;
  const cellSize = Math.max(18, Math.min(56, Math.floor((canvas.width - labelW - 10) / Math.max(n, 1))));
  canvas.height = top + n * cellSize + 34;
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.font = '13px system-ui, sans-serif';
  ctx.textBaseline = 'middle';
  for (let i = 0; i < n; i++) {
    ctx.fillStyle = '#1d2330';
    ctx.textAlign = 'right';
    ctx.fillText(clip(`${labels[i]}  ${i + 1}`, ctx, labelW - 8), labelW - 6, top + i * cellSize + cellSize / 2);
    ctx.textAlign = 'center';
    ctx.fillStyle = '#667085';
    ctx.fillText(String(i + 1), labelW + i * cellSize + cellSize / 2, top / 2);
    for (let j = 0; j < n; j++) {
      const x = labelW + j * cellSize;
      const y = top + i * cellSize;
      ctx.fillStyle = color(sim[i][j]);
      ctx.fillRect(x, y, cellSize - 1, cellSize - 1);
      if (cellSize >= 30) {
        ctx.fillStyle = sim[i][j] > 0.55 ? '#fff' : '#1d2330';
        ctx.font = '11px system-ui, sans-serif';
        ctx.fillText(sim[i][j].toFixed(2), x + cellSize / 2, y + cellSize / 2);
        ctx.font = '13px system-ui, sans-serif';
      }
    }
  }
  // Colour scale.
  const y = top + n * cellSize + 12;
  const w = Math.min(200, n * cellSize);
  for (let k = 0; k < w; k++) {
    ctx.fillStyle = color(k / (w - 1));
    ctx.fillRect(labelW + k, y, 1, 10);
  }
  ctx.fillStyle = '#667085';
  ctx.font = '11px system-ui, sans-serif';
  ctx.textAlign = 'right';
  ctx.fillText('cosine 0', labelW - 6, y + 5);
  ctx.textAlign = 'left';
  ctx.fillText('1', labelW + w + 4, y + 5);
}

export function setupEmbeddings(engine, { url, onActivity }) {
  const panel = $('embed');
  const btn = $('embed-run');
  const status = $('embed-status');
  let embedder = null;
  let busy = false;
  let last = null; // {lines, sim} of the heatmap shown
  panel.dataset.state = 'idle';
  btn.disabled = false;

  async function run() {
    if (busy) return;
    busy = true;
    btn.disabled = true;
    panel.dataset.state = 'running';
    try {
      const lines = $('sentences').value.split('\n').map((l) => l.trim()).filter(Boolean);
      if (lines.length < 2) throw new Error('write at least two sentences, one per line');
      if (lines.length > MAX_SENTENCES) throw new Error(`at most ${MAX_SENTENCES} sentences, got ${lines.length}`);
      if (!embedder) {
        status.textContent = 'loading all-MiniLM-L6-v2…';
        const t0 = performance.now();
        embedder = await engine.loadEmbedder(url, { cache: 'cache-api' });
        status.textContent = `loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s; embedding…`;
      } else {
        status.textContent = 'embedding…';
      }
      const t0 = performance.now();
      const vecs = await embedder.embed(lines);
      const ms = performance.now() - t0;
      const sim = cosineMatrix(vecs);
      drawHeatmap($('heatmap'), lines, sim);
      last = { lines, sim };
      status.textContent = `${lines.length} sentences → ${embedder.dim}-d vectors in ${ms.toFixed(0)} ms`;
      panel.dataset.state = 'done';
      panel.dataset.n = String(lines.length);
    } catch (e) {
      status.textContent = `${e.code ? `${e.code}: ` : ''}${e.message}`;
      panel.dataset.state = 'error';
      throw e;
    } finally {
      busy = false;
      btn.disabled = false;
      onActivity?.();
    }
  }

  btn.addEventListener('click', () => run().catch(() => {}));
  return { run, get shown() { return last; } };
}
