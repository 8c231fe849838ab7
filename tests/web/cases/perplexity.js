// TextModel.perplexity in the browser against `webjit perplexity` natively (run by
// tests/web/native.mjs when the suite starts) on tiny-llama.gguf: the same token counts, chunks
// and perplexity after every chunk, progress per chunk, and the errors of bad arguments.

import { Engine, TINY, expectCode, fail } from './common.js';

// SwiftShader and lavapipe agree to f32 rounding; a perplexity is exp(mean NLL), so a relative
// 1e-4 is ~1e-4 nats per token.
const RTOL = 1e-4;

export const cases = {
  async perplexity({ log, params: p }) {
    const e = await Engine.create();
    try {
      const m = await e.loadModel(TINY, { maxContext: 128 });
      const seen = [];
      const r = await m.perplexity(p.text, { ctx: p.ctx, chunks: p.chunks, onChunk: (c) => seen.push(c) });
      const n = p.native;
      for (const k of ['n_ctx', 'chunks', 'text_tokens', 'scored']) {
        if (r[k] !== n[k]) fail(`${k} ${r[k]}, native ${n[k]}`);
      }
      if (r.running_ppl.length !== p.chunks) fail(`running_ppl has ${r.running_ppl.length} entries, ${p.chunks} chunks`);
      r.running_ppl.forEach((v, i) => {
        const w = n.running_ppl[i];
        if (!(Math.abs(v - w) <= RTOL * w)) fail(`ppl after chunk ${i + 1}: ${v}, native ${w}`);
      });
      if (!(Math.abs(r.ppl - n.ppl) <= RTOL * n.ppl)) fail(`ppl ${r.ppl}, native ${n.ppl}`);
      if (!(r.ppl_err > 0)) fail(`ppl_err ${r.ppl_err}`);
      if (seen.length !== p.chunks || seen.some((c, i) => c.chunk !== i + 1 || c.chunks !== p.chunks)) {
        fail(`onChunk saw ${JSON.stringify(seen)}`);
      }
      if (Math.abs(seen[seen.length - 1].ppl - r.ppl) > RTOL * r.ppl) fail('the last chunk event differs from the result');
      await expectCode(m.perplexity(p.text, { ctx: 256 }), 'INVALID_ARGUMENT', 'ctx over maxContext');
      await expectCode(m.perplexity(p.text, { ctx: 2 }), 'INVALID_ARGUMENT', 'ctx 2');
      await expectCode(m.perplexity('too short', { ctx: 64 }), 'INVALID_ARGUMENT', 'a text under 2 x ctx tokens');
      await expectCode(m.perplexity(42, { ctx: 64 }), 'INVALID_ARGUMENT', 'text not a string');
      // The model still generates afterwards.
      const ids = await m.tokenize('Hello');
      const lg = await m.logits(ids);
      if (!(lg instanceof Float32Array) || !lg.every(Number.isFinite)) fail('logits after perplexity');
      log(`  PPL ${r.ppl.toFixed(4)} +/- ${r.ppl_err.toFixed(4)} over ${r.scored} tokens = native ${n.ppl.toFixed(4)}; ${seen.length} progress events`);
      await m.dispose();
    } finally {
      await e.dispose();
    }
  },
};
