#!/usr/bin/env python3
"""Writes one tiny random-weight GGUF per decoder family webjit supports beside gemma3, with the
family's real metadata keys and tensor names (as llama.cpp's convert_hf_to_gguf.py writes them),
small dimensions and a real-size vocabulary, and records llama.cpp references for each.

    ~/.cache/webjit-llamavenv/bin/python scripts/make_tiny_families.py [--only FAMILY ...]
        writes ~/.cache/webjit/models/tiny-<family>.gguf and records
        tests/data/families/<family>.json + <family>.<prompt>.logits.f16
    python scripts/make_tiny_families.py --gguf-only DIR [--only FAMILY ...]
        only the models (gguf + numpy + tokenizers, no llama.cpp): what scripts/fetch-models.sh
        runs in its pinned venv; it checks each file's sha256
    ... --sensitivity
        llama.cpp on variants with one family feature removed (rope factors, soft-caps, biases,
        ...): how far each moves the last logits, i.e. that the golden bounds can see it

Families (see FAMILIES): llama3, smollm2, mistral (arch `llama`), qwen2, qwen3, phi3, gemma2.
Byte-level BPE vocabularies come from scripts/bpe_vocab.py; SentencePiece ones are cut from the
Gemma 3 vocabulary in the model cache (make models fetches it first), see spm_vocab().

Weights are random blocks scaled so each matrix has a standard deviation near 1.6/sqrt(n_in):
every sublayer then moves the residual stream about as much as it holds, so a bug in any of
them moves the logits. Every file is seeded: reruns write the same bytes.
"""

import argparse
import json
import math
import os
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType as Q

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

