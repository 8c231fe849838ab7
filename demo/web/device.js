// The device panel: what the engine runs on, the GPU memory it holds, and "Tune this device",
// which times candidate kernel configurations of the loaded text model and keeps the winners
// (the package stores them in IndexedDB and imports them at the next Engine.create()).

const $ = (id) => document.getElementById(id);

// Shown first, in this order; the rest of the limits follow alphabetically.
const MAIN_LIMITS = [
  'max_buffer_size',
  'max_storage_buffer_binding_size',
  'max_storage_buffers_per_shader_stage',
  'max_compute_workgroup_storage_size',
  'max_compute_invocations_per_workgroup',
  'max_compute_workgroup_size_x',
  'max_compute_workgroups_per_dimension',
  'max_uniform_buffer_binding_size',
];

function fmtBytes(n) {
  if (!(n >= 0)) return '–';
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}

function fmtLimit(name, v) {
  return /size$/.test(name) && v >= 1 << 16 ? `${v} (${fmtBytes(v)})` : String(v);
}

function cell(tr, text, cls) {
  const td = document.createElement('td');
  if (cls) td.className = cls;
  td.textContent = text;
  tr.append(td);
  return td;
}

function codeCell(tr, text, full = text) {
  const td = document.createElement('td');
  const c = document.createElement('code');
  // Keys are long: let them wrap after their dots only.
  text.split(/(?<=[.|])/).forEach((part, i) => {
    if (i) c.append(document.createElement('wbr'));
    c.append(part);
  });
  c.title = full;
  td.append(c);
  tr.append(td);
}

/** One row of the tuning report, whichever field names this package version uses. */
function reportRow(r) {
  const [family, problem] = String(r.tune_key ?? '').split('|');
  return {
    kernel: r.kernel ?? family ?? '',
    problem: r.problem ?? problem ?? '',
    defaultKey: r.default_key ?? '',
    winnerKey: r.winner_key ?? '',
    defaultUs: Number(r.default_us),
    tunedUs: Number(r.tuned_us),
    speedup: Number(r.speedup),
  };
}

