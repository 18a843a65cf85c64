"""Gemma 3 270M base, a real second architecture whose GGUF has no chat template: the runtime falls back
to llama-cpp-python's gemma format, and the trainer must learn on exactly the prompts it serves."""

from __future__ import annotations

import pytest

MESSAGES = [
    [{"role": "user", "content": "How do I boil an egg?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a fruit."}],
    [
        {"role": "user", "content": "Hi."},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
    ],
]


@pytest.fixture(scope="module")
def gemma_runtime(gemma_path):
    from backends.llama_runtime import LlamaRuntime

    rt = LlamaRuntime(gemma_path, n_ctx=512, n_threads=2)
    yield rt
    rt.close()


@pytest.fixture(scope="module")
def gemma_tokenizer(gemma_hf_base):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gemma_hf_base)


@pytest.mark.parametrize("messages", MESSAGES)
def test_the_trainer_learns_on_the_prompts_the_runtime_serves(gemma_runtime, gemma_tokenizer, messages):
    from backends.torch_trainer import template_ids

    served, stop = gemma_runtime._chat_prompt(messages)
    trained, answer = template_ids(gemma_tokenizer, messages, "Boil it.")
    assert served == trained
    assert served[0] == gemma_runtime.llm.token_bos()  # as llama-cpp-python's own chat handler adds it
    assert gemma_tokenizer.decode(answer) == "Boil it.<end_of_turn>\n"  # learned to end its turn
    assert stop == ("<end_of_turn>\n",)
    assert "gemma" in gemma_runtime.template_note