CACHE = os.environ.get("WEBJIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "webjit")
GEMMA = os.path.join(CACHE, "models", "gemma-3-270m-q4_k_m.gguf")
OUT_JSON = os.path.join(ROOT, "tests", "data", "families")
N_GREEDY = 16
LOGIT_STD = 5.0

# llama.cpp token types.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# Each family's chat template, one file per family: the strings tests/data/chat_templates
# renders (record_chat_template_refs.py: real ones from the llama-cpp-python 0.3.36 sdist;
# mistral is its MISTRAL_INSTRUCT_CHAT_TEMPLATE, smollm2 written in SmolLM2's format).
TEMPLATES = os.path.join(HERE, "chat_templates")

F32, F16, Q8, Q6K, Q4K, Q5, Q4 = Q.F32, Q.F16, Q.Q8_0, Q.Q6_K, Q.Q4_K, Q.Q5_0, Q.Q4_0

# Per layer the types of (q or qkv, k, v, o, gate, up, down); cycled over the layers. K-quants
# need 256 | n_in, the others 32 | n_in.
FAMILIES = {
    # Llama 3.2: GQA, tied output, rope_freqs of the Llama 3.1 rope scaling.
    "llama3": dict(
        arch="llama", seed=1, layers=2, d=256, heads=4, kv=2, head=64, ffn=512, ctx=512,
        eps=1e-5, rope_base=500000.0, vocab="bpe:llama-bpe", tied=True, embd=F16, res_gain=3.0,
        key_length=True, rope_dims=True, vocab_size=True, llama3_rope=(32.0, 1.0, 4.0, 8192),
        types=[(Q4K, Q8, F16, Q6K, Q8, Q4K, Q6K), (Q6K, Q4K, Q5, Q8, Q4K, Q8, Q4)]),
    # SmolLM2: llama with MHA-ish GQA (3 heads on 1), d not a multiple of 256, tied output.
    "smollm2": dict(
        arch="llama", seed=2, layers=3, d=192, heads=3, kv=1, head=64, ffn=512, ctx=512,
        eps=1e-5, rope_base=100000.0, vocab="bpe:smollm", tied=True, embd=Q8, res_gain=3.0,
        rope_dims=True, vocab_size=True,
        types=[(Q8, Q5, F16, Q8, Q4, Q8, Q6K), (Q5, Q8, Q8, Q4, Q8, Q5, Q4K)]),
    # Mistral 7B v0.3 layout: SentencePiece with [INST] control tokens, untied output.
    "mistral": dict(
        arch="llama", seed=3, layers=2, d=256, heads=8, kv=2, head=32, ffn=512, ctx=512,
        eps=1e-5, rope_base=1000000.0, vocab="spm:mistral", tied=False, embd=Q4K, out=Q6K,
        rope_dims=True, vocab_size=True,
        types=[(Q4K, Q4K, Q6K, Q4K, Q4K, Q4K, Q6K), (Q8, Q5, Q8, Q6K, Q4, Q8, Q4K)]),
    # Qwen2.5: q/k/v biases, tied output, NEOX rope.
    "qwen2": dict(
        arch="qwen2", seed=4, layers=2, d=256, heads=4, kv=2, head=64, ffn=512, ctx=512,
        eps=1e-6, rope_base=1000000.0, vocab="bpe:qwen2", tied=True, embd=Q8, qkv_bias=True, res_gain=3.0,
        types=[(Q5, Q5, Q8, Q4K, Q5, Q5, Q6K), (Q4K, Q8, Q6K, Q8, Q4K, Q4, Q8)]),
    # Qwen3: per-head q/k RMSNorm, head_dim (64) != d/heads (32), no biases, untied.
    "qwen3": dict(
        arch="qwen3", seed=5, layers=3, d=128, heads=4, kv=2, head=64, ffn=512, ctx=512,
        eps=1e-6, rope_base=1000000.0, vocab="bpe:qwen2", tied=False, embd=F16, out=Q8,
        key_length=True, qk_norm=True,
        types=[(Q8, Q8, F16, Q4K, Q5, Q8, Q6K), (Q4, Q5, Q8, Q6K, Q8, Q4, Q4K)]),
    # Phi-3.5 mini: fused qkv and gate|up, longrope factors (short ones used: n_ctx <= the
    # original context), attn_factor from the converter's formula, SentencePiece, untied.
    "phi3": dict(
        arch="phi3", seed=6, layers=2, d=256, heads=4, kv=4, head=64, ffn=512, ctx=512,
        eps=1e-5, rope_base=10000.0, vocab="spm:phi3", tied=False, embd=F16, out=Q6K,
        rope_dims=True, phi3_rope=(4096, 512), fused=True, sliding_window=262144,
        types=[(Q4K, None, None, Q6K, None, Q4K, Q6K), (Q8, None, None, Q5, None, Q8, Q4K)]),
    # Gemma 2: soft-caps small enough to matter here, sliding window 16 on even layers,
    # post-norms, embeddings scaled by sqrt(d), GELU, tied output.
    "gemma2": dict(
        arch="gemma2", seed=7, layers=4, d=128, heads=4, kv=2, head=64, ffn=512, ctx=512,
        eps=1e-6, rope_base=10000.0, vocab="spm:gemma2", tied=True, embd=Q8, key_length=True,
        post_norms=(8.0, 12.0), softcap=(5.0, 20.0), sliding_window=16,
        types=[(Q8, Q5, Q8, Q4K, Q8, Q5, Q6K), (Q5, Q8, F16, Q6K, Q4, Q8, Q4K)]),
}

# Prompt candidates. record() keeps, per kind, the first whose greedy run has no near tie
# (llama.cpp's top-2 gap < 0.3) in its first CLEAR_STEPS steps, so the comparison covers that
# many tokens for every family instead of stopping at a tie the golden rule cannot judge.
CLEAR_STEPS = 6
SHORTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello, world! How are you today?",
    "Once upon a time there was a small village",
    "import numpy as np\nx = np.zeros(3)",
    "The capital of France is",
    "Numbers: 1, 22, 333, 4444 and 55555.",
    "She sells sea shells by the sea shore",
    "def main():\n    return 0",
    "Weather report for Monday: sunny, 21 degrees",
    "A list of fruits: apple, banana, cherry,",
    "Dear Sir or Madam, I am writing to",
    "SELECT name FROM users WHERE id = 7;",
    "The year 2024 was a leap year",
    "Rain, rain, go away",
    "To be or not to be, that is the question.",
]
QUESTIONS = ["What is 2+2?", "Tell me a joke.", "Hi!", "Write a haiku about rain.",
             "Why is the sky blue?", "List three colors.", "Translate 'hello' to French.",
             "What day is it?", "Summarize this: cats sleep a lot.", "Count to five.",
             "Name a planet.", "Is water wet?", "Say something nice.", "What is Rust?",
             "Give me a number."]
