"""GGUF headers of real-size LLMs, for speed runs on synthesized weights.

No real model files are reachable from the build machines, and speed does not depend on weight
values, so this writes what the real Q4_K_M file would hold before its tensor data: the metadata
(the keys convert_hf_to_gguf.py writes for each family, with the real hyper-parameters), a
tokenizer of the real vocabulary size (synthetic token strings, real special tokens, token types,
BOS/EOS and a chat template of the real shape) and the tensor infos, each with the type
llama.cpp's `llama-quantize ... Q4_K_M` gives it (see q4_k_m_types). Output, per model:

  OUT/<model>/header.bin    # the GGUF up to the first tensor byte (what `webjit bench model
                            #   --synthetic-from` takes)
  OUT/<model>/tensors.json  # the tensor table ../shared/tools/synth_gguf.py `build` turns,
                            #   with header.bin, into a full-size file llama.cpp loads

Hyper-parameters come from each model's Hugging Face config.json, written down from memory
(the field names are given beside each value); the ones not certain are marked UNSURE. The
output is deterministic: the same bytes on every run.

  ~/.cache/webjit/pyenv-gguf/bin/python scripts/write_llm_headers.py [--out DIR] [MODEL ...]
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q, TokenType as TT

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llm_chat_templates as tpl  # noqa: E402

# config.json fields: layers = num_hidden_layers, d = hidden_size, heads = num_attention_heads,
# kv = num_key_value_heads, head_dim = head_dim (else d / heads), ffn = intermediate_size,
# vocab = vocab_size, ctx = max_position_embeddings, rope_base = rope_theta,
# eps = rms_norm_eps, tied = tie_word_embeddings.
MODELS = {
    "qwen2.5-0.5b-instruct": dict(
        arch="qwen2", name="Qwen2.5 0.5B Instruct", layers=24, d=896, heads=14, kv=2, head_dim=64,
        ffn=4864, vocab=151936, ctx=32768, rope_base=1e6, eps=1e-6, tied=True, qkv_bias=True,
        tok="qwen2", template=tpl.CHATML_QWEN25,
        # Published Q4_K_M: bartowski's 398 MB (UNSURE of the exact byte count); Qwen's own
        # qwen2.5-0.5b-instruct-q4_k_m.gguf is ~491 MB (made another way; UNSURE why).
        published_mb=398),
    "qwen3-1.7b": dict(
        arch="qwen3", name="Qwen3 1.7B", layers=28, d=2048, heads=16, kv=8, head_dim=128,
        ffn=6144, vocab=151936, ctx=40960, rope_base=1e6, eps=1e-6, tied=True, qk_norm=True,
        tok="qwen3", template=tpl.QWEN3,
        # Published Q4_K_M: ~1.11 GB (unsloth; UNSURE), Qwen's own ~1.28 GB (UNSURE).
        published_mb=1110),
    "llama-3.2-1b-instruct": dict(
        arch="llama", name="Llama 3.2 1B Instruct", layers=16, d=2048, heads=32, kv=8, head_dim=64,
        ffn=8192, vocab=128256, ctx=131072, rope_base=500000.0, eps=1e-5, tied=True,
        # rope_scaling: {rope_type: llama3, factor, low_freq_factor, high_freq_factor,
        # original_max_position_embeddings}
        llama3_rope=(32.0, 1.0, 4.0, 8192), write_head_dim=True,
        tok="llama3", template=tpl.LLAMA3, published_mb=808),
    "phi-3.5-mini-instruct": dict(
        arch="phi3", name="Phi 3.5 Mini Instruct", layers=32, d=3072, heads=32, kv=32, head_dim=96,
        ffn=8192, vocab=32064, ctx=131072, rope_base=10000.0, eps=1e-5, tied=False,
        # rope_scaling.type = longrope; long_factor / short_factor have head_dim / 2 = 48 entries;
        # original_max_position_embeddings = 4096; sliding_window = 262144.
        phi3_rope=dict(orig_ctx=4096, swa=262144),
        tok="phi3", template=tpl.PHI35,
        # Published Q4_K_M: 2.39 GB (bartowski), quantized when llama.cpp gave attn_qkv Q5_K.
        published_mb=2390),
    "llama-3.1-8b-instruct": dict(
        arch="llama", name="Llama 3.1 8B Instruct", layers=32, d=4096, heads=32, kv=8, head_dim=128,
        ffn=14336, vocab=128256, ctx=131072, rope_base=500000.0, eps=1e-5, tied=False,
        llama3_rope=(8.0, 1.0, 4.0, 8192), write_head_dim=False,
        tok="llama3", template=tpl.LLAMA3, published_mb=4920),
    "smollm2-1.7b-instruct": dict(
        arch="llama", name="SmolLM2 1.7B Instruct", layers=24, d=2048, heads=32, kv=32,
        head_dim=64, ffn=8192, vocab=49152, ctx=8192, rope_base=130000.0, eps=1e-5, tied=True,
        tok="smollm", template=tpl.SMOLLM2, published_mb=1060),
    "gemma-2-2b-it": dict(
        arch="gemma2", name="Gemma 2 2B It", layers=26, d=2304, heads=8, kv=4, head_dim=256,
        ffn=9216, vocab=256000, ctx=8192, rope_base=10000.0, eps=1e-6, tied=True,
        # attn_logit_softcapping, final_logit_softcapping, sliding_window (every other layer;
        # llama.cpp derives the pattern, the GGUF holds only the window).
        gemma2=dict(attn_cap=50.0, final_cap=30.0, swa=4096),
        tok="gemma", template=tpl.GEMMA2, published_mb=1710),
}

ALIGN = 32
# (elements per block, bytes per block)
BLOCK = {Q.F32: (1, 4), Q.F16: (1, 2), Q.Q4_0: (32, 18), Q.Q5_0: (32, 22), Q.Q5_1: (32, 24),
         Q.Q8_0: (32, 34), Q.Q4_K: (256, 144), Q.Q5_K: (256, 176), Q.Q6_K: (256, 210),
         Q.Q2_K: (256, 84), Q.IQ2_XS: (256, 74), Q.IQ4_NL: (32, 18), Q.Q4_0: (32, 18)}
# llama_ftype values stored as general.file_type: LLAMA_FTYPE_MOSTLY_Q4_K_M, _IQ2_XS.
FILE_TYPE = {"q4_k_m": 15, "iq2_xs": 20}


# ---------------------------------------------------------------- tensors and their Q4_K_M types

def tensor_list(m):
    """(name, ne) of every tensor, ne in GGML order (ne[0] = row length), in the order
    llama-quantize writes them: names without a layer sorted, then each layer's sorted."""
    d, hd, L = m["d"], m["head_dim"], m["layers"]
    q_dim, kv_dim = m["heads"] * hd, m["kv"] * hd
    top = {"token_embd.weight": [d, m["vocab"]], "output_norm.weight": [d]}
    if not m["tied"]:
        top["output.weight"] = [d, m["vocab"]]
    if "llama3_rope" in m:
        top["rope_freqs.weight"] = [hd // 2]
    if "phi3_rope" in m:
        top["rope_factors_long.weight"] = [hd // 2]
        top["rope_factors_short.weight"] = [hd // 2]
    blk = {"attn_norm.weight": [d], "ffn_norm.weight": [d], "attn_output.weight": [q_dim, d],
           "ffn_down.weight": [m["ffn"], d]}
    if m["arch"] == "phi3":
        # Fused: attn_qkv = q | k | v rows, ffn_up = gate | up rows (Phi-3's qkv_proj, gate_up_proj).
        blk["attn_qkv.weight"] = [d, q_dim + 2 * kv_dim]
        blk["ffn_up.weight"] = [d, 2 * m["ffn"]]
    else:
        blk.update({"attn_q.weight": [d, q_dim], "attn_k.weight": [d, kv_dim],
                    "attn_v.weight": [d, kv_dim], "ffn_gate.weight": [d, m["ffn"]],
                    "ffn_up.weight": [d, m["ffn"]]})
    if m.get("qkv_bias"):
        blk.update({"attn_q.bias": [q_dim], "attn_k.bias": [kv_dim], "attn_v.bias": [kv_dim]})
    if m.get("qk_norm"):
        blk.update({"attn_q_norm.weight": [hd], "attn_k_norm.weight": [hd]})
    if "gemma2" in m:
        blk.update({"post_attention_norm.weight": [d], "post_ffw_norm.weight": [d]})
    out = sorted(top.items())
    for i in range(L):
        out += [(f"blk.{i}.{k}", v) for k, v in sorted(blk.items())]
    return out


def fallback(ty, ncols):
    """llama-quant.cpp tensor_type_fallback: a 256-block type on a row length that is not a
    multiple of 256 drops to a 32-block type of about the same bits (Qwen2.5-0.5B's 896)."""
    if ncols % BLOCK[ty][0] == 0:
        return ty
    ty = {Q.Q4_K: Q.Q5_0, Q.Q5_K: Q.Q5_1, Q.Q6_K: Q.Q8_0, Q.IQ2_XS: Q.IQ4_NL,
          Q.Q2_K: Q.Q4_0}.get(ty, ty)
    return ty if ncols % BLOCK[ty][0] == 0 else Q.F16


def q4_k_m_types(tensors, n_layer):
    """The type llama-quantize (llama-quant.cpp, llama_tensor_get_type) gives each tensor for
    Q4_K_M, without an imatrix and without overrides. Default Q4_K, and:
    - not quantized (kept F32 as converted): 1-D tensors, names not ending in "weight", *_norm;
    - output.weight, and token_embd.weight when there is no output.weight (tied): Q6_K, or Q8_0
      when the row length is not a multiple of 256; an untied token_embd stays Q4_K;
    - attn_v (and attn_qkv, counted with them in this llama.cpp version): Q6_K where
      use_more_bits(i, n) holds, i counting those tensors in file order (the first and last
      eighth, and every third between);
    - ffn_down: Q6_K where use_more_bits(i, n_layer);
    - then the row-length fallback (fallback above)."""
    def more_bits(i, n):
        return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2

    names = [n for n, _ in tensors]
    tied = "output.weight" not in names
    n_v = sum(1 for n in names if "attn_v.weight" in n or "attn_qkv.weight" in n)
    i_v = i_down = 0
    types = []
    for name, ne in tensors:
        if len(ne) < 2 or not name.endswith("weight") or "_norm.weight" in name:
            types.append(Q.F32)
            continue
        ty = Q.Q4_K
        if name == "output.weight" or (tied and name == "token_embd.weight"):
            ty = Q.Q8_0 if ne[0] % 256 else Q.Q6_K
        elif name == "token_embd.weight":
            pass
        elif "attn_v.weight" in name or "attn_qkv.weight" in name:
            if more_bits(i_v, n_v):
                ty = Q.Q6_K
            i_v += 1
        elif "ffn_down" in name:
            if more_bits(i_down, n_layer):
                ty = Q.Q6_K
            i_down += 1
        types.append(fallback(ty, ne[0]))
    return types


def iq2_xs_types(tensors, n_layer, n_gqa):
    """The type llama-quantize gives each tensor for IQ2_XS (which needs an imatrix; the types
    do not depend on it). Default IQ2_XS, and:
    - not quantized: as for Q4_K_M;
    - output.weight, and token_embd.weight when tied: Q5_K (Q8_0 off a 256 multiple);
    - an untied token_embd: Q2_K;
    - attn_v: Q4_K when n_head / n_head_kv >= 4, else Q2_K;
    - ffn_down of the first n_layer / 8 layers: Q2_K;
    - then the row-length fallback."""
    names = [n for n, _ in tensors]
    tied = "output.weight" not in names
    i_down = 0
    types = []
    for name, ne in tensors:
        if len(ne) < 2 or not name.endswith("weight") or "_norm.weight" in name:
            types.append(Q.F32)
            continue
        ty = Q.IQ2_XS
        if name == "output.weight" or (tied and name == "token_embd.weight"):
            ty = Q.Q8_0 if ne[0] % 256 else Q.Q5_K
        elif name == "token_embd.weight":
            ty = Q.Q2_K
        elif "attn_v.weight" in name:
            ty = Q.Q4_K if n_gqa >= 4 else Q.Q2_K
        elif "ffn_down" in name:
            if i_down < n_layer // 8:
                ty = Q.Q2_K
            i_down += 1
        types.append(fallback(ty, ne[0]))
    return types


def nbytes(ty, ne):
    per, size = BLOCK[ty]
    n = int(np.prod(ne))
    assert n % per == 0, (ty, ne)
    return n // per * size


# ---------------------------------------------------------------- tokenizers

def byte_chars():
    """GPT-2's byte-to-character map, in its vocabulary order (printable bytes first)."""
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def bpe_regular(n):
    """n byte-level BPE tokens and n - 256 merges that make them: the 256 byte characters, then
    pairs of them, then (pair, character) triples. Synthetic, but every merge joins two tokens
    that exist into a token that exists, so any BPE implementation accepts them."""
    base = byte_chars()
    toks, merges = base[:], []
    pairs = [(a, b) for a in base for b in base]
    triples = ((a + b, c) for a, b in pairs for c in base)
    import itertools
    for a, b in itertools.chain(pairs, triples):
        if len(toks) == n:
            break
        toks.append(a + b)
        merges.append(f"{a} {b}")
    return toks, merges


def qwen_specials(qwen3):
    names = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>",
             "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>",
             "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
             "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
             "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]
    if qwen3:
        names += ["<tool_response>", "</tool_response>", "<think>", "</think>"]
    # convert_hf_to_gguf: added tokens that look special (<|...|>) are CONTROL, the rest USER_DEFINED.
    return [(t, TT.CONTROL if t.startswith("<|") else TT.USER_DEFINED) for t in names]


def llama3_specials():
    named = {0: "<|begin_of_text|>", 1: "<|end_of_text|>", 2: "<|reserved_special_token_0|>",
             3: "<|reserved_special_token_1|>", 4: "<|finetune_right_pad_id|>",
             5: "<|reserved_special_token_2|>", 6: "<|start_header_id|>", 7: "<|end_header_id|>",
             8: "<|eom_id|>", 9: "<|eot_id|>", 10: "<|python_tag|>"}
    return [(named.get(i, f"<|reserved_special_token_{i - 8}|>"), TT.CONTROL) for i in range(256)]


SMOLLM_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<reponame>",
                   "<file_sep>", "<filename>", "<gh_stars>", "<issue_start>", "<issue_comment>",
                   "<issue_closed>", "<jupyter_start>", "<jupyter_text>", "<jupyter_code>",
                   "<jupyter_output>", "<jupyter_script>", "<empty_output>"]


def tokenizer(m):
    """(kv pairs, in the converter's order) for the model's tokenizer."""
    V, kind = m["vocab"], m["tok"]
    kv = []
    if kind in ("qwen2", "qwen3", "llama3", "smollm"):
        if kind == "smollm":
            # SmolLM2's 17 special tokens come first (ids 0-16), then the BPE vocabulary.
            spec = [(t, TT.CONTROL) for t in SMOLLM_SPECIALS]
            regular, merges = bpe_regular(V - len(spec))
            toks = [t for t, _ in spec] + regular
            types = [ty for _, ty in spec] + [TT.NORMAL] * len(regular)
        else:
            n_regular = {"qwen2": 151643, "qwen3": 151643, "llama3": 128000}[kind]
            spec = llama3_specials() if kind == "llama3" else qwen_specials(kind == "qwen3")
            regular, merges = bpe_regular(n_regular)
            toks = regular + [t for t, _ in spec]
            types = [TT.NORMAL] * n_regular + [ty for _, ty in spec]
            # The converter pads to config.json's vocab_size with unused [PADn] tokens.
            toks += [f"[PAD{i}]" for i in range(len(toks), V)]
            types += [TT.UNUSED] * (V - len(types))
        pre = {"qwen2": "qwen2", "qwen3": "qwen2", "llama3": "llama-bpe", "smollm": "smollm"}[kind]
        kv += [("model", "gpt2"), ("pre", pre), ("tokens", toks), ("token_type", types),
               ("merges", merges)]
        # bos/eos/pad: tokenizer_config.json bos_token/eos_token/pad_token (generation_config for
        # Llama's eos); add_bos: the converter's choice for each pre-tokenizer.
        ids = {"qwen2": dict(eos=151645, pad=151643, bos=151643, add_bos=False),
               "qwen3": dict(eos=151645, pad=151643, bos=151643, add_bos=False),
               "llama3": dict(bos=128000, eos=128009, add_bos=True),
               # SmolLM2: bos <|im_start|>, eos/pad <|im_end|>; add_bos UNSURE.
               "smollm": dict(bos=1, eos=2, unk=0, pad=2, add_bos=False)}[kind]
    else:
        # SentencePiece: <unk> <s> </s>, the 256 <0xNN> byte tokens, synthetic pieces, specials.
        toks = [f"<t{i}>" for i in range(V)]
        types = [TT.NORMAL] * V
        scores = [-float(i) for i in range(V)]
        if kind == "phi3":
            fixed = {0: ("<unk>", TT.UNKNOWN), 1: ("<s>", TT.CONTROL), 2: ("</s>", TT.CONTROL)}
            byte0 = 3
            names = ["<|endoftext|>", "<|assistant|>", "<|placeholder1|>", "<|placeholder2|>",
                     "<|placeholder3|>", "<|placeholder4|>", "<|system|>", "<|end|>",
                     "<|placeholder5|>", "<|placeholder6|>", "<|user|>"]
            fixed.update({32000 + i: (t, TT.CONTROL) for i, t in enumerate(names)})
            # 32011..32063: padding up to vocab_size.
            fixed.update({i: (f"[PAD{i}]", TT.UNUSED) for i in range(32011, V)})
            ids = dict(bos=1, eos=32000, unk=0, pad=32000, add_bos=False, add_eos=False)  # add_bos UNSURE
        else:  # gemma
            fixed = {0: ("<pad>", TT.CONTROL), 1: ("<eos>", TT.CONTROL), 2: ("<bos>", TT.CONTROL),
                     3: ("<unk>", TT.UNKNOWN), 4: ("<mask>", TT.USER_DEFINED),
                     5: ("[@BOS@]", TT.CONTROL), 106: ("<start_of_turn>", TT.CONTROL),
                     107: ("<end_of_turn>", TT.CONTROL)}
            fixed.update({6 + i: (f"<unused{i}>", TT.UNUSED) for i in range(100)})
            byte0 = 217  # UNSURE where Gemma's byte tokens start; only their presence matters
            ids = dict(bos=2, eos=1, unk=3, pad=0, add_bos=True, add_eos=False, space_prefix=False)
        for i in range(256):
            fixed[byte0 + i] = (f"<0x{i:02X}>", TT.BYTE)
        for i, (t, ty) in fixed.items():
            toks[i], types[i] = t, ty
            scores[i] = 0.0 if ty != TT.NORMAL else scores[i]
        kv += [("model", "llama"), ("tokens", toks), ("scores", scores), ("token_type", types)]
    for key in ("bos", "eos", "unk", "pad"):
        if key in ids:
            kv.append((f"{key}_token_id" if key != "pad" else "padding_token_id", ids[key]))
    kv.append(("add_bos_token", ids["add_bos"]))
    if "add_eos" in ids:
        kv.append(("add_eos_token", ids["add_eos"]))
    if "space_prefix" in ids:
        kv.append(("add_space_prefix", ids["space_prefix"]))
    kv.append(("chat_template", m["template"]))
    return kv


# ---------------------------------------------------------------- the GGUF header

def write(model, m, out_dir, ftype="q4_k_m"):
    tensors = tensor_list(m)
    if ftype == "iq2_xs":
        types = iq2_xs_types(tensors, m["layers"], m["heads"] // m["kv"])
    else:
        types = q4_k_m_types(tensors, m["layers"])
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "header.bin")
    w = gguf.GGUFWriter(path, m["arch"])
    w.add_type("model")
    w.add_name(m["name"])
    w.add_block_count(m["layers"])
    w.add_context_length(m["ctx"])
    w.add_embedding_length(m["d"])
    w.add_feed_forward_length(m["ffn"])
    w.add_head_count(m["heads"])
    w.add_head_count_kv(m["kv"])
    if m["arch"] != "gemma2":  # the Gemma 2 converter leaves rope.freq_base at its default
        w.add_rope_freq_base(m["rope_base"])
    w.add_layer_norm_rms_eps(m["eps"])
    if m["arch"] in ("qwen3", "gemma2") or m.get("write_head_dim"):
        w.add_key_length(m["head_dim"])
        w.add_value_length(m["head_dim"])
    if m["arch"] == "llama":
        w.add_vocab_size(m["vocab"])
        w.add_rope_dimension_count(m["head_dim"])
    if "phi3_rope" in m:
        p = m["phi3_rope"]
        w.add_rope_dimension_count(m["head_dim"])
        w.add_rope_scaling_orig_ctx_len(p["orig_ctx"])
        # The converter's longrope attention factor: sqrt(1 + ln(scale) / ln(original context)).
        scale = m["ctx"] / p["orig_ctx"]
        w.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(scale) / math.log(p["orig_ctx"])))
        w.add_sliding_window(p["swa"])
    if "gemma2" in m:
        g = m["gemma2"]
        w.add_attn_logit_softcapping(g["attn_cap"])
        w.add_final_logit_softcapping(g["final_cap"])
        w.add_sliding_window(g["swa"])
    w.add_file_type(FILE_TYPE[ftype])
    for key, val in tokenizer(m):
        full = f"tokenizer.ggml.{key}" if key != "chat_template" else "tokenizer.chat_template"
        if isinstance(val, bool):
            w.add_bool(full, val)
        elif isinstance(val, int) and not isinstance(val, TT):
            w.add_uint32(full, val)
        elif isinstance(val, str):
            w.add_string(full, val)
        else:
            w.add_array(full, val)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    rel, table = 0, []
    for (name, ne), ty in zip(tensors, types):
        nb = nbytes(ty, ne)
        # Shapes go in numpy order (GGML's reversed); tensor_dtype float32 means "element shape".
        w.add_tensor_info(name, list(reversed(ne)), np.float32, nb, raw_dtype=ty)
        table.append({"name": name, "type": ty.name, "offset": rel, "nbytes": nb})
        rel += -(-nb // ALIGN) * ALIGN
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    with open(path, "ab") as f:
        f.write(b"\0" * (-f.tell() % ALIGN))
        start = f.tell()
    for t in table:
        t["offset"] += start
    size = table[-1]["offset"] + table[-1]["nbytes"]
    with open(os.path.join(out_dir, "tensors.json"), "w") as f:
        json.dump({"data_start": start, "file_size": size, "tensors": table}, f)
    return start, size, types


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", ".cache", "llm-headers"))
    ap.add_argument("--ftype", choices=sorted(FILE_TYPE), default="q4_k_m",
                    help="llama-quantize's type assignment to write (iq2_xs: OUT/<model>-iq2_xs/)")
    ap.add_argument("models", nargs="*", help=f"default: all of {', '.join(MODELS)}")
    a = ap.parse_args()
    for model in a.models or MODELS:
        if model not in MODELS:
            sys.exit(f"unknown model {model!r}; known: {', '.join(MODELS)}")
        m = MODELS[model]
        sub = model if a.ftype == "q4_k_m" else f"{model}-{a.ftype}"
        start, size, types = write(model, m, os.path.join(a.out, sub), a.ftype)
        counts = {}
        for t in types:
            counts[t.name] = counts.get(t.name, 0) + 1
        pub = m["published_mb"]
        print(f"{model:24s} {m['arch']:6s} header {start / 1e6:5.2f} MB  file {size / 1e6:8.1f} MB"
              + (f"  (published Q4_K_M ~{pub} MB: {size / 1e6 / pub:.3f}x)  " if a.ftype == "q4_k_m" else "  ")
              + " ".join(f"{k}:{v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
