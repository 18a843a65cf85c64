"""llama.cpp is prepared once per process before any model loads (`prepare_llama_cpp`)."""

from __future__ import annotations

import subprocess
import sys

from backends.llama_runtime import prepare_llama_cpp


def test_models_load_without_amx_buffers_only_where_the_build_has_amx_kernels():
    """llama.cpp's AMX matmul segfaulted at the first decode on a Xeon with AMX (ggml-org/llama.cpp#20824):
    on such a build every model loads without extra buffer types; elsewhere llama.cpp's defaults stay."""
    llama_cpp = prepare_llama_cpp()
    amx = b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()
    assert llama_cpp.llama_cpp.llama_model_default_params().use_extra_bufts is not amx
    assert prepare_llama_cpp() is llama_cpp  # idempotent: the defaults are wrapped once
    assert llama_cpp.llama_cpp.llama_model_default_params().use_extra_bufts is not amx


def test_the_embedded_model_answers_in_a_fresh_process(model_path):
    """A real decode in a process of its own (a crash there fails this test, not the suite)."""
    code = (
        "from backends.llama_runtime import LlamaRuntime; import sys; "
        "from uno_local.runtime import GenerationRequest, GenerationSettings; "
        f"rt = LlamaRuntime({str(model_path)!r}, n_ctx=256, n_threads=2); "
        "msgs = [{'role': 'user', 'content': 'Name a fruit.'}]; "
        "print(rt.generate_many([GenerationRequest(msgs, GenerationSettings.greedy(8))] * 2)[0].text)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip()