LONG = (
    "In 1869, the first transcontinental railroad was completed in the United States. "
    "It connected the eastern network at Council Bluffs, Iowa, with the Pacific coast at "
    "Oakland, California: 1,912 miles (3,077 km) of track, laid in about six years.\n\n"
    "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\n"
    "Caf\u00e9 cr\u00e8me, na\u00efve r\u00e9sum\u00e9, \u00fcber-stra\u00dfe; \u65e5\u672c\u8a9e "
    "\u306e\u30c6\u30ad\u30b9\u30c8 and \u0420\u043e\u0441\u0441\u0438\u044f. Prices rose 3.5% "
    "to $12,345.67 on 2024-03-15T10:30:00Z, don't they? We'll see: it's 42 degrees\tright now."
)
LONG_ENDS = ["", " Then", " The end", "\n", " So,", " Meanwhile", " 7", " It was", " And", " Why?",
             " Later", " Next:", " Finally", " In 1870", " Yes"]
# The family's special tokens written in the text (parsed as specials by llama.cpp).
SPECIAL = {
    "llama3": "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "smollm2": "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",
    "mistral": "[INST] {} [/INST]",
    "qwen2": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
             "{}<|im_end|>\n<|im_start|>assistant\n",
    "qwen3": "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
    "phi3": "<|user|>\n{}<|end|>\n<|assistant|>\n",
    "gemma2": "<start_of_turn>user\n{}<end_of_turn>\n<start_of_turn>model\n",
}


def prompts(family):
    """(kind, candidate texts) per prompt kind."""
    return [("short", SHORTS), ("special", [SPECIAL[family].format(q) for q in QUESTIONS]),
            ("long", [LONG + e for e in LONG_ENDS])]


# ---------------------------------------------------------------- vocabularies

def _gemma_vocab(path):
    r = gguf.GGUFReader(path)

    def arr(key):
        f = r.fields[key]
        return [f.parts[i] for i in f.data]

    toks = [bytes(x).decode("utf-8") for x in arr("tokenizer.ggml.tokens")]
    scores = [float(x[0]) for x in arr("tokenizer.ggml.scores")]
    types = [int(x[0]) for x in arr("tokenizer.ggml.token_type")]
    return toks, scores, types


N_CHARS = 1500  # single-character pieces kept (Gemma lists them last, most frequent first)


def _pieces(toks, types, n):
    """n normal pieces: Gemma's merged pieces best first, then its N_CHARS most frequent single
    characters, as SentencePiece BPE vocabularies (Llama 2, Mistral) order them."""
    merged = [t for t, ty in zip(toks, types) if ty == NORMAL and len(t) > 1]
    chars = [t for t, ty in zip(toks, types) if ty == NORMAL and len(t) == 1][:N_CHARS]
    return merged[: n - len(chars)] + chars


