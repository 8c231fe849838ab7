#!/usr/bin/env python3
"""Real-size byte-level BPE vocabularies (`tokenizer.ggml.model = gpt2`) for test GGUFs.

    from bpe_vocab import bpe_vocab, write_bpe_vocab
    vocab = bpe_vocab("llama-bpe")      # or "qwen2", "smollm", "gpt-2", "default"
    write_bpe_vocab(gguf_writer, vocab)

No real Llama 3 / Qwen / SmolLM tokenizer is reachable here, so a vocabulary of about 32k tokens
is trained with the Python `tokenizers` package (pinned in scripts/fetch-models.sh) on a fixed
text corpus: the .py files of the Faker wheel at a pinned version, whose locale providers hold
word lists in many scripts (Latin with accents, Cyrillic, Greek, Arabic, CJK, ...) beside code.
The wheel is fetched once into the cache with `pip download` and its sha256 checked. Files are
read in sorted order and the trainer is deterministic, so every run writes the same vocabulary.

Each family trains with its own pre-tokenizer regex (as in its tokenizer.json), so merges look
like the family's (e.g. no multi-digit tokens for qwen2/smollm), and gets the family's special
tokens with llama.cpp's token types, at the ids the real models use relative to their vocabulary
(after the trained tokens, except SmolLM2 whose specials come first).

Run directly to print a summary: python3 scripts/bpe_vocab.py [pre...]
"""

import functools
import hashlib
import json
import os
import subprocess
import sys
import zipfile

FAKER_VERSION = "40.54.0"
FAKER_WHEEL = f"faker-{FAKER_VERSION}-py3-none-any.whl"
FAKER_SHA256 = "2dd88ee8cb63a9149e19ef48bdd73879bc3854d8ba2d6c1535e902a762e603f7"

# Trained tokens (the 256 byte-level symbols included); specials come on top.
N_TRAINED = 32000

# llama.cpp's `llama_token_type` values as written to tokenizer.ggml.token_type.
NORMAL, CONTROL, USER_DEFINED = 1, 3, 4

# Pre-tokenizer regexes of the families' tokenizer.json files (training only: at run time
# llama.cpp and webjit use their own forms of them).
GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
             r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
            r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

LLAMA3_SPECIALS = [
    ("<|begin_of_text|>", CONTROL),
    ("<|end_of_text|>", CONTROL),
    ("<|reserved_special_token_0|>", CONTROL),
    ("<|reserved_special_token_1|>", CONTROL),
    ("<|finetune_right_pad_id|>", CONTROL),
    ("<|reserved_special_token_2|>", CONTROL),
    ("<|start_header_id|>", CONTROL),
    ("<|end_header_id|>", CONTROL),
    ("<|eom_id|>", CONTROL),
    ("<|eot_id|>", CONTROL),
    ("<|python_tag|>", CONTROL),
] + [(f"<|reserved_special_token_{i}|>", CONTROL) for i in range(3, 8)]

# Qwen2.5's added tokens, then Qwen3's extra ones (a superset: both use pre = qwen2).
# <tool_call> and <think> are not "special" in tokenizer.json, so convert_hf_to_gguf.py writes
# them USER_DEFINED: llama.cpp matches them in text even without parse_special.
QWEN2_SPECIALS = [
    ("<|endoftext|>", CONTROL),
    ("<|im_start|>", CONTROL),
    ("<|im_end|>", CONTROL),
    ("<|object_ref_start|>", CONTROL),
    ("<|object_ref_end|>", CONTROL),
    ("<|box_start|>", CONTROL),
    ("<|box_end|>", CONTROL),
    ("<|quad_start|>", CONTROL),
    ("<|quad_end|>", CONTROL),
    ("<|vision_start|>", CONTROL),
    ("<|vision_end|>", CONTROL),
    ("<|vision_pad|>", CONTROL),
    ("<|image_pad|>", CONTROL),
    ("<|video_pad|>", CONTROL),
    ("<tool_call>", USER_DEFINED),
    ("</tool_call>", USER_DEFINED),
    ("<|fim_prefix|>", USER_DEFINED),
    ("<|fim_middle|>", USER_DEFINED),
    ("<|fim_suffix|>", USER_DEFINED),
    ("<|fim_pad|>", USER_DEFINED),
    ("<|repo_name|>", USER_DEFINED),
    ("<|file_sep|>", USER_DEFINED),
    ("<tool_response>", USER_DEFINED),
    ("</tool_response>", USER_DEFINED),
    ("<think>", USER_DEFINED),
    ("</think>", USER_DEFINED),
]

SMOLLM_SPECIALS = [
    ("<|endoftext|>", CONTROL),
    ("<|im_start|>", CONTROL),
    ("<|im_end|>", CONTROL),
    ("<repo_name>", CONTROL),
    ("<reponame>", CONTROL),
    ("<file_sep>", CONTROL),
    ("<filename>", CONTROL),
    ("<gh_stars>", CONTROL),
    ("<issue_start>", CONTROL),
    ("<issue_comment>", CONTROL),
    ("<issue_closed>", CONTROL),
    ("<jupyter_start>", CONTROL),
    ("<jupyter_text>", CONTROL),
    ("<jupyter_code>", CONTROL),
    ("<jupyter_output>", CONTROL),
    ("<jupyter_script>", CONTROL),
    ("<empty_output>", CONTROL),
]

GPT2_SPECIALS = [("<|endoftext|>", CONTROL)]

