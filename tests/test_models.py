"""`uno models` and `--model NAME` in a temporary HOME laid out as Ollama, LM Studio and the HF cache lay
out their files, with real GGUF files (the embedded model, and small GGUFs written with the gguf package)."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from click.testing import CliRunner

from tests.gguf_files import gguf_file
from uno_local.cli import cli


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def small_gguf(path, arch: str, *, template: bool = False, pooling: bool = False):
    """A header-only GGUF of `arch` with one small F16 tensor (enough for `uno models` to describe it)."""
    import gguf
    import numpy as np

    with gguf_file(path, arch) as writer:
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        if template:
            writer.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")
        if pooling:
            writer.add_pooling_type(gguf.PoolingType.MEAN)
        writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float16))
    return path


@pytest.fixture
def user_home(tmp_path, monkeypatch, model_path):
    """HOME with an Ollama store (a manifest naming the embedded GGUF as its model blob, and one whose
    blob is missing), an LM Studio folder, an HF cache snapshot and a folder named in uno.toml."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    for var in ("OLLAMA_MODELS", "HF_HOME", "HF_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    ollama = home / ".ollama" / "models"
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
    (ollama / "blobs").mkdir(parents=True)
    shutil.copyfile(model_path, ollama / "blobs" / f"sha256-{digest}")
    (ollama / "blobs" / "sha256-cafe").write_text('{"template": "not a model"}')
    library = ollama / "manifests" / "registry.ollama.ai" / "library" / "smollm2"
    library.mkdir(parents=True)
    layers = [
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:cafe", "size": 26},
        {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}", "size": 1},
    ]
    manifest = {"schemaVersion": 2, "config": {"digest": "sha256:cafe"}, "layers": layers}
    (library / "135m").write_text(json.dumps(manifest))
    gone = {**manifest, "layers": [{**layers[1], "digest": "sha256:" + "0" * 64}]}
    (library / "gone").write_text(json.dumps(gone))
    small_gguf(home / ".lmstudio" / "models" / "acme" / "Tiny-GGUF" / "tiny-f16.gguf", "gpt2", template=True)
    (home / ".lmstudio" / "models" / "acme" / "Tiny-GGUF" / "broken.gguf").write_text("not a gguf")
    repo = home / ".cache" / "huggingface" / "hub" / "models--qwen--Tiny-GGUF"
    blob = small_gguf(repo / "blobs" / "0123abcd", "qwen2", template=True)
    (repo / "snapshots" / "f00d").mkdir(parents=True)
    (repo / "snapshots" / "f00d" / "tiny-q2.gguf").symlink_to(blob)
    small_gguf(tmp_path / "mine" / "embed.gguf", "qwen3", pooling=True)
    return home


