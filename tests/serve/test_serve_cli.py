"""`uno serve` refuses to listen beyond this machine without an API key (no model is loaded)."""

from __future__ import annotations

from click.testing import CliRunner

from uno_local.cli import cli


def test_other_hosts_need_an_api_key(monkeypatch):
    monkeypatch.delenv("UNO_API_KEY", raising=False)
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 1
    assert "set an API key with --api-key or UNO_API_KEY" in result.output
    assert "Traceback" not in result.output and result.output.count("\n") == 1


def test_serve_help_lists_its_options():
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0
    assert all(option in result.output for option in ("--host", "--port", "--api-key", "--max-body"))