# pre -> (training regexes, specials, specials first?, bos, eos, eot, add_bos)
FAMILIES = {
    # Llama 3.x instruct: eos is <|eot_id|>, no eot key (llama.cpp finds it by text).
    "llama-bpe": ([LLAMA3_RE], LLAMA3_SPECIALS, False,
                  "<|begin_of_text|>", "<|eot_id|>", None, True),
    # Qwen2.5 / Qwen3 instruct: BOS id written but not added.
    "qwen2": ([QWEN2_RE], QWEN2_SPECIALS, False,
              "<|endoftext|>", "<|im_end|>", None, False),
    # SmolLM2 instruct: digits split one by one, then GPT-2's regex.
    "smollm": ([r"\p{N}", GPT2_RE], SMOLLM_SPECIALS, True,
               "<|im_start|>", "<|im_end|>", None, False),
    "gpt-2": ([GPT2_RE], GPT2_SPECIALS, False,
              "<|endoftext|>", "<|endoftext|>", None, False),
    # llama.cpp's fallback pre-tokenizer; trained as GPT-2.
    "default": ([GPT2_RE], GPT2_SPECIALS, False,
                "<|endoftext|>", "<|endoftext|>", None, False),
}


def cache_dir() -> str:
    base = os.environ.get("WEBJIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "webjit")
    return os.path.join(base, "corpus")


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def corpus_wheel() -> str:
    """The pinned Faker wheel in the cache, fetched with pip when missing; sha256-checked."""
    path = os.path.join(cache_dir(), FAKER_WHEEL)
    if os.path.isfile(path) and _sha256(path) == FAKER_SHA256:
        return path
    os.makedirs(cache_dir(), exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                    "--dest", cache_dir(), f"Faker=={FAKER_VERSION}"], check=True)
    got = _sha256(path) if os.path.isfile(path) else "missing"
    if got != FAKER_SHA256:
        raise RuntimeError(f"{FAKER_WHEEL}: sha256 {got}, expected {FAKER_SHA256}")
    return path


@functools.lru_cache(maxsize=None)
def corpus_texts() -> tuple:
    """The wheel's .py files, in sorted order (about 9 MB of text)."""
    with zipfile.ZipFile(corpus_wheel()) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".py"))
        return tuple(z.read(n).decode("utf-8") for n in names)


@functools.lru_cache(maxsize=None)
def _train(regexes: tuple) -> tuple:
    """(tokens by id, merges "a b") of a byte-level BPE trained with these split regexes."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    splits = [pre_tokenizers.Split(Regex(r), "isolated") for r in regexes]
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        splits + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    trainer = trainers.BpeTrainer(
        vocab_size=N_TRAINED, min_frequency=2, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(corpus_texts(), trainer=trainer)
    vocab = tok.get_vocab()
    tokens = [None] * len(vocab)
    for text, i in vocab.items():
        tokens[i] = text
    assert None not in tokens, "trained ids are not contiguous"
    merges = json.loads(tok.to_str())["model"]["merges"]
    merges = [m if isinstance(m, str) else f"{m[0]} {m[1]}" for m in merges]
    return tuple(tokens), tuple(merges)


def bpe_vocab(pre: str) -> dict:
    """The vocabulary of one pre-tokenizer family (see FAMILIES): tokens, token_types (llama.cpp
    values), merges ("a b", rank = position), pre, bos_id, eos_id, eot_id (None: not written),
    add_bos, add_eos."""
    if pre not in FAMILIES:
        raise ValueError(f"unknown pre-tokenizer {pre!r}; known: {sorted(FAMILIES)}")
    regexes, specials, first, bos, eos, eot, add_bos = FAMILIES[pre]
    trained, merges = _train(tuple(regexes))
    special_texts = [t for t, _ in specials]
    if first:
        tokens = special_texts + list(trained)
        types = [ty for _, ty in specials] + [NORMAL] * len(trained)
    else:
        tokens = list(trained) + special_texts
        types = [NORMAL] * len(trained) + [ty for _, ty in specials]
    assert len(set(tokens)) == len(tokens), "a special token collides with a trained one"
    ids = {t: i for i, t in enumerate(tokens)}
    return {
        "tokens": tokens,
        "token_types": types,
        "merges": list(merges),
        "pre": pre,
        "bos_id": ids[bos],
        "eos_id": ids[eos],
        "eot_id": ids[eot] if eot else None,
        "add_bos": add_bos,
        "add_eos": False,
    }


def write_bpe_vocab(writer, vocab: dict) -> None:
    """Adds every tokenizer.ggml.* key of `vocab` to a gguf.GGUFWriter."""
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab["pre"])
    writer.add_token_list(vocab["tokens"])
    writer.add_token_types(vocab["token_types"])
    writer.add_token_merges(vocab["merges"])
    writer.add_bos_token_id(vocab["bos_id"])
    writer.add_eos_token_id(vocab["eos_id"])
    if vocab.get("eot_id") is not None:
        writer.add_eot_token_id(vocab["eot_id"])
    writer.add_add_bos_token(bool(vocab.get("add_bos", False)))
    writer.add_add_eos_token(bool(vocab.get("add_eos", False)))


if __name__ == "__main__":
    for p in sys.argv[1:] or sorted(FAMILIES):
        v = bpe_vocab(p)
        digest = hashlib.sha256("\n".join(v["tokens"] + v["merges"]).encode()).hexdigest()[:16]
        print(f"{p}: {len(v['tokens'])} tokens, {len(v['merges'])} merges, "
              f"bos {v['bos_id']} eos {v['eos_id']} sha {digest}")
