#!/usr/bin/env python3
"""Exact float64 reference evaluator for the decoder families webjit runs (llama, qwen2, qwen3,
phi3, gemma2; not gemma3): dequantizes every tensor of a GGUF to float64 and runs the
forward pass as llama.cpp's graphs define it (src/models/<arch>.cpp, llama-graph.cpp, ggml's
rope), with no rounding of activations or of the KV cache. llama.cpp's own results carry the
noise of its 8-bit activation quantization (q8_1 / q8_K in the quantized dot products) and of its
f16 KV cache; this evaluator has none, so it tells which of two engines is off.

    python scripts/f64_decoder.py MODEL.gguf --ids 1,2,3 [--steps N]
        prints the last position's top-10 and N greedy steps (top-5 and gap each)
    python scripts/f64_decoder.py --record FAMILY [FAMILY ...]
        writes tests/data/families/<family>.f64.json (+ <family>.<prompt>.f64.logits.f16) for
        the prompts of tests/data/families/<family>.json (see README there)
    python scripts/f64_decoder.py --compare FAMILY [FAMILY ...]
        llama.cpp's recorded logits against f64 on llama.cpp's own greedy tokens
    python scripts/f64_decoder.py --record-long-factors phi3 [--n-ctx 1024]
        writes tests/data/families/phi3.long_factors.f64.json (+ .logits.f16): the short
        prompt with a context above the original one, so Phi-3's long rope factors apply

Needs gguf + numpy only (the pinned venv ~/.cache/webjit/pyenv-gguf).
"""

import argparse
import json
import math
import os
import sys

import numpy as np