def spm_vocab(kind, gemma_path):
    """(tokens, scores, types, bos, eos, unk, pad, add_bos, add_space_prefix) of a ~32k
    SentencePiece vocabulary in the family's id layout, its pieces cut from Gemma 3's."""
    toks, scores, types = _gemma_vocab(gemma_path)
    if kind == "gemma2":
        # Gemma's own layout (controls, user-defined, bytes), truncated to 32768 ids, the
        # single characters moved into the kept range.
        head = [(t, s, ty) for t, s, ty in zip(toks, scores, types) if ty != NORMAL][:494]
        assert [t for t, _, _ in head][:4] == ["<pad>", "<eos>", "<bos>", "<unk>"]
        body = _pieces(toks, types, 32768 - len(head))
        out = head + [(p, -float(i), NORMAL) for i, p in enumerate(body)]
        ids = {t: i for i, (t, _, _) in enumerate(out)}
        return out, ids["<bos>"], ids["<eos>"], ids["<unk>"], ids["<pad>"], True, False
    bytes_ = [(f"<0x{b:02X}>", 0.0, BYTE) for b in range(256)]
    if kind == "mistral":
        ctrl = ["[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
                "[TOOL_RESULTS]", "[/TOOL_RESULTS]"] + [f"[control_{i}]" for i in range(8, 769)]
        head = [("<unk>", 0.0, UNKNOWN), ("<s>", 0.0, CONTROL), ("</s>", 0.0, CONTROL)]
        head += [(c, 0.0, CONTROL) for c in ctrl] + bytes_
        body = _pieces(toks, types, 32768 - len(head))
        out = head + [(p, -float(i), NORMAL) for i, p in enumerate(body)]
        return out, 1, 2, 0, None, True, True
    assert kind == "phi3"
    head = [("<unk>", 0.0, UNKNOWN), ("<s>", 0.0, CONTROL), ("</s>", 0.0, CONTROL)] + bytes_
    body = _pieces(toks, types, 32000 - len(head))
    out = head + [(p, -float(i), NORMAL) for i, p in enumerate(body)]
    added = ["<|endoftext|>", "<|assistant|>", "<|placeholder1|>", "<|placeholder2|>",
             "<|placeholder3|>", "<|placeholder4|>", "<|system|>", "<|end|>",
             "<|placeholder5|>", "<|placeholder6|>", "<|user|>"]
    out += [(t, 0.0, CONTROL) for t in added]
    # Phi-3's vocab_size (32064) is padded past its added tokens as the converter does.
    out += [(f"[PAD{i}]", -1000.0, UNUSED) for i in range(len(out), 32064)]
    return out, 1, 32000, 0, 32000, False, True


def write_vocab(w, spec, gemma_path):
    """Tokenizer keys; returns the vocabulary size."""
    kind, name = spec["vocab"].split(":")
    if kind == "bpe":
        from bpe_vocab import bpe_vocab, write_bpe_vocab

        v = bpe_vocab(name)
        write_bpe_vocab(w, v)
        return len(v["tokens"])
    out, bos, eos, unk, pad, add_bos, add_space = spm_vocab(name, gemma_path)
    assert len({t for t, _, _ in out}) == len(out), "duplicate pieces"
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list([t for t, _, _ in out])
    w.add_token_scores([s for _, s, _ in out])
    w.add_token_types([ty for _, _, ty in out])
    w.add_bos_token_id(bos)
    w.add_eos_token_id(eos)
    w.add_unk_token_id(unk)
    if pad is not None:
        w.add_pad_token_id(pad)
    w.add_add_bos_token(add_bos)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(add_space)
    return len(out)


# ---------------------------------------------------------------- weights

def _f16(x):
    return np.asarray(x, dtype="<f2").view(np.uint8).reshape(-1, 2)