export function setupDevice(engine) {
  const panel = $('device');
  const tuneBtn = $('tune');
  const tbody = $('tune-table').querySelector('tbody');
  let model = null;
  let tuning = false;
  let refreshing = null;
  let shownStored = false;
  panel.dataset.tune = 'idle';

  function dl(pairs) {
    const list = $('device-info');
    list.replaceChildren();
    for (const [k, v] of pairs) {
      const dt = document.createElement('dt');
      dt.textContent = k;
      const dd = document.createElement('dd');
      dd.textContent = v;
      list.append(dt, dd);
    }
  }

  function limitsTable(limits) {
    const t = $('limits');
    if (t.childElementCount) return;
    const names = Object.keys(limits || {});
    const order = [...MAIN_LIMITS.filter((n) => n in limits), ...names.filter((n) => !MAIN_LIMITS.includes(n)).sort()];
    for (const n of order) {
      const tr = document.createElement('tr');
      codeCell(tr, n);
      cell(tr, fmtLimit(n, limits[n]), 'num');
      t.append(tr);
    }
  }

  async function refresh() {
    if (refreshing) return refreshing;
    refreshing = (async () => {
      try {
        const i = await engine.info();
        const f = i.features || {};
        const features = Object.entries(f).filter(([, on]) => on).map(([k]) => k.replace(/_/g, '-'));
        const mainLimits = MAIN_LIMITS.filter((n) => n in (i.limits || {})).slice(0, 4)
          .map((n) => `${n.replace(/^max_/, '')} ${fmtLimit(n, i.limits[n])}`);
        const records = i.tuning?.records ?? 0;
        dl([
          ['adapter', i.adapter || '(unnamed)'],
          ['backend', i.backend],
          ['features', features.length ? features.join(', ') : 'none of shader-f16, timestamp-query, subgroups'],
          ['limits', mainLimits.join(' · ')],
          ['GPU memory held', `${fmtBytes(i.memory?.live_bytes)} in ${i.memory?.live_buffers ?? 0} buffers + ${fmtBytes(i.memory?.pooled_bytes)} pooled`],
          ['wasm memory', fmtBytes(i.wasm_memory_bytes)],
          ['tuning records', `${records}${engine.importedTuning ? ' (loaded from IndexedDB at start)' : ''}`],
          ['fingerprint', i.fingerprint],
        ]);
        panel.dataset.records = String(records);
        if (records > 0 && !tuning && !tbody.childElementCount && !shownStored) {
          shownStored = true;
          await showStored(i.fingerprint);
        }
        limitsTable(i.limits);
        $('version').textContent = `webjit ${i.version ?? ''}`;
      } catch (e) {
        dl([['error', `${e.code ?? ''} ${e.message}`]]);
      } finally {
        refreshing = null;
      }
    })();
    return refreshing;
  }

  function addRow(r) {
    const row = reportRow(r);
    const tr = document.createElement('tr');
    codeCell(tr, row.kernel);
    const problem = document.createElement('div');
    problem.className = 'problem';
    problem.textContent = row.problem;
    tr.lastChild.append(problem);
    // Config keys repeat the kernel's name: show the rest (the full key is the tooltip).
    const short = (key) => (key.startsWith(`${row.kernel}.`) ? key.slice(row.kernel.length + 1) : key);
    codeCell(tr, short(row.defaultKey), row.defaultKey);
    codeCell(tr, row.winnerKey === row.defaultKey ? '(default)' : short(row.winnerKey), row.winnerKey);
    const us = (v) => (Number.isFinite(v) ? v.toFixed(v >= 100 ? 0 : 1) : '–');
    cell(tr, us(row.defaultUs), 'num');
    cell(tr, us(row.tunedUs), 'num');
    const sp = cell(tr, Number.isFinite(row.speedup) ? `${row.speedup.toFixed(2)}×` : '–', 'num');
    if (row.speedup > 1.05) sp.classList.add('speedup-up');
    tbody.append(tr);
  }

  /** The records kept from an earlier visit (IndexedDB), in the table until the next tuning. */
  async function showStored(fingerprint) {
    const doc = JSON.parse(await engine.exportTuning());
    const recs = doc.devices?.[fingerprint] ?? {};
    for (const [key, r] of Object.entries(recs)) {
      addRow({ tune_key: key, default_key: r.default, winner_key: r.winner, default_us: r.default_us, tuned_us: r.tuned_us, speedup: r.default_us / r.tuned_us });
    }
    const n = Object.keys(recs).length;
    if (n) $('tune-status').textContent = `${n} records kept from an earlier tuning of this device (IndexedDB)`;
    panel.dataset.stored = String(n);
  }

  async function tune(budgetMs = Number($('tune-budget').value) || 5000) {
    if (tuning || !model) return null;
    tuning = true;
    tuneBtn.disabled = true;
    panel.dataset.tune = 'running';
    tbody.replaceChildren();
    const status = $('tune-status');
    status.textContent = `tuning for about ${(budgetMs / 1000).toFixed(1)} s…`;
    let live = 0;
    try {
      const report = await engine.tune({
        budgetMs,
        int8: $('tune-int8')?.checked === true,
        // Each kernel's result as it lands (packages that report only at the end skip this).
        onReport: (r) => {
          const x = typeof r === 'string' ? JSON.parse(r) : r;
          live++;
          addRow(x);
          status.textContent = `${live}${x.total ? ` of ${x.total}` : ''} kernels tuned…`;
        },
      });
      if (!live) for (const r of report.kernels || []) addRow(r);
      const n = report.kernels?.length ?? 0;
      const geo = Number(report.geomean_speedup);
      const saved = report.persisted === true ? ', saved in IndexedDB' : report.persisted === false ? `, NOT saved (${report.persistError ?? 'IndexedDB failed'})` : '';
      status.textContent = `${n} kernels in ${(Number(report.spent_ms) / 1000).toFixed(1)} s, geomean speedup ${Number.isFinite(geo) ? geo.toFixed(2) : '–'}×${saved}`;
      panel.dataset.tune = 'done';
      panel.dataset.tuned = String(n);
      return report;
    } catch (e) {
      status.textContent = `tuning failed: ${e.code ?? ''} ${e.message}`;
      panel.dataset.tune = 'error';
      return null;
    } finally {
      tuning = false;
      tuneBtn.disabled = !model;
      await refresh();
    }
  }

  tuneBtn.addEventListener('click', () => tune());
  tuneBtn.title = 'Load a text model first: the tuner times the kernels that model runs.';
  setInterval(() => {
    if (!document.hidden) refresh();
  }, 3000);

  return {
    refresh,
    tune,
    setModel(m) {
      model = m;
      tuneBtn.disabled = !m || tuning;
      tuneBtn.title = m ? 'Time candidate kernel configurations of the loaded model on this GPU' : tuneBtn.title;
    },
  };
}
