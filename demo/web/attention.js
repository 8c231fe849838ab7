// The attention playground: a 32x32 grid of tokens (2 heads, head dim 32) run through 2-D
// neighborhood attention or block-sparse (MoBA top-k) attention, timed against dense attention
// on the same q, k, v. Clicking a query cell draws the keys it attends to: for neighborhood
// attention from NATTEN's window rule (computed here), for MoBA from the selection the op
// returns (which blocks the gates picked for that query).

const $ = (id) => document.getElementById(id);
const SIDE = 32; // tokens per grid axis
const SEQ = SIDE * SIDE;
const HEADS = 2;
const DIM = 32;
const REPEAT = 3; // timed runs after the first
const HEAD_SHIFT = [0, 6]; // head h's queries look HEAD_SHIFT[h] columns to the right

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Sin/cos features of a grid position: q . k then peaks where the positions agree, so the
 *  gates of MoBA prefer blocks near the query and the picture means something. */
function positionFeatures(y, x, out, off) {
  for (let i = 0; i < DIM / 4; i++) {
    const f = (2 * Math.PI * (i + 1)) / 64;
    out[off + 4 * i] = Math.sin(f * x);
    out[off + 4 * i + 1] = Math.cos(f * x);
    out[off + 4 * i + 2] = Math.sin(f * y);
    out[off + 4 * i + 3] = Math.cos(f * y);
  }
}

/** q, k, v [1, SEQ, HEADS, DIM] (block-sparse / dense layout), seeded. */
export function makeInputs(seed = 7) {
  const r = mulberry32(seed);
  const n = SEQ * HEADS * DIM;
  const q = new Float32Array(n);
  const k = new Float32Array(n);
  const v = new Float32Array(n);
  const tmp = new Float32Array(DIM);
  for (let t = 0; t < SEQ; t++) {
    const y = Math.floor(t / SIDE);
    const x = t % SIDE;
    for (let h = 0; h < HEADS; h++) {
      const off = (t * HEADS + h) * DIM;
      positionFeatures(y, x + HEAD_SHIFT[h], tmp, 0);
      for (let i = 0; i < DIM; i++) q[off + i] = 1.5 * tmp[i] + 0.6 * (r() * 2 - 1);
      positionFeatures(y, x, tmp, 0);
      for (let i = 0; i < DIM; i++) k[off + i] = 1.5 * tmp[i] + 0.6 * (r() * 2 - 1);
      for (let i = 0; i < DIM; i++) v[off + i] = r() * 2 - 1;
    }
  }
  return { q, k, v };
}

/** [1, SEQ, HEADS, DIM] -> [1, HEADS, SIDE, SIDE, DIM] (neighborhood attention's layout). */
function toHeadMajor(x) {
  const out = new Float32Array(x.length);
  for (let t = 0; t < SEQ; t++) {
    for (let h = 0; h < HEADS; h++) out.set(x.subarray((t * HEADS + h) * DIM, (t * HEADS + h + 1) * DIM), (h * SEQ + t) * DIM);
  }
  return out;
}

/**
 * The positions along one axis of length `len` that query position `i` sees under NATTEN's
 * rule (not causal): only positions of its dilation group (same i mod dilation) count; the
 * window is `kernel` of them centred on the query, slid back inside the group at the edges.
 */
export function natWindow(len, kernel, dilation, i) {
  const members = Math.ceil((len - (i % dilation)) / dilation);
  const idx = Math.floor(i / dilation);
  const start = Math.max(0, Math.min(idx - Math.floor(kernel / 2), members - kernel));
  const out = [];
  for (let g = start; g < start + kernel; g++) out.push((i % dilation) + g * dilation);
  return out;
}

