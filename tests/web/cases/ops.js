// Browser cases of the ops: the adapter, neighborhood and block-sparse attention against
// their references, argument errors.

import {
  BS_GRID,
  BS_MOBA,
  Engine,
  NA_1D,
  NA_2D,
  NA_3D,
  bsCases,
  expectCode,
  fail,
  naCases,
  topK,
} from './common.js';

export const cases = {
  /** The adapter is there, in the worker and in the page's thread. */
  async info({ log }) {
    const engine = await Engine.create();
    const info = await engine.info();
    await engine.dispose();
    if (!engine.worker) fail('Engine.create() did not default to the worker');
    if (typeof info.adapter !== 'string' || !info.backend) fail(`no adapter: ${JSON.stringify(info)}`);
    if (!info.limits || !info.fingerprint) fail(`no limits/fingerprint: ${JSON.stringify(info)}`);
    // The engine's limits are the page's adapter's (SwiftShader: 256 invocations, 10 buffers).
    const a = await navigator.gpu.requestAdapter();
    const want = {
      max_compute_invocations_per_workgroup: a.limits.maxComputeInvocationsPerWorkgroup,
      max_storage_buffers_per_shader_stage: a.limits.maxStorageBuffersPerShaderStage,
    };
    for (const [k, v] of Object.entries(want)) {
      if (info.limits[k] !== v) fail(`limit ${k}: engine ${info.limits[k]}, adapter ${v}`);
    }
    const local = await Engine.create({ worker: false });
    const li = await local.info();
    await local.dispose();
    if (local.worker || li.adapter !== info.adapter) fail(`local engine: ${JSON.stringify(li)}`);
    await expectCode(engine.info(), 'DISPOSED', 'info after dispose');
    log(`  adapter ${info.adapter} backend ${info.backend} features ${JSON.stringify(info.features)}`);
    return { adapter: info.adapter, memory: info.memory };
  },

  /** Run in a Chromium launched without WebGPU. */
  async webgpu_unavailable() {
    await expectCode(Engine.create(), 'WEBGPU_UNAVAILABLE', 'Engine.create() in the worker');
    await expectCode(Engine.create({ worker: false }), 'WEBGPU_UNAVAILABLE', 'Engine.create({worker: false})');
    return {};
  },

  async na_1d({ log }) {
    const e = await Engine.create();
    try { return await naCases(e, log, NA_1D, 1000); } finally { await e.dispose(); }
  },
  async na_2d({ log }) {
    const e = await Engine.create();
    try { return await naCases(e, log, NA_2D, 2000); } finally { await e.dispose(); }
  },
  async na_3d({ log }) {
    // In the page's thread: the same engine code without the worker.
    const e = await Engine.create({ worker: false });
    try { return await naCases(e, log, NA_3D, 3000); } finally { await e.dispose(); }
  },
  async bsa_moba({ log }) {
    const e = await Engine.create();
    try { return await bsCases(e, log, BS_MOBA, 4000); } finally { await e.dispose(); }
  },
  async bsa_grid({ log }) {
    const e = await Engine.create();
    try { return await bsCases(e, log, BS_GRID, 5000); } finally { await e.dispose(); }
  },

  /** Bad arguments are INVALID_ARGUMENT/SHAPE errors, not crashes, and the engine survives. */
  async op_errors() {
    const e = await Engine.create();
    try {
      const x = new Float32Array(2 * 3 * 8);
      const bad = await e.neighborhoodAttention(x, x, x, { shape: [2, 3, 8], kernel: [9] }).then(
        () => fail('kernel 9 > axis 3 was accepted'),
        (err) => err,
      );
      if (!['INVALID_ARGUMENT', 'SHAPE'].includes(bad.code)) fail(`kernel > axis: code ${bad.code} (${bad.message})`);
      const short = new Float32Array(5);
      const bad2 = await e.blockSparseAttention(short, short, short, {
        qShape: [1, 4, 1, 2], kvShape: [1, 4, 1, 2], block: 2, select: { topK: 1 },
      }).then(() => fail('q of 5 floats for shape [1,4,1,2] was accepted'), (err) => err);
      if (!['INVALID_ARGUMENT', 'SHAPE'].includes(bad2.code)) fail(`short q: code ${bad2.code} (${bad2.message})`);
      await naCases(e, () => {}, [NA_1D[0]], 1000);
      return { codes: [bad.code, bad2.code] };
    } finally {
      await e.dispose();
    }
  },
};
