"""Settings: uno.toml parsing, overrides, docs in step, owner-only user dir."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from uno_local import config_doc, paths
from uno_local.app import App, Overrides
from uno_local.config import Config, config_from_dict, load_config
from uno_local.errors import ConfigError


def test_docs_config_md_is_up_to_date():
    doc = Path(__file__).resolve().parents[1] / "docs" / "config.md"
    assert doc.read_text() == config_doc.render(), "run: python -m uno_local.config_doc > docs/config.md"


def test_defaults_without_file(tmp_path):
    assert load_config(tmp_path / "missing.toml") == Config()


@pytest.mark.parametrize(
    ("data", "check"),
    [
        ({"model": {"n_ctx": 1024}}, lambda c: c.model.n_ctx == 1024),
        ({"generation": {"temperature": 1}}, lambda c: c.generation.temperature == 1.0),
        ({"train": {"target_modules": ["q_proj"]}}, lambda c: c.train.target_modules == ["q_proj"]),
        ({"uno": {"mode": "uno-single"}}, lambda c: c.uno.mode == "uno-single"),
    ],
)
def test_values_apply(data, check):
    assert check(config_from_dict(data))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"model": {"n_ctx": "big"}}, "model.n_ctx must be int"),
        ({"model": {"n_ctx": True}}, "model.n_ctx must be int"),
        ({"model": {"size": 1}}, "unknown key model.size"),
        ({"wat": {}}, r"unknown section \[wat\]"),
        ({"model": 3}, r"unknown section \[model\]"),
    ],
)
def test_bad_values_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_defaults_list_is_not_shared():
    a, b = Config(), Config()
    a.train.target_modules.append("x")
    assert "x" not in b.train.target_modules


def test_user_dir_is_private_and_overridable(uno_home):
    home = paths.user_dir()
    assert home == uno_home
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700


def test_cli_overrides_win_over_file(uno_home):
    uno_home.mkdir(parents=True, exist_ok=True)
    (uno_home / "uno.toml").write_text('[model]\npath = "/from/file.gguf"\nn_threads = 3\n')
    app = App.open(Overrides(model="/from/flag.gguf"))
    assert str(app.model_path) == "/from/flag.gguf"
    assert app.config.model.n_threads == 3


def test_config_to_toml_round_trips(tmp_path):
    from uno_local.config import Config, config_to_toml, load_config

    config = Config()
    config.train.epochs, config.uno.win_rate, config.model.path = 7, 0.75, '/models/x "q".gguf'
    config.train.target_modules = ["q_proj", "v_proj"]
    path = tmp_path / "uno.toml"
    path.write_text(config_to_toml(config))
    assert load_config(path) == config