def test_uno_models_lists_what_each_store_holds(user_home, uno_home, tmp_path):
    uno_home.mkdir(parents=True, exist_ok=True)
    (uno_home / "uno.toml").write_text(f'[model]\nfolders = ["{tmp_path / "mine"}"]\n')
    result = run("models", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert sorted(rows) == [
        "acme/Tiny-GGUF/tiny-f16.gguf",
        "embed.gguf",
        "qwen/Tiny-GGUF/tiny-q2.gguf",
        "smollm2:135m",
    ]
    smol = rows["smollm2:135m"]
    assert (smol["source"], smol["arch"], smol["quant"]) == ("ollama", "llama", "Q4_1")
    assert smol["chat_template"] and smol["trainable"]
    assert smol["path"].startswith(str(user_home / ".ollama" / "models" / "blobs"))
    lms = rows["acme/Tiny-GGUF/tiny-f16.gguf"]
    assert (lms["source"], lms["arch"], lms["quant"], lms["trainable"]) == ("lmstudio", "gpt2", "F16", False)
    assert "its architecture gpt2 is not supported for training" in lms["why_not"]
    hf = rows["qwen/Tiny-GGUF/tiny-q2.gguf"]
    assert (hf["source"], hf["arch"], hf["trainable"]) == ("huggingface", "qwen2", True)
    embed = rows["embed.gguf"]
    assert (embed["source"], embed["trainable"], embed["chat_template"]) == ("folder", False, False)
    assert "embedding model" in embed["why_not"]
    table = run("models").stdout
    assert "smollm2:135m" in table and "ollama" in table and "Q4_1" in table


def test_model_names_resolve_and_a_missing_one_says_where_we_looked(user_home):
    status = json.loads(run("--model", "smollm2:135m", "status", "--json").stdout)
    assert status["model"].startswith(str(user_home / ".ollama" / "models" / "blobs" / "sha256-"))
    status = json.loads(run("--model", "tiny-q2.gguf", "status", "--json").stdout)
    assert status["model"].endswith("0123abcd")  # the HF snapshot's symlink, resolved to its blob
    result = run("--model", "llama3:8b", "status")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "No model file or known model called llama3:8b" in result.stderr
    assert str(user_home / ".ollama" / "models") in result.stderr and result.stderr.count("\n") == 1


def test_an_empty_home_lists_nothing_in_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "empty"))
    for var in ("OLLAMA_MODELS", "HF_HOME", "HF_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    result = run("models")
    assert result.exit_code == 0 and result.stdout.startswith("No GGUF models found; looked in")


def test_retrain_refuses_a_model_it_cannot_learn_on_before_any_work(user_home, uno_home, tmp_path):
    uno_home.mkdir(parents=True, exist_ok=True)
    (uno_home / "uno.toml").write_text(f'[model]\nfolders = ["{tmp_path / "mine"}"]\n')
    for name, says in [
        ("acme/Tiny-GGUF/tiny-f16.gguf", "its architecture gpt2 is not supported for training"),
        ("embed.gguf", "embed.gguf is an embedding model"),
    ]:
        result = run("--model", name, "retrain")
        assert result.exit_code == 1 and says in result.stderr, result.output
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert sorted(p.name for p in uno_home.iterdir()) == ["uno.toml"]  # no store, cache or adapters made


def test_a_model_identity_is_read_once_per_file_version(tmp_path, monkeypatch):
    """`uno status`, the chat and the registry need the weights' identity; parsing it takes seconds, so
    it is remembered per file version, and a rewritten file or a damaged cache is read again."""
    import os

    import backends.gguf_export as gguf_export
    from uno_local.models import IDENTITY_CACHE, identity

    model = small_gguf(tmp_path / "m.gguf", "llama")
    cache = tmp_path / "cache"
    cache.mkdir()
    parsed = []
    real = gguf_export.read_identity
    monkeypatch.setattr(gguf_export, "read_identity", lambda p: parsed.append(p) or real(p))

    first = identity(model, cache)
    assert identity(model, cache) == first == real(model) and len(parsed) == 1

    small_gguf(model, "qwen2")  # rewritten: another architecture, another identity
    os.utime(model, ns=(1, 1))
    assert identity(model, cache) != first and len(parsed) == 2

    (cache / IDENTITY_CACHE).write_text("{not json")
    assert identity(model, cache) == real(model) and len(parsed) == 3

    cache.chmod(0o500)  # a cache that cannot be written only costs the parse again
    try:
        (cache / IDENTITY_CACHE).chmod(0o400)
        small_gguf(model, "llama")
        assert identity(model, cache) == first and len(parsed) == 4
    finally:
        cache.chmod(0o700)


def test_a_retrain_estimates_its_peak_from_the_models_sizes():
    """The estimate reproduces the embedded model's measured peak it was calibrated on (2.85 GiB for a
    200-log retrain, docs/benchmarks.md) and grows with the model as its parts do."""
    from uno_local.config import TrainConfig
    from uno_local.training import BaseSize, estimate_peak_bytes

    smollm2 = BaseSize(n_params=134_515_008, n_vocab=49_152, n_layer=30, n_embd=576, file_bytes=98_362_432)
    fp32, bf16 = TrainConfig(), TrainConfig(precision="bf16")
    assert estimate_peak_bytes(smollm2, fp32) / 2**30 == pytest.approx(2.85, abs=0.05)
    assert estimate_peak_bytes(smollm2, fp32) - estimate_peak_bytes(smollm2, bf16) == int(134_515_008 * 2.4)
    gemma = BaseSize(n_params=268_098_176, n_vocab=262_144, n_layer=18, n_embd=640, file_bytes=253_113_024)
    assert 4.0e9 < estimate_peak_bytes(gemma, fp32) < 4.5e9  # its 262k vocabulary's logits weigh most
    shorter = TrainConfig(max_forward_tokens=128)
    assert estimate_peak_bytes(gemma, fp32) - estimate_peak_bytes(gemma, shorter) == 128 * (
        18 * 640 * 160 + 262_144 * 12
    )


def test_retrain_refuses_a_model_that_cannot_fit_in_memory_before_any_work(uno_home, model_path, monkeypatch):
    import psutil

    from uno_local.models import FoundModel, describe

    base = describe(FoundModel(model_path.name, model_path, "file")).base
    assert base.n_params == 134_515_008  # read from the embedded model's GGUF header
    uno_home.mkdir(parents=True, exist_ok=True)
    free = psutil.virtual_memory()._replace(available=1_000_000_000)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: free)
    result = run("retrain")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.stderr.count("\n") == 1
    assert "needs about 3.1 GB of memory at its peak, but only 1.0 GB is free" in result.stderr
    assert 'set precision = "bf16" in [train]' in result.stderr
    assert sorted(p.name for p in uno_home.iterdir()) == []  # no store, cache or adapters made
