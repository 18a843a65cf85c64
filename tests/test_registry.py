"""Adapter registry: versions, atomic deploy, rollback, enable/disable, delete, checksums."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from uno_local.cli import cli
from uno_local.errors import AdapterError, NotFoundError
from uno_local.registry import Registry
from uno_local.store import Store


@pytest.fixture
def registry(tmp_path):
    store = Store(tmp_path / "uno.db")
    yield Registry(store, tmp_path / "adapters")
    store.close()


def deploy(registry, tmp_path, name="habits", payload=b"GGUF-v1", verify=None):
    src = tmp_path / f"src-{payload.hex()}.gguf"
    src.write_bytes(payload)
    peft = tmp_path / "peft"
    peft.mkdir(exist_ok=True)
    (peft / "adapter_config.json").write_text("{}")
    return registry.deploy(
        name=name,
        kind="expert",
        gguf_file=src,
        peft_dir=peft,
        base_model="base.gguf",
        sources=[1, 2],
        metrics={"win_rate": 0.8},
        config={"lora_r": 8},
        verify=verify,
    )


def test_deploy_versions_and_rollback(registry, tmp_path):
    v1 = deploy(registry, tmp_path, payload=b"one")
    assert (v1.version, v1.status, v1.key) == (1, "deployed", "habits@v1")
    manifest = json.loads((v1.path / "manifest.json").read_text())
    assert manifest["sources"] == [1, 2] and manifest["checksum"] == v1.checksum
    assert (v1.path / "peft" / "adapter_config.json").exists()
    deploy(registry, tmp_path, payload=b"two")
    v3 = deploy(registry, tmp_path, payload=b"three")
    assert [(r.version, r.status) for r in registry.list()] == [
        (1, "retired"),
        (2, "previous"),
        (3, "deployed"),
    ]
    assert [r.key for r in registry.active()] == ["habits@v3"]
    assert registry.verify_file(v3).read_bytes() == b"three"
    assert registry.rollback("habits").version == 2
    assert registry.rollback("habits") is None  # no previous left: back to the base model
    assert registry.active() == []
    with pytest.raises(NotFoundError):
        registry.rollback("habits")


def test_failed_verify_keeps_what_was_deployed(registry, tmp_path):
    deploy(registry, tmp_path, payload=b"good")

    def refuse(path):
        raise AdapterError("parity failed")

    with pytest.raises(AdapterError, match="parity failed"):
        deploy(registry, tmp_path, payload=b"bad", verify=refuse)
    assert [r.version for r in registry.active()] == [1]
    assert not list((tmp_path / "adapters").glob(".staging-*"))
    assert sorted(p.name for p in (tmp_path / "adapters" / "habits").iterdir()) == ["v1"]


def test_corrupt_or_missing_file_is_refused(registry, tmp_path):
    rec = deploy(registry, tmp_path, payload=b"original")
    rec.gguf.write_bytes(b"origina")  # truncated
    with pytest.raises(AdapterError, match="corrupt .checksum mismatch.; run `uno adapters rollback habits`"):
        registry.verify_file(rec)
    rec.gguf.unlink()
    with pytest.raises(AdapterError, match="missing its file"):
        registry.verify_file(rec)


def test_enable_disable_delete(registry, tmp_path):
    deploy(registry, tmp_path)
    registry.set_enabled("habits", False)
    assert registry.active() == []
    deploy(registry, tmp_path, payload=b"next")  # a new version stays disabled
    assert registry.active() == []
    registry.set_enabled("habits", True)
    assert [r.version for r in registry.active()] == [2]
    assert registry.delete("habits") == 2
    assert registry.list() == [] and not (tmp_path / "adapters" / "habits").exists()
    with pytest.raises(NotFoundError):
        registry.set_enabled("habits", True)


def test_adapters_cli(uno_home, tmp_path):
    runner = CliRunner()
    assert "No adapters yet" in runner.invoke(cli, ["adapters"]).stdout
    from uno_local.app import App

    app = App.open(home=uno_home)  # adapters belong to a base: deploy for the model the CLI serves
    try:
        deploy(app.registry, tmp_path)
        deploy(app.registry, tmp_path, payload=b"GGUF-v2")
    finally:
        app.close()
    listing = runner.invoke(cli, ["adapters"]).stdout
    assert "* habits" in listing and "previous" in listing
    data = json.loads(runner.invoke(cli, ["adapters", "--json"]).stdout)
    assert [(d["version"], d["status"]) for d in data] == [(1, "previous"), (2, "deployed")]
    assert "now serving v1" in runner.invoke(cli, ["adapters", "rollback", "habits"]).stdout
    assert "disabled" in runner.invoke(cli, ["adapters", "disable", "habits"]).stdout
    assert "enabled" in runner.invoke(cli, ["adapters", "enable", "habits"]).stdout
    missing = runner.invoke(cli, ["adapters", "rollback", "nope"])
    assert missing.exit_code == 1 and "Adapter 'nope' has no deployed version" in missing.stderr
    assert "deleted 2 version(s)" in runner.invoke(cli, ["adapters", "delete", "--yes", "habits"]).stdout


def test_adapters_belong_to_their_base(tmp_path):
    """Two bases with an adapter of the same name: each registry sees, serves, rolls back and deletes
    only its own; rows from before base identities adopt the base whose file name they recorded."""
    store = Store(tmp_path / "uno.db")
    try:
        legacy = deploy(
            Registry(store, tmp_path / "adapters"), tmp_path
        )  # base_model "base.gguf", no base_id
        smol = Registry(store, tmp_path / "adapters", base_id="a" * 64, model_name="base.gguf")
        gemma = Registry(store, tmp_path / "adapters", base_id="b" * 64, model_name="gemma.gguf")
        assert [r.key for r in smol.active()] == [legacy.key] and gemma.active() == []
        theirs = deploy(gemma, tmp_path, payload=b"GGUF-gemma")
        assert theirs.version == 2  # unique per name across bases: its own folder
        assert [r.key for r in gemma.active()] == ["habits@v2"] and [r.key for r in smol.active()] == [
            "habits@v1"
        ]
        mine = deploy(smol, tmp_path, payload=b"GGUF-smol-2")
        assert smol.deployed("habits").version == 3 and gemma.deployed("habits").version == 2
        assert smol.rollback("habits").version == 1 and gemma.deployed("habits").version == 2
        gemma.set_enabled("habits", False)
        assert gemma.active() == [] and [r.key for r in smol.active()] == ["habits@v1"]
        assert gemma.delete("habits") == 1 and not theirs.path.exists()
        assert legacy.path.exists() and mine.path.exists() and len(smol.versions("habits")) == 2
        row = store.db.execute("SELECT base_id FROM adapters WHERE version = 3").fetchone()
        assert row[0] == "a" * 64
        assert json.loads((mine.path / "manifest.json").read_text())["base_id"] == "a" * 64
    finally:
        store.close()