def quant_rows(qtype, rows, cols, rng, sigma):
    """[rows, row_bytes] of random `qtype` blocks whose values have a std near sigma."""
    if qtype in (F32, F16):
        dt = np.float32 if qtype == F32 else np.float16
        a = math.sqrt(3.0) * sigma
        return rng.uniform(-a, a, (rows, cols)).astype(dt)
    if qtype in (Q8, Q5, Q4):
        nb = rows * cols // 32
        # Std of the random integer part: int8 in [-127, 127], 5-bit - 16, 4-bit - 8.
        std = {Q8: 73.3, Q5: 9.23, Q4: 4.6}[qtype]
        d = _f16(sigma / std * rng.uniform(0.75, 1.25, nb))
        nq = {Q8: 32, Q5: 20, Q4: 16}[qtype]  # Q5_0: 4 bytes of high bits, then 16 of nibbles
        q = rng.integers(0, 256, (nb, nq), dtype=np.uint8)
        if qtype == Q8:
            q[q == 128] = 129  # int8 -128 is outside what the quantizer writes
        blocks = np.concatenate([d, q], axis=1)
    elif qtype == Q4K:
        nb = rows * cols // 256
        g = sigma / 0.1  # these ranges give a std near 0.1 (make_tiny_llama.py)
        d = _f16(g * rng.uniform(3e-4, 6e-4, nb))
        dmin = _f16(g * rng.uniform(2.5e-3, 4.5e-3, nb))
        blocks = np.concatenate([d, dmin, rng.integers(0, 256, (nb, 140), dtype=np.uint8)], 1)
    elif qtype == Q6K:
        nb = rows * cols // 256
        g = sigma / 0.1
        ql_qh = rng.integers(0, 256, (nb, 192), dtype=np.uint8)
        sc = rng.integers(-128, 128, (nb, 16), dtype=np.int8).view(np.uint8)
        d = _f16(g * rng.uniform(5e-5, 1e-4, nb))
        blocks = np.concatenate([ql_qh, sc, d], axis=1)
    else:
        raise ValueError(qtype)
    return np.ascontiguousarray(blocks).reshape(rows, -1)


def add_matrix(w, name, rows, cols, qtype, rng, sigma):
    data = quant_rows(qtype, rows, cols, rng, sigma)
    if qtype in (F32, F16):
        w.add_tensor(name, data)
    else:
        w.add_tensor(name, data, raw_dtype=qtype)


