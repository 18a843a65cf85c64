"""Settings: uno.toml parsing, overrides, docs in step, owner-only user dir."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

import pytest

from uno_local import config_doc, paths
from uno_local.app import App, Overrides
from uno_local.config import Config, config_from_dict, config_to_toml, iter_keys, load_config
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
        ({"model": {"n_ctx": 1024.0}}, "model.n_ctx must be int"),
        ({"generation": {"top_p": "0.5"}}, "generation.top_p must be a finite number"),
        (
            {"model": {"size": 1}},
            r"unknown key model.size; \[model\] has path, folders, chat_format, n_ctx, n_threads, n_batch, n_parallel\.$",
        ),
        (
            {"wat": {}},
            r"unknown section \[wat\]; the sections are model, generation, train, embedder, uno\.$",
        ),
        ({"model": 3}, r"model must be a table, \[model\] with its keys below it; got 3\.$"),
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
    config = Config()
    config.train.epochs, config.uno.win_rate, config.model.path = 7, 0.75, '/models/x "q".gguf'
    config.train.target_modules = ["q_proj", "v_proj"]
    path = tmp_path / "uno.toml"
    path.write_text(config_to_toml(config))
    assert load_config(path) == config


# Every bad setting the hostile tester found accepted (issue 16, item 7), and the sentence it now gets.
BAD_SETTINGS = [
    ("train", "schedule", "fast", 'one of "cosine", "linear", "constant"'),
    ("train", "device", "tpu", 'one of "auto", "cuda", "mps", "cpu"'),
    ("train", "backend", "gpu", 'one of "auto", "torch", "mlx"'),
    ("train", "precision", "fp8", 'one of "fp32", "bf16", "auto"'),
    ("uno", "mode", "foo", 'one of "uno", "uno-single"'),
    ("train", "target_modules", [1, 2], "a list of str, not empty"),
    ("train", "target_modules", [], "a list of str, not empty"),
    ("train", "learning_rate", -1, "a finite number, above 0"),
    ("train", "epochs", -3, "int, at least 1"),
    ("train", "lora_r", 0, "int, at least 1"),
    ("generation", "temperature", -5, "a finite number, at least 0"),
    ("generation", "temperature", float("inf"), "a finite number, at least 0"),
    ("generation", "temperature", float("nan"), "a finite number, at least 0"),
    ("generation", "top_p", 7, "a finite number, from 0 to 1"),
    ("generation", "max_tokens", 0, "int, at least 1"),
    ("model", "n_threads", -4, "int, at least 0"),
    ("model", "n_ctx", 8, "int, at least 256"),
    ("model", "n_ctx", -1, "int, at least 256"),
    ("model", "n_batch", 0, "int, at least 1"),
    ("uno", "heldout_share", 1.0, "a finite number, above 0 and below 1"),
    ("embedder", "path", "/no/such/folder", "str, empty (the embedded model) or an existing folder"),
]


@pytest.mark.parametrize(("section", "key", "value", "allowed"), BAD_SETTINGS)
def test_bad_setting_is_refused_at_load_naming_the_key_and_what_is_allowed(
    tmp_path, section, key, value, allowed
):
    path = tmp_path / "uno.toml"
    path.write_text(f"[{section}]\n{key} = {_toml(value)}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {section}.{key} must be {allowed}; got ")
    assert message.endswith(".") and ". " not in message and "\n" not in message


def _toml(value) -> str:
    if isinstance(value, float) and value != value:
        return "nan"
    if value == float("inf"):
        return "inf"
    return json.dumps(value)


def test_every_default_passes_its_own_check():
    assert config_from_dict(json.loads(json.dumps(dataclasses.asdict(Config())))) == Config()


def test_existing_embedder_folder_is_accepted(tmp_path):
    assert config_from_dict({"embedder": {"path": str(tmp_path)}}).embedder.path == str(tmp_path)


def test_every_key_says_what_it_allows():
    rows = list(iter_keys())
    assert len(rows) == sum(
        len(dataclasses.fields(getattr(Config(), s.name))) for s in dataclasses.fields(Config)
    )
    assert all(allowed for _key, _default, allowed, _help in rows)


def test_settings_file_that_is_a_folder_gives_one_sentence(tmp_path):
    (tmp_path / "uno.toml").mkdir()
    with pytest.raises(ConfigError, match="is a folder, not a settings file"):
        load_config(tmp_path / "uno.toml")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (Overrides(n_ctx=16), "--ctx: model.n_ctx must be int, at least 256; got 16."),
        (Overrides(threads=-2), "--threads: model.n_threads must be int, at least 0; got -2."),
    ],
)
def test_command_line_overrides_are_checked_like_the_file(uno_home, overrides, message):
    with pytest.raises(ConfigError) as caught:
        App.open(overrides)
    assert str(caught.value) == message


def test_command_line_override_of_zero_threads_applies(uno_home):
    uno_home.mkdir(parents=True, exist_ok=True)
    (uno_home / "uno.toml").write_text("[model]\nn_threads = 3\nn_ctx = 512\n")
    app = App.open(Overrides(threads=0, n_ctx=1024))
    assert (app.config.model.n_threads, app.config.model.n_ctx) == (0, 1024)


def test_the_dry_penalty_reaches_every_answers_settings(tmp_path):
    """`generation.dry_multiplier` is in the chat's settings, in greedy ones (`uno ask --greedy`) and can
    be changed per command like any `[generation]` key; a negative one is refused in one sentence."""
    (tmp_path / "uno.toml").write_text("[generation]\ndry_multiplier = 0.8\n")
    app = App.open(home=tmp_path)
    try:
        assert app.settings().dry_multiplier == 0.8
        assert app.settings(greedy=True).dry_multiplier == 0.8
        assert app.settings(dry_multiplier=0.0).dry_multiplier == 0.0
        with pytest.raises(ConfigError, match="dry_multiplier"):
            app.settings(dry_multiplier=-1.0)
    finally:
        app.close()
