"""Fixtures for the retrain tests: the fakes (`fakes.py`) and a real App on a temp dir that uses them."""

from __future__ import annotations

import pytest

from tests.retrain.fakes import Fakes
from uno_local.app import App
from uno_local.config import Config


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


@pytest.fixture
def app(tmp_path, fakes):
    """A real App (real store, real registry) on a temp dir, with the fake runtime and embedder."""
    config = Config()
    config.model.path = str(tmp_path / "fake.gguf")
    config.train.epochs = 2
    config.train.min_steps = 0
    app = App(home=tmp_path / "home", config=config)
    app.home.mkdir(mode=0o700)
    app.runtime, app.embedder = fakes.runtime, fakes.embedder
    app.base_id = "fake-base"  # the fake model file has no GGUF identity to read
    yield app
    app.close()