import gguf

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CACHE = os.environ.get("WEBJIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "webjit")
DATA = os.path.join(ROOT, "tests", "data", "families")
N_STEPS = 16
TOPK = 10


class Model:
    """A GGUF's hyper-parameters (as llama.cpp reads them) and float64 weights."""

    def __init__(self, path):
        r = gguf.GGUFReader(path)
        self.meta = {}
        for k, f in r.fields.items():
            if k.startswith("tokenizer.ggml."):
                continue
            try:
                self.meta[k] = f.contents()
            except Exception:  # noqa: BLE001 (unreadable keys are not needed here)
                pass
        self.arch = self.meta["general.architecture"]
        self.w = {}
        for t in r.tensors:
            a = gguf.quants.dequantize(t.data, t.tensor_type)
            # GGUF lists dims innermost first; numpy rows are the outer dim: [n_out, n_in].
            self.w[t.name] = np.asarray(a, dtype=np.float64).reshape(
                [int(x) for x in reversed(t.shape)])
        a = self.arch

        def g(key, default=None):
            return self.meta.get(f"{a}.{key}", default)

        self.n_layer = int(g("block_count"))
        self.d = int(g("embedding_length"))
        self.n_head = int(g("attention.head_count"))
        self.n_kv = int(g("attention.head_count_kv", self.n_head))
        self.head = int(g("attention.key_length", self.d // self.n_head))
        self.n_rot = int(g("rope.dimension_count", self.head))
        self.eps = float(g("attention.layer_norm_rms_epsilon"))
        self.base = float(g("rope.freq_base", 10000.0))
        self.neox = a != "llama"  # llama.cpp: LLAMA_ROPE_TYPE_NORM for llama, NEOX for the rest
        self.attn_cap = float(g("attn_logit_softcapping", 0.0) or 0.0)
        self.final_cap = float(g("final_logit_softcapping", 0.0) or 0.0)
        # attn_factor multiplies rope's cos and sin (no YaRN here: ext_factor 0, freq_scale 1).
        self.attn_factor = float(g("rope.scaling.attn_factor", 1.0))
        self.swa = 0
        if a == "gemma2":  # phi3's window is ignored by llama.cpp; llama has none
            self.swa = int(g("attention.sliding_window", 4096))
        self.kq_scale = 1.0 / math.sqrt(self.head)
        self.out = self.w.get("output.weight", self.w["token_embd.weight"])

    def rope_factors(self, n_ctx):
        if "rope_freqs.weight" in self.w:
            return self.w["rope_freqs.weight"]
        if "rope_factors_short.weight" in self.w:
            orig = int(self.meta.get(f"{self.arch}.rope.scaling.original_context_length", 0))
            # llama.cpp: long factors when the context per sequence exceeds the original.
            key = "rope_factors_long.weight" if n_ctx > orig else "rope_factors_short.weight"
            return self.w[key]
        return None


def rms(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, pos, m, factors):
    """x [T, H, head]; ggml_rope_ext with ext_factor 0 and freq_scale 1."""
    n = m.n_rot
    half = n // 2
    inv = m.base ** (-2.0 * np.arange(half) / n)
    if factors is not None:
        inv = inv / factors
    th = pos[:, None].astype(np.float64) * inv[None, :]
    c = (np.cos(th) * m.attn_factor)[:, None, :]
    s = (np.sin(th) * m.attn_factor)[:, None, :]
    y = x.copy()
    if m.neox:
        a, b = x[..., :half], x[..., half:n]
        y[..., :half] = a * c - b * s
        y[..., half:n] = a * s + b * c
    else:
        a, b = x[..., 0:n:2], x[..., 1:n:2]
        y[..., 0:n:2] = a * c - b * s
        y[..., 1:n:2] = a * s + b * c
    return y


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def silu(x):
    return x / (1.0 + np.exp(-x))


def forward(m, ids, n_ctx, out_from):
    """Logits [len(ids) - out_from, n_vocab] of positions out_from.. of one causal sequence."""
    w = m.w
    T = len(ids)
    pos = np.arange(T)
    x = w["token_embd.weight"][np.asarray(ids)]
    if m.arch == "gemma2":
        x = x * math.sqrt(m.d)
    factors = m.rope_factors(n_ctx)
    H, K, D = m.n_head, m.n_kv, m.head
    causal = pos[None, :] <= pos[:, None]
    for il in range(m.n_layer):
        p = f"blk.{il}."

        def lin(name, v):
            y = v @ w[p + name + ".weight"].T
            b = w.get(p + name + ".bias")
            return y if b is None else y + b

        h = rms(x, w[p + "attn_norm.weight"], m.eps)
        if p + "attn_qkv.weight" in w:
            qkv = lin("attn_qkv", h)  # fused: q | k | v along the output rows
            q, k, v = np.split(qkv, [H * D, H * D + K * D], axis=1)
        else:
            q, k, v = lin("attn_q", h), lin("attn_k", h), lin("attn_v", h)
        q, k, v = q.reshape(T, H, D), k.reshape(T, K, D), v.reshape(T, K, D)
        if p + "attn_q_norm.weight" in w:  # qwen3: per-head RMSNorm before rope
            q = rms(q, w[p + "attn_q_norm.weight"], m.eps)
            k = rms(k, w[p + "attn_k_norm.weight"], m.eps)
        q, k = rope(q, pos, m, factors), rope(k, pos, m, factors)
        mask = causal
        if m.swa and il % 2 == 0:  # gemma2: sliding window on even layers
            mask = causal & (pos[:, None] - pos[None, :] < m.swa)
        att = np.empty((T, H, D))
        for hh in range(H):
            kv = hh // (H // K)
            s = (q[:, hh, :] @ k[:, kv, :].T) * m.kq_scale
            if m.attn_cap:
                s = m.attn_cap * np.tanh(s / m.attn_cap)
            s = np.where(mask, s, -np.inf)
            s = np.exp(s - s.max(axis=1, keepdims=True))
            s /= s.sum(axis=1, keepdims=True)
            att[:, hh, :] = s @ v[:, kv, :]
        a = lin("attn_output", att.reshape(T, H * D))
        if p + "post_attention_norm.weight" in w:
            a = rms(a, w[p + "post_attention_norm.weight"], m.eps)
        x = x + a
        h = rms(x, w[p + "ffn_norm.weight"], m.eps)
        if p + "ffn_gate.weight" in w:
            g, u = lin("ffn_gate", h), lin("ffn_up", h)
        else:  # phi3: fused gate | up, the gate first
            g, u = np.split(lin("ffn_up", h), 2, axis=1)
        act = gelu_tanh(g) if m.arch == "gemma2" else silu(g)
        f = lin("ffn_down", act * u)
        if p + "post_ffw_norm.weight" in w:
            f = rms(f, w[p + "post_ffw_norm.weight"], m.eps)
        x = x + f
    x = rms(x[out_from:], w["output_norm.weight"], m.eps)
    logits = x @ m.out.T
    if m.final_cap:
        logits = m.final_cap * np.tanh(logits / m.final_cap)
    return logits


def top(v, k):
    """The k largest (id, logit), ties to the lower id."""
    order = np.argsort(-v, kind="stable")[:k]
    return [[int(i), float(v[i])] for i in order]


def greedy(m, ids, n_ctx, steps):
    """Last prompt logits and `steps` greedy steps of f64 itself: per step (id, top, gap)."""
    seq = list(ids)
    last = None
    out = []
    for i in range(steps):
        lg = forward(m, seq, n_ctx, len(seq) - 1)[0]
        if i == 0:
            last = lg
        t = top(lg, TOPK)
        out.append(dict(id=t[0][0], top=t, gap=t[0][1] - t[1][1]))
        seq.append(t[0][0])
    return last, out


def model_path(family):
    return os.path.join(CACHE, "models", f"tiny-{family}.gguf")


def f16_file(rel):
    return np.fromfile(os.path.join(DATA, rel), dtype="<f2").astype(np.float64)


def llama_deviation(m, ref, p):
    """How far llama.cpp's recorded numbers for prompt p are from f64 evaluated on llama.cpp's
    own tokens: at the last prompt position (max |diff| on f64's top-10 ids, NMSE, f64's
    argmax) and per greedy step (f64's argmax and gap on llama.cpp's context, and the largest
    rank-by-rank difference of the top-5 logits, token-by-token or batched, whichever is
    nearer)."""
    ids = p["prompt_ids"] + [s["id"] for s in p["greedy"]]
    n0 = len(p["prompt_ids"])
    lg = forward(m, ids, ref["n_ctx"], n0 - 1)
    llama_last = f16_file(p["logits_f16"])
    t10 = [i for i, _ in top(lg[0], TOPK)]
    steps = []
    for i, s in enumerate(p["greedy"]):
        f = top(lg[i], 5)

        def rank_dev(t5):
            return max(abs(l - f[k][1]) for k, (_, l) in enumerate(t5))

        dev = rank_dev(s["top5"])
        if s.get("top5_batched"):
            dev = min(dev, rank_dev(s["top5_batched"]))
        steps.append(dict(f64_id=f[0][0], f64_gap=f[0][1] - f[1][1], max_abs_rank5=dev))
    return dict(
        last_f64_argmax=t10[0],
        last_max_abs_top10=float(np.max(np.abs(llama_last[t10] - lg[0][t10]))),
        last_nmse=float(np.sum((llama_last - lg[0]) ** 2) / np.sum(lg[0] ** 2)),
        steps=steps)


def record(family):
    ref = json.load(open(os.path.join(DATA, f"{family}.json")))
    m = Model(model_path(family))
    n_ctx = ref["n_ctx"]
    prompts = []
    for p in ref["prompts"]:
        last, steps = greedy(m, p["prompt_ids"], n_ctx, N_STEPS)
        f16 = f"{family}.{p['name']}.f64.logits.f16"
        last.astype("<f2").tofile(os.path.join(DATA, f16))
        dev = llama_deviation(m, ref, p)
        prompts.append(dict(name=p["name"], prompt_ids=p["prompt_ids"], logits_f16=f16,
                            last_top10=top(last, TOPK), greedy=steps, llama_cpp=dev))
        print(f"{family} {p['name']}: f64 gaps "
              + " ".join(f"{s['gap']:.3f}" for s in steps)
              + f"\n  llama.cpp - f64: last top-10 {dev['last_max_abs_top10']:.3f}, NMSE "
              f"{dev['last_nmse']:.2e}, steps "
              + " ".join(f"{s['max_abs_rank5']:.2f}" for s in dev["steps"]))
    doc = dict(
        about="Exact float64 evaluation (scripts/f64_decoder.py) of tiny-" + family + ".gguf "
              "on the prompts of " + family + ".json: last prompt position's top-10, greedy "
              "steps of f64 itself (id, top-10, gap), full last logits in logits_f16 "
              "(little-endian f16); llama_cpp: llama.cpp's deviation from f64 on its own "
              "greedy tokens.",
        family=family, gguf_sha256=ref["gguf_sha256"], n_ctx=n_ctx, n_vocab=ref["n_vocab"],
        prompts=prompts)
    with open(os.path.join(DATA, f"{family}.f64.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def record_long_factors(family, n_ctx, prompt="short", steps=8):
    """One prompt of <family>.json evaluated with n_ctx above the model's original context
    (Phi-3's long rope factors). No llama.cpp numbers: its references are all n_ctx 512."""
    ref = json.load(open(os.path.join(DATA, f"{family}.json")))
    m = Model(model_path(family))
    orig = int(m.meta.get(f"{family}.rope.scaling.original_context_length", 0))
    if "rope_factors_long.weight" not in m.w or n_ctx <= orig:
        sys.exit(f"{family}: needs rope_factors_long and --n-ctx above {orig} (got {n_ctx})")
    p = next(p for p in ref["prompts"] if p["name"] == prompt)
    last, greedy_steps = greedy(m, p["prompt_ids"], n_ctx, steps)
    tag = f"{family}.long_factors"
    f16 = f"{tag}.{prompt}.f64.logits.f16"
    last.astype("<f2").tofile(os.path.join(DATA, f16))
    doc = dict(
        about="Exact float64 evaluation (scripts/f64_decoder.py --record-long-factors) of tiny-"
              + family + ".gguf with n_ctx above its original context, so the long rope "
              "factors apply: last prompt position's top-10, greedy steps of f64 itself (id, "
              "top-10, gap), full last logits in logits_f16 (little-endian f16).",
        family=family, gguf_sha256=ref["gguf_sha256"], n_ctx=n_ctx, original_context=orig,
        n_vocab=ref["n_vocab"],
        prompts=[dict(name=prompt, prompt_ids=p["prompt_ids"], logits_f16=f16,
                      last_top10=top(last, TOPK), greedy=greedy_steps)])
    with open(os.path.join(DATA, f"{tag}.f64.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"{tag} {prompt} (n_ctx {n_ctx}): f64 gaps "
          + " ".join(f"{s['gap']:.3f}" for s in greedy_steps))


def compare(family):
    """llama.cpp's recorded numbers against f64 evaluated on llama.cpp's own token sequence."""
    ref = json.load(open(os.path.join(DATA, f"{family}.json")))
    m = Model(model_path(family))
    worst = 0.0
    for p in ref["prompts"]:
        ids = p["prompt_ids"] + [s["id"] for s in p["greedy"]]
        n0 = len(p["prompt_ids"])
        lg = forward(m, ids, ref["n_ctx"], n0 - 1)
        llama_last = f16_file(p["logits_f16"])
        top10 = np.argsort(-lg[0], kind="stable")[:10]
        d_last = np.max(np.abs(llama_last[top10] - lg[0][top10]))
        nmse = np.sum((llama_last - lg[0]) ** 2) / np.sum(lg[0] ** 2)
        worst = max(worst, d_last)
        print(f"{family} {p['name']}: last top-10 max|llama-f64| {d_last:.3f}, NMSE {nmse:.2e}")
        for i, s in enumerate(p["greedy"]):
            e = lg[i]
            d = max(abs(l - e[t]) for t, l in s["top5"])
            db = max(abs(l - e[t]) for t, l in s.get("top5_batched") or s["top5"])
            f = top(e, 2)
            worst = max(worst, d)
            flag = " <- f64 argmax differs" if f[0][0] != s["id"] else ""
            print(f"  step {i:2}: llama gap {s['gap']:.3f} f64 gap {f[0][1] - f[1][1]:.3f} "
                  f"max|llama-f64| top5 {d:.3f} (batched {db:.3f}){flag}")
    print(f"{family}: worst |llama.cpp - f64| {worst:.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", nargs="?")
    ap.add_argument("--ids")
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--n-ctx", type=int, help="default 512 (1024 with --record-long-factors)")
    ap.add_argument("--record", nargs="+", metavar="FAMILY")
    ap.add_argument("--compare", nargs="+", metavar="FAMILY")
    ap.add_argument("--record-long-factors", metavar="FAMILY")
    a = ap.parse_args()
    if a.record_long_factors:
        record_long_factors(a.record_long_factors, a.n_ctx or 1024)
    elif a.record:
        for f in a.record:
            record(f)
    elif a.compare:
        for f in a.compare:
            compare(f)
    else:
        m = Model(a.model)
        ids = [int(x) for x in a.ids.split(",")]
        last, steps = greedy(m, ids, a.n_ctx or 512, a.steps)
        print(json.dumps(dict(last_top10=top(last, TOPK), greedy=steps)))


if __name__ == "__main__":
    sys.exit(main())