export function setupAttention(engine, { onActivity }) {
  const panel = $('attention');
  const canvas = $('attn-grid');
  const btn = $('attn-run');
  const status = $('attn-status');
  const times = $('attn-times');
  const inputs = makeInputs();
  let headMajor = null;
  let denseMs = null;
  let last = null; // what the grid shows: {kind, kernel, dilation} or {kind, block, topK, selection}
  let query = [SIDE >> 1, SIDE >> 1];
  let busy = false;
  panel.dataset.state = 'idle';
  btn.disabled = false;

  const kind = () => document.querySelector('input[name="attn-kind"]:checked').value;
  function syncKind() {
    $('na-opts').hidden = kind() !== 'na';
    $('bsa-opts').hidden = kind() !== 'bsa';
  }
  for (const r of document.querySelectorAll('input[name="attn-kind"]')) r.addEventListener('change', () => {
    syncKind();
    run().catch(() => {});
  });
  syncKind();

  function intInput(id, lo, hi, what) {
    const v = Number($(id).value);
    if (!Number.isInteger(v) || v < lo || v > hi) throw new Error(`${what} must be an integer in [${lo}, ${hi}], got ${$(id).value}`);
    return v;
  }

  /** The keys of the current query as a [SIDE * SIDE] 0/1 mask (head 0), and its block boxes. */
  function attended() {
    const mask = new Uint8Array(SEQ);
    const [qy, qx] = query;
    if (last.kind === 'na') {
      const ys = natWindow(SIDE, last.kernel, last.dilation, qy);
      const xs = natWindow(SIDE, last.kernel, last.dilation, qx);
      for (const y of ys) for (const x of xs) mask[y * SIDE + x] = 1;
      return { mask, blocks: [] };
    }
    const s = last.selection;
    const row = s.perQuery ? qy * SIDE + qx : blockOf(qy, qx, last.block);
    // indices [batch, heads, rows, nBlocks], counts [batch, heads, rows]: batch 0, head 0.
    const n = s.counts[row];
    const perSide = Math.ceil(SIDE / last.block);
    const blocks = [];
    for (let i = 0; i < n; i++) {
      const b = s.indices[row * s.nBlocks + i];
      const by = Math.floor(b / perSide);
      const bx = b % perSide;
      blocks.push([by, bx]);
      for (let y = by * last.block; y < Math.min(SIDE, (by + 1) * last.block); y++) {
        for (let x = bx * last.block; x < Math.min(SIDE, (bx + 1) * last.block); x++) mask[y * SIDE + x] = 1;
      }
    }
    return { mask, blocks };
  }

  function blockOf(y, x, b) {
    return Math.floor(y / b) * Math.ceil(SIDE / b) + Math.floor(x / b);
  }

  function draw() {
    const ctx = canvas.getContext('2d');
    const c = canvas.width / SIDE;
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.fillStyle = '#eef0f3';
    for (let y = 0; y < SIDE; y++) for (let x = 0; x < SIDE; x++) ctx.fillRect(x * c + 1, y * c + 1, c - 2, c - 2);
    if (!last) return;
    const { mask, blocks } = attended();
    let count = 0;
    ctx.fillStyle = '#5b7be8';
    for (let t = 0; t < SEQ; t++) {
      if (!mask[t]) continue;
      count++;
      ctx.fillRect((t % SIDE) * c + 1, Math.floor(t / SIDE) * c + 1, c - 2, c - 2);
    }
    if (last.kind === 'bsa') {
      // Block boundaries, and the selected blocks outlined.
      ctx.strokeStyle = '#c3c8d2';
      ctx.lineWidth = 1;
      for (let p = 0; p <= SIDE; p += last.block) {
        ctx.beginPath();
        ctx.moveTo(p * c + 0.5, 0);
        ctx.lineTo(p * c + 0.5, canvas.height);
        ctx.moveTo(0, p * c + 0.5);
        ctx.lineTo(canvas.width, p * c + 0.5);
        ctx.stroke();
      }
      ctx.strokeStyle = '#1d3aa8';
      ctx.lineWidth = 2;
      for (const [by, bx] of blocks) {
        const b = last.block;
        ctx.strokeRect(bx * b * c + 1, by * b * c + 1, Math.min(b, SIDE - bx * b) * c - 2, Math.min(b, SIDE - by * b) * c - 2);
      }
    }
    const [qy, qx] = query;
    ctx.fillStyle = '#f08c00';
    ctx.fillRect(qx * c, qy * c, c, c);
    ctx.strokeStyle = '#7a4500';
    ctx.lineWidth = 2;
    ctx.strokeRect(qx * c + 1, qy * c + 1, c - 2, c - 2);
    panel.dataset.blocks = blocks.map(([by, bx]) => by * Math.ceil(SIDE / last.block) + bx).join(',');
    panel.dataset.query = `${qy},${qx}`;
    panel.dataset.attended = String(count);
    const what = last.kind === 'na'
      ? `${last.kernel}×${last.kernel} window, dilation ${last.dilation}`
      : `${blocks.length} blocks of ${last.block}×${last.block} (head 0)`;
    $('attn-query').textContent = `query (${qy}, ${qx}) attends to ${count} of ${SEQ} keys (${((100 * count) / SEQ).toFixed(1)}%): ${what}`;
  }

  function showTimes(opMs, label) {
    const ratio = opMs > 0 && denseMs > 0 ? denseMs / opMs : null;
    times.innerHTML = '';
    const lines = [
      ['grid', `${SIDE}×${SIDE} tokens, ${HEADS} heads, head dim ${DIM}`],
      [label, opMs != null ? `${opMs.toFixed(2)} ms` : '–'],
      ['dense', denseMs != null ? `${denseMs.toFixed(2)} ms` : '–'],
      ['speedup', ratio ? `${ratio.toFixed(2)}×` : '–'],
    ];
    for (const [k, v] of lines) {
      const p = document.createElement('div');
      p.append(`${k}: `);
      const b = document.createElement('b');
      b.textContent = v;
      p.append(b);
      times.append(p);
    }
    const q = document.createElement('p');
    q.id = 'attn-query';
    q.className = 'muted';
    times.append(q);
    times.dataset.opMs = String(opMs);
    times.dataset.denseMs = String(denseMs);
  }

  async function run() {
    if (busy) return;
    busy = true;
    btn.disabled = true;
    panel.dataset.state = 'running';
    const { q, k, v } = inputs;
    try {
      let next;
      let opMs;
      let label;
      if (kind() === 'na') {
        const kernel = intInput('na-kernel', 1, SIDE, 'kernel');
        const dilation = intInput('na-dilation', 1, SIDE, 'dilation');
        if (kernel * dilation > SIDE) throw new Error(`kernel × dilation (${kernel * dilation}) must be at most the grid side ${SIDE}`);
        status.textContent = 'running neighborhood attention…';
        headMajor ??= { q: toHeadMajor(q), k: toHeadMajor(k), v: toHeadMajor(v) };
        const r = await engine.neighborhoodAttention(headMajor.q, headMajor.k, headMajor.v, {
          shape: [1, HEADS, SIDE, SIDE, DIM],
          kernel: [kernel, kernel],
          dilation: [dilation, dilation],
          repeat: REPEAT,
        });
        next = { kind: 'na', kernel, dilation };
        opMs = r.gpuMs ?? r.ms;
        label = 'neighborhood';
      } else {
        const block = intInput('bsa-block', 1, SIDE, 'block');
        const nBlocks = Math.ceil(SIDE / block) ** 2;
        const topK = intInput('bsa-topk', 1, nBlocks, `top-k (${nBlocks} blocks)`);
        status.textContent = 'running block-sparse attention…';
        const r = await engine.blockSparseAttention(q, k, v, {
          qShape: [1, SEQ, HEADS, DIM],
          kvShape: [1, SEQ, HEADS, DIM],
          grid: [SIDE, SIDE],
          block: [1, block, block],
          select: { topK },
          causal: false,
          granularity: 'query',
          returnSelection: true,
          repeat: REPEAT,
        });
        if (!r.selection?.counts) throw new Error('the op returned no selection');
        next = { kind: 'bsa', block, topK, selection: r.selection };
        opMs = r.gpuMs ?? r.ms;
        label = 'block-sparse';
      }
      if (denseMs == null) {
        status.textContent = 'running dense attention for comparison…';
        const d = await engine.denseAttention(q, k, v, { qShape: [1, SEQ, HEADS, DIM], kvShape: [1, SEQ, HEADS, DIM], causal: false, repeat: REPEAT });
        denseMs = d.gpuMs ?? d.ms ?? null;
      }
      last = next;
      showTimes(opMs, label);
      draw();
      status.textContent = `ms per run over ${REPEAT} runs (wall clock, one submission). Click a cell.`;
      panel.dataset.state = 'done';
      panel.dataset.kind = last.kind;
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

  canvas.addEventListener('click', (ev) => {
    const rect = canvas.getBoundingClientRect();
    const x = Math.floor(((ev.clientX - rect.left) / rect.width) * SIDE);
    const y = Math.floor(((ev.clientY - rect.top) / rect.height) * SIDE);
    if (x < 0 || y < 0 || x >= SIDE || y >= SIDE) return;
    query = [y, x];
    if (last) draw();
  });
  btn.addEventListener('click', () => run().catch(() => {}));
  for (const id of ['na-kernel', 'na-dilation', 'bsa-topk', 'bsa-block']) {
    $(id).addEventListener('change', () => run().catch(() => {}));
  }
  draw();
  return { run, draw };
}
