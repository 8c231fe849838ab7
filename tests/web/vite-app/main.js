// A fresh Vite app that installed the packed `webjit` tarball: the worker and the wasm file
// must survive bundling. run.mjs builds it (vite build) and reads window.viteResult.
import { Engine } from 'webjit';

async function main() {
  const engine = await Engine.create();
  const info = await engine.info();
  // One token attends only to itself: the output is v, exactly.
  const q = Float32Array.from({ length: 8 }, (_, i) => Math.sin(i + 1));
  const v = Float32Array.from({ length: 8 }, (_, i) => Math.cos(i + 1));
  const { output } = await engine.neighborhoodAttention(q, q, v, { shape: [1, 1, 1, 8], kernel: [1] });
  await engine.dispose();
  const same = output.length === 8 && output.every((x, i) => Math.abs(x - v[i]) < 1e-6);
  return { ok: same && engine.worker, worker: engine.worker, backend: info.backend, output: Array.from(output) };
}

main().then(
  (r) => (window.viteResult = r),
  (e) => (window.viteResult = { ok: false, error: `${e.code}: ${e.message}` }),
).then(() => (document.getElementById('out').textContent = JSON.stringify(window.viteResult)));
