"""Shared fixtures: every test gets its own user dir (UNO_HOME) and nothing reaches the network."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

# Fixtures that load a real model or start a real server: a test that uses one is `slow`, so
# `pytest -m "not slow"` is the quick loop (fakes, pure cores, the store); the README's command runs all.
REAL_MODEL_FIXTURES = {"runtime", "core", "hf_base", "tokenizer", "served", "served_with_key"}


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
def runtime(model_path):
    """One llama.cpp runtime for the whole session (the model loads once per process)."""
    from backends import open_runtime

    rt = open_runtime(model_path, n_ctx=2048, n_threads=2)
    yield rt
    rt.close()
