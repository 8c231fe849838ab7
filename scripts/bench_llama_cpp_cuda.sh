#!/usr/bin/env bash
# llama.cpp's CUDA backend beside webjit on the GPU machine (the reference for Gemma decode and prefill speed on the same GPU), with the
# same synthesized Gemma 3 270M Q4_K_M weights (speed does not depend on values).
#
# Here (prepares .cache/llama, which the device tool carries; 64 MiB per call, so the sdist is
# slimmed: models, docs, tests, examples and the other GPU backends dropped):
#   bash scripts/bench_llama_cpp_cuda.sh prepare
# On the device (CUDA toolkit at /usr/local/cuda; the build takes ~5 min on 16 cores):
#   bash scripts/bench_llama_cpp_cuda.sh build    # into /tmp/llb (kept while the machine is held)
#   bash scripts/bench_llama_cpp_cuda.sh run "$OUT"
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=$ROOT/.cache/llama
case "${1:-}" in
prepare)
  sdist=$(ls "${LLAMA_SDIST:-}" 2>/dev/null || true)
  if [ -z "$sdist" ]; then
    tmp=$(mktemp -d)
    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d "$tmp"
    sdist=$(ls "$tmp"/llama_cpp_python-*.tar.gz)
  fi
  work=$(mktemp -d)
  tar xzf "$sdist" -C "$work"
  src=$(ls -d "$work"/llama_cpp_python-*/vendor/llama.cpp)
  (cd "$src" && rm -rf docs models tests benches examples/* media pocs gguf-py conversion scripts \
    skills app tools/ui ggml/src/ggml-{virtgpu,cann,openvino,webgpu,et,metal,hexagon,sycl,vulkan,opencl})
  mkdir -p "$DIR"
  tar cJf "$DIR/llama-src.tar.xz" -C "$(dirname "$src")" llama.cpp
  ~/.cache/webjit-llamavenv/bin/python "$ROOT/../shared/tools/synth_gguf.py" header \
    "${WEBJIT_CACHE:-$HOME/.cache/webjit}/models/gemma-3-270m-q4_k_m.gguf" "$DIR/hdr"
  cp "$ROOT/../shared/tools/synth_gguf.py" "$ROOT/scripts/synth_gguf_lowbit.py" "$DIR/"
  du -sh "$DIR"
  ;;
build)
  mkdir -p /tmp/llb && cd /tmp/llb
  [ -f llama.cpp/CMakeLists.txt ] || tar xJf "$DIR/llama-src.tar.xz"
  cd llama.cpp
  export PATH=/usr/local/cuda/bin:$PATH
  cmake -B build -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
    -DCMAKE_BUILD_TYPE=Release
  cmake --build build --target llama-bench -j"$(nproc)"
  ;;
run)
  # run OUT [HEADER_DIR [JSON_NAME]]: another model's header.bin + tensors.json (e.g. one of
  # .cache/llm-headers/*, written by scripts/write_llm_headers.py); Gemma's by default.
  out=${2:?output dir}
  hdr=${3:-$DIR/hdr}
  # The low-bit types' blocks too (IQ2_XS headers); the classic ones as synth_gguf.py writes them.
  python3 "$DIR/synth_gguf_lowbit.py" build "$hdr" /tmp/llb-synth.gguf
  /tmp/llb/llama.cpp/build/bin/llama-bench -m /tmp/llb-synth.gguf -p 512 -n 128 -ngl 99 -r 3 -o json \
    >"$out/${4:-llama_bench.json}"
  rm -f /tmp/llb-synth.gguf
  ;;
*)
  echo "usage: $0 prepare | build | run OUT_DIR [HEADER_DIR [JSON_NAME]]" >&2
  exit 2
  ;;
esac
