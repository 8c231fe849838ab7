"""`synth_gguf.py build` (../shared/tools) with the low-bit GGUF block types too, for llama.cpp's
side of the low-bit speed runs (benchmarks/llm-families/run.sh with an IQ2_XS header, through
scripts/bench_llama_cpp_cuda.sh run). Speed does not depend on values: blocks are random bytes
with their f16 scale set to 0.01, as synth_gguf.py does for the classic types.

  python3 synth_gguf_lowbit.py build DIR OUT.gguf      # DIR as written by synth_gguf.py header
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import synth_gguf  # noqa: E402  (copied beside this file by bench_llama_cpp_cuda.sh prepare)

# Block bytes and the byte offsets of f16 scales (ggml-common.h). IQ1_M's scale is split over
# nibbles and MXFP4's is an exponent byte: left out (random bytes could give Inf scales).
synth_gguf.BLOCKS.update({
    "IQ2_XXS": (66, [0]), "IQ2_XS": (74, [0]), "IQ2_S": (82, [0]), "IQ3_XXS": (98, [0]),
    "IQ3_S": (110, [0]), "IQ1_S": (50, [0]), "IQ4_NL": (18, [0]), "IQ4_XS": (136, [0]),
    "TQ1_0": (54, [52]), "TQ2_0": (66, [64]),
})

if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "build":
        synth_gguf.build(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
