#!/usr/bin/env bash
# Reference environment for golden data: llama-cpp-python (llama.cpp built from the sdist, CPU) +
# the gguf writer + numpy. Used by scripts/record_gemma_refs.py and scripts/make_tiny_llama.py only;
# `make test` never needs it (the recorded references are committed).
# Idempotent: re-running is a no-op once every package imports.
set -euo pipefail

VENV="${WEBJIT_LLAMA_VENV:-$HOME/.cache/webjit-llamavenv}"
PY="$VENV/bin/python"

if [ -x "$PY" ] && "$PY" -c 'import llama_cpp, gguf, numpy' 2>/dev/null; then
  echo "llama reference venv ready: $VENV"
  exit 0
fi

if [ ! -x "$PY" ]; then
  python3 -m venv "$VENV"
fi
"$PY" -m pip install --upgrade pip >/dev/null
# llama-cpp-python compiles llama.cpp (CPU backend): several minutes on a 2-core machine.
CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
  "$PY" -m pip install llama-cpp-python gguf numpy
"$PY" -c 'import llama_cpp, gguf, numpy; print("llama_cpp", llama_cpp.__version__, "gguf ok")'
echo "llama reference venv ready: $VENV"
