"""Shared setup of llama-cpp-python for the reference scripts (record_gemma_refs.py,
make_tiny_llama.py)."""

import llama_cpp.llama_cpp as _c

_default_model_params = _c.llama_model_default_params


def _model_params():
    p = _default_model_params()
    # No extra CPU buffer types (AMX, weight repacking): llama.cpp built with -march=native on a
    # CPU that reports AMX segfaults in ggml_backend_amx_mul_mat inside this sandbox, and plain
    # CPU kernels are the simpler reference anyway.
    p.use_extra_bufts = False
    return p


def plain_cpu():
    """Makes every `Llama(...)` created afterwards use the plain CPU backend."""
    _c.llama_model_default_params = _model_params
