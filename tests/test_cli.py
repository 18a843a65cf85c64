"""The `uno` CLI on the real model and real SQLite: output and rows written."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from uno_local.cli import cli
from uno_local.store import Store

COMMANDS = [[], ["ask"], ["import"], ["export"], ["status"]]


def run(*args: str):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


def db(home) -> Store:
    return Store(home / "uno.db")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_on_every_command(command):
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_ask_streams_and_logs(uno_home):
    result = run("ask", "--greedy", "--max-tokens", "24", "What is the capital of France?")
    assert result.exit_code == 0, result.output
    answer = result.stdout.strip()
    assert answer
    with db(uno_home) as store:
        (conv,) = store.list_conversations()
        user, assistant = store.messages(conv.id)
        assert (user.role, user.content) == ("user", "What is the capital of France?")
        assert assistant.role == "assistant" and assistant.complete
        assert assistant.content.strip() == answer
        assert assistant.route == "base" and assistant.source == "ask"
        assert 0 < assistant.completion_tokens <= 24 and assistant.prompt_tokens > 5
        assert assistant.settings["temperature"] == 0.0
    again = run("ask", "--greedy", "--max-tokens", "24", "What is the capital of France?")
    assert again.stdout.strip() == answer  # greedy is reproducible


def test_ask_continues_a_conversation(uno_home):
    run("ask", "--greedy", "--max-tokens", "8", "Hi")
    result = run("ask", "--greedy", "--max-tokens", "8", "--conversation", "1", "And again?")
    assert result.exit_code == 0
    with db(uno_home) as store:
        assert [m.role for m in store.messages(1)] == ["user", "assistant", "user", "assistant"]
    missing = run("ask", "--conversation", "99", "x")
    assert missing.exit_code == 1 and "Conversation 99 does not exist" in missing.stderr


def test_batch_is_greedy_and_logged(uno_home, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(
        json.dumps({"id": "a", "query": "Name a fruit."})
        + "\n"
        + json.dumps(
            {
                "id": 2,
                "messages": [
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello!"},
                    {"role": "user", "content": "Name a colour."},
                ],
            }
        )
        + "\n"
    )
    out = tmp_path / "out.jsonl"
    result = run("ask", "--max-tokens", "16", "--batch", str(src), "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", 2]
    assert all(r["route"] == "base" and r["response"] and r["tokens"]["completion"] > 0 for r in rows)
    single = run("ask", "--greedy", "--max-tokens", "16", "Name a fruit.")
    assert single.stdout.strip() == rows[0]["response"].strip()
    with db(uno_home) as store:
        convs = store.list_conversations()
        assert len(convs) == 3
        second = [c for c in convs if c.title == "Name a colour."][0]
        assert [m.content for m in store.messages(second.id)][:3] == ["Hi", "Hello!", "Name a colour."]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": 1}\n', 'needs a non-empty "query"'),
        ('{"query": "x"}\n', 'needs an object with "id"'),
        ("nope\n", "not valid UTF-8 JSON"),
        ("", "holds no queries"),
        ('{"id": 1, "messages": [{"role": "assistant", "content": "x"}]}\n', "ending with a user turn"),
    ],
)
def test_bad_batch_answers_nothing(uno_home, tmp_path, content, message):
    src = tmp_path / "in.jsonl"
    src.write_text(content)
    out = tmp_path / "out.jsonl"
    result = run("ask", "--batch", str(src), "--out", str(out))
    assert result.exit_code == 1
    assert message in result.stderr and "Traceback" not in result.output
    assert not out.exists()


def test_import_export_status(uno_home, tmp_path):
    src = tmp_path / "logs.jsonl"
    src.write_text(json.dumps({"id": "r1", "dialog": ["q", "a", "shorter"]}) + "\n")
    result = run("import", str(src))
    assert result.exit_code == 0 and "Imported 1 logs" in result.stdout
    assert "1 already present" in run("import", str(src)).stdout
    out = tmp_path / "out.jsonl"
    assert "Exported 1 log to" in run("export", str(out)).stdout
    assert json.loads(out.read_text())["feedback"]["comment"] == "shorter"
    status = json.loads(run("status", "--json").stdout)
    assert status["counts"]["feedback"] == 1 and status["home"] == str(uno_home)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": 1}\n')
    result = run("import", str(bad))
    assert result.exit_code == 1 and "line 1" in result.stderr


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "Model file not found"),
        (lambda p: p.write_bytes(b"not a model at all"), "is not a GGUF model file"),
        (lambda p: p.mkdir(), "Model path is not a file"),
        (lambda p: p.write_bytes(b"GGUF" + b"\x00" * 64), "could not load"),
    ],
)
def test_bad_model_gives_one_sentence(tmp_path, setup, message):
    path = tmp_path / "model.gguf"
    setup(path)
    result = run("--model", str(path), "ask", "hi")
    assert result.exit_code == 1
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_bad_config_gives_one_sentence(uno_home):
    uno_home.mkdir(parents=True, exist_ok=True)
    (uno_home / "uno.toml").write_text("[model]\nn_ctx = 'big'\n")
    result = run("status")
    assert result.exit_code == 1 and "model.n_ctx must be int" in result.stderr
    (uno_home / "uno.toml").write_text("[nope]\n")
    assert "unknown section [nope]" in run("status").stderr
    (uno_home / "uno.toml").write_text("[model\n")
    assert "is not valid TOML" in run("status").stderr


def one_sentence(result) -> str:
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr


@pytest.mark.parametrize(
    ("settings", "args", "message"),
    [
        ("[model]\nn_ctx = 8\n", ["ask", "hi"], "model.n_ctx must be int, at least 256; got 8."),
        ("[model]\nn_ctx = -1\n", ["ask", "hi"], "model.n_ctx must be int, at least 256; got -1."),
        ("[model]\nn_batch = 0\n", ["ask", "hi"], "model.n_batch must be int, at least 1; got 0."),
        (
            "[generation]\ntemperature = nan\n",
            ["ask", "hi"],
            "generation.temperature must be a finite number",
        ),
        ("[train]\ndevice = 'tpu'\n", ["status"], 'train.device must be one of "auto", "cuda", "mps", "cpu"'),
        ("", ["--ctx", "16", "ask", "hi"], "--ctx: model.n_ctx must be int, at least 256; got 16."),
        ("", ["--threads", "-4", "status"], "--threads: model.n_threads must be int, at least 0; got -4."),
        (
            "",
            ["ask", "--max-tokens", "0", "hi"],
            "--max-tokens: generation.max_tokens must be int, at least 1; got 0.",
        ),
        (
            "",
            ["ask", "--temperature", "-5", "hi"],
            "--temperature: generation.temperature must be a finite number",
        ),
        ("", ["retrain", "--device", "tpu"], '--device: train.device must be one of "auto", "cuda", "mps"'),
        ("", ["retrain", "--epochs", "0"], "--epochs: train.epochs must be int, at least 1; got 0."),
        (
            "",
            ["ask", "--temperature", "nan", "hi"],
            "--temperature: generation.temperature must be a finite number",
        ),
    ],
)
def test_bad_setting_refused_before_anything_runs(uno_home, settings, args, message):
    uno_home.mkdir(parents=True, exist_ok=True)
    (uno_home / "uno.toml").write_text(settings)
    assert message in one_sentence(run(*args))
    assert not (uno_home / "uno.db").exists()  # refused before the store is even opened


def test_settings_file_that_is_a_folder_gives_one_sentence(uno_home):
    (uno_home / "uno.toml").mkdir(parents=True)
    assert "uno.toml is a folder, not a settings file" in one_sentence(run("status"))


def test_every_command_module_is_mapped_for_lazy_loading():
    import importlib
    import pkgutil

    from uno_local import cli as cli_package
    from uno_local.cli import COMMAND_MODULES

    for module in pkgutil.iter_modules(cli_package.__path__):
        importlib.import_module(f"uno_local.cli.{module.name}")
    defined = {name: command.callback.__module__ for name, command in cli.commands.items()}
    assert {name: f"uno_local.cli.{module}" for name, module in COMMAND_MODULES.items()} == defined


@pytest.mark.parametrize(
    ("build", "system", "machine", "expected"),
    [
        (None, "Linux", "x86_64", "cpu (torch is not installed)"),
        ("2.13.0+cpu", "Linux", "x86_64", "cpu"),
        ("2.13.0", "Darwin", "arm64", "mps"),
        ("2.13.0", "Darwin", "x86_64", "cpu"),
    ],
)
def test_status_names_the_torch_device_without_importing_torch(monkeypatch, build, system, machine, expected):
    import importlib.metadata
    import platform

    from uno_local.cli.data_commands import _expected_torch_device

    def version(name: str) -> str:
        assert name == "torch"
        if build is None:
            raise importlib.metadata.PackageNotFoundError(name)
        return build

    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.setattr(platform, "system", lambda: system)
    monkeypatch.setattr(platform, "machine", lambda: machine)
    assert _expected_torch_device() == expected
