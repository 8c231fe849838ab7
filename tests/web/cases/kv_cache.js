// The quantized KV cache in the browser: tiny-llama.gguf loaded with kvCache 'q8_0' against the
// native CLI with --kv-cache q8_0 (run by tests/web/native.mjs when the suite starts): greedy
// tokens and top logits, the cache's size against the q8_0 layout, and an unknown mode's error.
// The same with kvCache 'kivi2' over a ~250-token prompt, so the prompt's append quantizes a
// group and a decode step completes the next one (the browser's flush against the native one).

import { Engine, TINY, collect, expectCode, fail } from './common.js';

// As in families.js: SwiftShader and lavapipe agree to f32 rounding of these random-weight
// logits; past a step whose native top-2 gap is below GAP the ids may legitimately differ.
const LOGIT_TOL = 0.05;
const LOGIT_RTOL = 2e-3;
const GAP = 0.05;

/** Greedy steps of `m` from the native run's prompt ids, each step's ids and top logits against
 *  the native run's, up to its first near tie. */
async function greedyAsNative(m, p) {
  const toks = await collect(m.generateTokens(p.native.prompt_tokens, { maxTokens: p.steps }));
  if (toks.length !== p.native.tokens.length) fail(`${toks.length} tokens, native ${p.native.tokens.length}`);
  let compared = 0;
  for (let s = 0; s < toks.length; s++) {
    const top = p.native.top_logits[s];
    const tol = Math.max(LOGIT_TOL, LOGIT_RTOL * Math.abs(top[0][1]));
    top.forEach(([, wl], k) => {
      const got = toks[s].top[k];
      if (!(got && Math.abs(got[1] - wl) <= tol)) fail(`step ${s}: rank-${k} logit ${got && got[1]} vs native ${wl}`);
    });
    if (toks[s].id !== p.native.tokens[s]) fail(`step ${s}: token ${toks[s].id}, native ${p.native.tokens[s]}`);
    compared++;
    if (top[0][1] - top[1][1] < GAP) break;
  }
  return { toks, compared };
}

export const cases = {
  async kv_cache_q8_0({ log, params: p }) {
    if (p.native.kv_cache !== 'q8_0') fail(`native run: kv_cache ${p.native.kv_cache}, want q8_0`);
    const e = await Engine.create();
    try {
      const err = await expectCode(e.loadModel(TINY, { kvCache: 'q3' }), 'INVALID_ARGUMENT', "kvCache 'q3'");
      if (!/f16.*q8_0.*q4_0/.test(err.message)) fail(`kvCache 'q3': the error does not list the modes: ${err.message}`);
      const m = await e.loadModel(TINY, { maxContext: p.context, kvCache: 'q8_0' });
      const i = m.info;
      if (i.kv_cache !== 'q8_0') fail(`info.kv_cache ${i.kv_cache}`);
      // q8_0 rows: per 32 values 32 int8 and an f16 scale, the scales two per 4-byte word.
      const nb = i.d_model / i.n_heads / 32;
      const row = nb * 32 + Math.ceil(nb / 2) * 4;
      const want = i.n_layers * 2 * i.max_context * i.n_kv_heads * row;
      if (i.kv_cache_bytes !== want) fail(`info.kv_cache_bytes ${i.kv_cache_bytes}, the q8_0 layout takes ${want}`);
      if (i.kv_cache_bytes !== p.native.kv_cache_bytes) fail(`info.kv_cache_bytes ${i.kv_cache_bytes}, native ${p.native.kv_cache_bytes}`);
      const { toks, compared } = await greedyAsNative(m, p);
      log(`  q8_0 KV cache of ${i.kv_cache_bytes} bytes; ${compared} of ${toks.length} greedy steps = native --kv-cache q8_0`);
      await m.dispose();
    } finally {
      await e.dispose();
    }
  },

  async kv_cache_kivi2({ log, params: p }) {
    if (p.native.kv_cache !== 'kivi2') fail(`native run: kv_cache ${p.native.kv_cache}, want kivi2`);
    const e = await Engine.create();
    try {
      const m = await e.loadModel(TINY, { maxContext: p.context, kvCache: 'kivi2' });
      const i = m.info;
      if (i.kv_cache !== 'kivi2') fail(`info.kv_cache ${i.kv_cache}`);
      // kivi2 words per layer and kv head (shaders/kivi.wgsl): K 9 words per channel per group
      // of 128 slots, V per slot 2-bit codes and a (scale, min) word per 32 channels, and
      // each a 256-row f16 residual window.
      const d = i.d_model / i.n_heads;
      const res = 256 * d / 2;
      const kw = Math.ceil(i.max_context / 128) * 9 * d + res;
      const vw = i.max_context * (d / 16 + d / 32) + res;
      const want = i.n_layers * i.n_kv_heads * (kw + vw) * 4;
      if (i.kv_cache_bytes !== want) fail(`info.kv_cache_bytes ${i.kv_cache_bytes}, the kivi2 layout takes ${want}`);
      if (i.kv_cache_bytes !== p.native.kv_cache_bytes) fail(`info.kv_cache_bytes ${i.kv_cache_bytes}, native ${p.native.kv_cache_bytes}`);
      if (p.native.prompt_tokens.length + p.steps < 257) fail(`prompt of ${p.native.prompt_tokens.length} tokens does not reach position 256`);
      const { toks, compared } = await greedyAsNative(m, p);
      log(`  kivi2 KV cache of ${i.kv_cache_bytes} bytes; ${compared} of ${toks.length} greedy steps = native --kv-cache kivi2`);
      await m.dispose();
    } finally {
      await e.dispose();
    }
  },
};
