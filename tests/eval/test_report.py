"""Report output: report.json keys and ranges, two non-empty PNGs, a rich table with every method."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from uno_local.errors import ConfigError
from uno_local.eval.metrics import MethodRun, Usage, build_report
from uno_local.eval.report import render_table, render_validator_table, write_report
from uno_local.eval.scenario import load_scenario

REPO = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_report() -> dict:
    s = load_scenario(REPO / "assets" / "eval" / "quick.json")
    controls = [f"control answer {i}" for i in range(len(s.controls))]

    def run(name: str, passing: int, prompt: int, changed: int = 0, **kw: object) -> MethodRun:
        answers = {}
        for t in s.topics:
            good = {"ends_with": "Nice. Enjoy your coffee!", "starts_with": "Plant tip: water less."}[
                t.rule.check.type
            ]
            answers[t.name] = [good] * passing + ["Plain answer."] * (len(t.test) - passing)
        ctl = ["changed"] * changed + controls[changed:]
        routes = [
            {"topic": t.name, "query": q, "cluster": i if name.startswith("uno") else None}
            for i, t in enumerate(s.topics)
            for q in t.test
        ]
        kw.setdefault("extra", {"routes": routes})
        return MethodRun(name, answers, ctl, [Usage(prompt, 60)] * 12, **kw)  # type: ignore[arg-type]

    runs = [
        run("base", 0, 30),
        run("rag", 1, 210),
        run("uno-single", 2, 30, training={"wall_s": 41.2, "tokens": 5200, "gap_skipped_tokens": 800}),
        run(
            "uno",
            3,
            30,
            changed=1,
            training={"wall_s": 55.0, "tokens": 6100, "gap_skipped_tokens": 900},
            validator=[{"label": 0, "route": "expert", "win_rate": 0.8, "heldout": 5}],
        ),
    ]
    return build_report(s, runs, meta={"quick": True})


def test_write_report_files(tmp_path: Path) -> None:
    files = write_report(make_report(), tmp_path / "out")
    data = json.loads(files.report.read_text(encoding="utf-8"))
    assert list(data["methods"]) == ["base", "rag", "uno-single", "uno"]
    for name, entry in data["methods"].items():
        for key in ("adherence", "control_unchanged"):
            assert 0.0 <= entry[key] <= 1.0, (name, key)
        assert isinstance(entry["tokens_per_answer"], int | float) and entry["tokens_per_answer"] > 0
        assert set(entry["per_topic"]) == {"coffee", "houseplants"}
        assert all(0.0 <= v <= 1.0 for v in entry["per_topic"].values())
    assert data["methods"]["uno"]["adherence"] == 1.0 and data["methods"]["base"]["adherence"] == 0.0
    assert data["methods"]["uno"]["control_unchanged"] == pytest.approx(2 / 3)
    assert data["methods"]["rag"]["tokens_per_answer"] == 270.0
    assert data["methods"]["uno"]["training"]["gap_skipped_tokens"] == 900
    for png in (files.adherence_plot, files.tokens_plot):
        raw = png.read_bytes()
        assert raw.startswith(PNG_SIGNATURE) and len(raw) > 5_000
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "adherence.png",
        "report.json",
        "tokens.png",
    ]


def test_write_report_into_a_file_path_fails_clearly(tmp_path: Path) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    with pytest.raises(
        ConfigError, match=r"Cannot write the evaluation report to .*taken.*choose another --out folder"
    ):
        write_report(make_report(), blocker)


def test_render_table() -> None:
    console = Console(record=True, width=140, color_system=None)
    console.print(render_table(make_report()))
    text = console.export_text()
    header = next(line for line in text.splitlines() if "method" in line)
    for column in ("adherence", "coffee", "houseplants", "controls unchanged", "tokens/answer", "train s"):
        assert column in header
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.count("│") > 3}
    assert {"base", "rag", "uno-single", "uno"} <= set(rows)
    assert "100%" in rows["uno"] and "67%" in rows["uno"] and "55" in rows["uno"]
    assert "270" in rows["rag"] and "—" in rows["rag"]
    assert "0%" in rows["base"]


def test_render_validator_table() -> None:
    console = Console(record=True, width=140, color_system=None)
    report = make_report()
    console.print(render_validator_table(report))
    rows = {line.split("│")[1].strip(): line for line in console.export_text().splitlines() if "│" in line}
    assert "expert" in rows["coffee"] and "0.80" in rows["coffee"] and "100%" in rows["coffee"]
    assert "—" in rows["houseplants"]  # cluster 1 has no validator decision
    del report["methods"]["uno"]
    assert render_validator_table(report) is None