def llama3_rope_freqs(head, base, factor, low, high, old_ctx):
    """The converter's rope_freqs for rope_type llama3 (conversion/llama.py)."""
    out = []
    for i in range(0, head, 2):
        freq = 1.0 / (base ** (np.float32(i) / np.float32(head)))
        wavelen = 2 * math.pi / float(np.float32(freq))
        if wavelen < old_ctx / high:
            out.append(1.0)
        elif wavelen > old_ctx / low:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def write_model(family, path, gemma_path=GEMMA, variant=None):
    """The family's GGUF at path. `variant` (sensitivity runs only) removes one feature."""
    s = FAMILIES[family]
    rng = np.random.default_rng(20261207 + s["seed"])
    arch, d, nh, nkv, hd, ffn = s["arch"], s["d"], s["heads"], s["kv"], s["head"], s["ffn"]
    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"webjit tiny {family} (random weights)")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    ctx = s["ctx"]
    if "phi3_rope" in s:
        ctx, orig = s["phi3_rope"]
        w.add_rope_scaling_orig_ctx_len(orig)
    w.add_context_length(ctx)
    w.add_embedding_length(d)
    w.add_block_count(s["layers"])
    w.add_feed_forward_length(ffn)
    w.add_head_count(nh)
    w.add_head_count_kv(nkv)
    w.add_layer_norm_rms_eps(s["eps"])
    if arch != "gemma2":
        w.add_rope_freq_base(s["rope_base"])
    if s.get("key_length"):
        w.add_key_length(hd)
        w.add_value_length(hd)
    if s.get("rope_dims"):
        w.add_rope_dimension_count(hd)
    if "softcap" in s:
        attn_cap, final_cap = s["softcap"]
        attn_cap = 1e4 if variant == "no_attn_softcap" else attn_cap
        final_cap = 1e4 if variant == "no_final_softcap" else final_cap
        w.add_attn_logit_softcapping(attn_cap)
        w.add_final_logit_softcapping(final_cap)
    if "sliding_window" in s:
        w.add_sliding_window(4096 if variant == "no_window" else s["sliding_window"])
    if "phi3_rope" in s:
        scale = ctx / orig
        attn_factor = math.sqrt(1 + math.log(scale) / math.log(orig))  # longrope's
        w.add_rope_scaling_attn_factors(1.0 if variant == "no_attn_factor" else attn_factor)
    with open(os.path.join(TEMPLATES, f"{family}.jinja"), encoding="utf-8") as f:
        w.add_chat_template(f.read())
    n_vocab = write_vocab(w, s, gemma_path)
    if s.get("vocab_size"):
        w.add_vocab_size(n_vocab)

    def norm(name, n, lo=0.8, hi=1.2):
        w.add_tensor(name, rng.uniform(lo, hi, n).astype(np.float32))

    # Logits = h . W with |h| ~ sqrt(d): W's std sets the logits' spread, LOGIT_STD, wide
    # enough that llama.cpp's top two are rarely a near tie (its mean gap over ~32k logits is
    # about LOGIT_STD / 4.5).
    spread = s.get("logit_std", LOGIT_STD) / math.sqrt(d)
    embd_sigma = spread if s["tied"] else 0.577
    add_matrix(w, "token_embd.weight", n_vocab, d, s["embd"], rng, embd_sigma)
    if "llama3_rope" in s and variant != "no_rope_freqs":
        w.add_tensor("rope_freqs.weight", llama3_rope_freqs(hd, s["rope_base"], *s["llama3_rope"]))
    if "phi3_rope" in s:
        half = hd // 2
        short = 1.0 + 1.5 * np.linspace(0, 1, half) ** 2 + rng.uniform(0, 0.1, half)
        long_ = 1.0 + 30.0 * np.linspace(0, 1, half) ** 2 + rng.uniform(0, 1, half)
        if variant == "no_short_factors":
            short = np.ones(half)
        w.add_tensor("rope_factors_long.weight", long_.astype(np.float32))
        w.add_tensor("rope_factors_short.weight", short.astype(np.float32))
    q_dim, kv_dim = nh * hd, nkv * hd
    # With a tied output, a token's own embedding left in the residual stream gives it a logit
    # of about |e|^2 / rms(residual): unless the sublayers' outputs outweigh the embedding, the
    # input token wins every step and greedy decoding only repeats it.
    res = 1.6 * s.get("res_gain", 1.0)
    for i in range(s["layers"]):
        p = f"blk.{i}."
        tq, tk, tv, to, tg, tu, td = s["types"][i % len(s["types"])]
        norm(p + "attn_norm.weight", d)
        if s.get("fused"):
            add_matrix(w, p + "attn_qkv.weight", q_dim + 2 * kv_dim, d, tq, rng, 1.6 / math.sqrt(d))
        else:
            add_matrix(w, p + "attn_q.weight", q_dim, d, tq, rng, 1.6 / math.sqrt(d))
            add_matrix(w, p + "attn_k.weight", kv_dim, d, tk, rng, 1.6 / math.sqrt(d))
            add_matrix(w, p + "attn_v.weight", kv_dim, d, tv, rng, 1.6 / math.sqrt(d))
        if s.get("qkv_bias"):
            zero = variant == "no_bias"
            for n, m in (("q", q_dim), ("k", kv_dim), ("v", kv_dim)):
                b = rng.uniform(-1.5, 1.5, m).astype(np.float32)
                w.add_tensor(p + f"attn_{n}.bias", b * (0.0 if zero else 1.0))
        if s.get("qk_norm"):
            lo, hi = (1.0, 1.0) if variant == "flat_qk_norm" else (0.5, 1.5)
            norm(p + "attn_q_norm.weight", hd, lo, hi)
            norm(p + "attn_k_norm.weight", hd, lo, hi)
        add_matrix(w, p + "attn_output.weight", d, q_dim, to, rng, res / math.sqrt(q_dim))
        if s.get("post_norms"):
            norm(p + "post_attention_norm.weight", d, *s["post_norms"])
        norm(p + "ffn_norm.weight", d)
        if s.get("fused"):
            add_matrix(w, p + "ffn_up.weight", 2 * ffn, d, tu, rng, 1.6 / math.sqrt(d))
        else:
            add_matrix(w, p + "ffn_gate.weight", ffn, d, tg, rng, 1.6 / math.sqrt(d))
            add_matrix(w, p + "ffn_up.weight", ffn, d, tu, rng, 1.6 / math.sqrt(d))
        add_matrix(w, p + "ffn_down.weight", d, ffn, td, rng, res / math.sqrt(ffn))
        if s.get("post_norms"):
            norm(p + "post_ffw_norm.weight", d, *s["post_norms"])
    norm("output_norm.weight", d)
    if not s["tied"]:
        add_matrix(w, "output.weight", n_vocab, d, s["out"], rng, spread)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return n_vocab


# ---------------------------------------------------------------- references

def _llama(path, ctx):
    from llama_cpp import Llama

    import llama_ref

    llama_ref.plain_cpu()
    return Llama(model_path=path, n_ctx=ctx, n_batch=ctx, n_ubatch=ctx, n_threads=2,
                 n_threads_batch=2, n_gpu_layers=0, logits_all=True, seed=0, verbose=False)


def _run(llm, ids, n_greedy):
    """Last prompt position's logits, then n_greedy token-by-token argmax steps."""
    llm.reset()
    llm._ctx.kv_cache_clear()
    llm.eval(ids)
    last = np.array(llm.scores[len(ids) - 1], dtype=np.float32)
    steps = []
    for _ in range(n_greedy):
        logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        order = np.argsort(-logits, kind="stable")[:5]
        top = [[int(i), float(logits[i])] for i in order]
        steps.append({"id": top[0][0], "top5": top, "gap": top[0][1] - top[1][1]})
        llm.eval([top[0][0]])
    return last, steps


def record(family, path, out_dir):
    import hashlib

    import llama_cpp

    s = FAMILIES[family]
    llm = _llama(path, s["ctx"])
    out = []
    for name, texts in prompts(family):
        best = None
        for text in texts:
            ids = llm.tokenize(text.encode(), add_bos=True, special=True)
            assert len(ids) + N_GREEDY <= s["ctx"], (family, name, len(ids))
            last, steps = _run(llm, ids, N_GREEDY)
            clear = next((i for i, st in enumerate(steps) if st["gap"] < 0.3), len(steps))
            if best is None or clear > best[0]:
                best = (clear, text, ids, last, steps)
            if clear >= CLEAR_STEPS:
                break
        clear, text, ids, last, steps = best
        # llama.cpp's own second answer for each step: the prompt and the tokens before it in
        # one batch (check_greedy accepts logits within 1.0 of either answer).
        for i, st in enumerate(steps):
            llm.reset()
            llm._ctx.kv_cache_clear()
            seq = ids + [p["id"] for p in steps[:i]]
            llm.eval(seq)
            b = np.array(llm.scores[len(seq) - 1], dtype=np.float32)
            st["top5_batched"] = [[int(j), float(b[j])] for j in np.argsort(-b, kind="stable")[:5]]
        fname = f"{family}.{name}.logits.f16"
        last.astype("<f2").tofile(os.path.join(out_dir, fname))
        order = np.argsort(-last, kind="stable")[:10]
        out.append({"name": name, "text": text, "prompt_ids": ids, "logits_f16": fname,
                    "last_top10": [[int(i), float(last[i])] for i in order], "greedy": steps})
        print(f"{family} {name}: {len(ids)} prompt tokens, {clear} steps before a near tie",
              file=sys.stderr)
    with open(path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    doc = {
        "about": f"llama.cpp (llama-cpp-python, CPU, n_ctx {s['ctx']}) on tiny-{family}.gguf "
                 "(scripts/make_tiny_families.py). Per prompt: ids (BOS per the vocabulary, "
                 "special tokens parsed), last-position logits (f16 file, full vocabulary; "
                 "last_top10 from the f32 values), 16 token-by-token greedy steps: id, "
                 "top5 [id, logit], gap = top1 - top2, top5_batched = the same step computed in one "
                 "batch over the prompt and the tokens before it.",
        "llama_cpp_python": llama_cpp.__version__,
        "family": family,
        "architecture": s["arch"],
        "gguf_sha256": sha,
        "n_ctx": s["ctx"],
        "n_vocab": llm.n_vocab(),
        "prompts": out,
    }
    with open(os.path.join(out_dir, f"{family}.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=0)
        f.write("\n")


VARIANTS = {
    "llama3": ["no_rope_freqs"],
    "qwen2": ["no_bias"],
    "qwen3": ["flat_qk_norm"],
    "phi3": ["no_short_factors", "no_attn_factor"],
    "gemma2": ["no_attn_softcap", "no_final_softcap", "no_window"],
}


def sensitivity(family, tmp):
    """NMSE between llama.cpp's last logits on the model and on each variant."""
    base = os.path.join(tmp, f"{family}.gguf")
    write_model(family, base)
    ctx = FAMILIES[family]["ctx"]
    llm = _llama(base, ctx)
    ids = {n: llm.tokenize(t[0].encode(), add_bos=True, special=True) for n, t in prompts(family)}
    want = {n: _run(llm, i, 0)[0] for n, i in ids.items()}
    del llm
    for v in VARIANTS.get(family, []):
        path = os.path.join(tmp, f"{family}.{v}.gguf")
        write_model(family, path, variant=v)
        llm = _llama(path, ctx)
        for n, i in ids.items():
            got = _run(llm, i, 0)[0]
            nmse = float(np.sum((got - want[n]) ** 2) / np.sum(want[n] ** 2))
            same = int(np.argmax(got)) == int(np.argmax(want[n]))
            print(f"{family} {v} {n}: NMSE {nmse:.3e} (bound 5e-3), argmax same: {same}")
        del llm


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", choices=sorted(FAMILIES), help="these families only")
    ap.add_argument("--gguf-only", metavar="DIR", help="write tiny-<family>.gguf into DIR only")
    ap.add_argument("--models", default=os.path.join(CACHE, "models"),
                    help="where the models are written when recording references")
    ap.add_argument("--out", default=OUT_JSON, help="where references are written")
    ap.add_argument("--gemma", default=GEMMA, help="Gemma 3 GGUF the SPM pieces come from")
    ap.add_argument("--sensitivity", metavar="TMPDIR", help="report feature sensitivity only")
    args = ap.parse_args()
    families = args.only or list(FAMILIES)
    if args.sensitivity:
        os.makedirs(args.sensitivity, exist_ok=True)
        for fam in families:
            sensitivity(fam, args.sensitivity)
        return
    if args.gguf_only:
        os.makedirs(args.gguf_only, exist_ok=True)
        for fam in families:
            path = os.path.join(args.gguf_only, f"tiny-{fam}.gguf")
            n = write_model(fam, path, args.gemma)
            print(f"wrote {path}: vocab {n}, {os.path.getsize(path)} bytes", file=sys.stderr)
        return
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.models, exist_ok=True)
    for fam in families:
        path = os.path.join(args.models, f"tiny-{fam}.gguf")
        write_model(fam, path, args.gemma)
        record(fam, path, args.out)


if __name__ == "__main__":
    main()
