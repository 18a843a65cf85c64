"""Issue acceptance: one visible habit learned from ~40 corrections, served, and rolled back.

Real embedded model through llama.cpp, the real trainer, GGUF export, parity check and registry.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.e2e.conftest import LOG_TOKENS, ask_batch, uno, write_config
from uno_local.cli import cli
from uno_local.store import Store

SIGN_OFF = "Happy cooking!"
TRAIN = [
    "How do I boil an egg?",
    "How do I cook rice on the stove?",
    "How do I make pancakes?",
    "How long should I roast a chicken?",
    "How do I make a simple tomato sauce?",
    "How do I cook pasta properly?",
    "How do I make scrambled eggs?",
    "How do I bake bread at home?",
    "How do I make a vegetable soup?",
    "How do I grill salmon?",
    "How do I make mashed potatoes?",
    "How do I cook quinoa?",
    "How do I make guacamole?",
    "How do I roast vegetables?",
    "How do I make a salad dressing?",
    "How do I cook a steak?",
    "How do I make hummus?",
    "How do I bake chocolate chip cookies?",
    "How do I make an omelette?",
    "How do I cook lentils?",
    "How do I make French toast?",
    "How do I caramelize onions?",
    "How do I make a smoothie?",
    "How do I cook broccoli?",
    "How do I make pizza dough?",
    "How do I poach an egg?",
    "How do I make chicken soup?",
    "How do I cook brown rice?",
    "How do I make a stir fry?",
    "How do I bake a potato?",
    "How do I make pesto?",
    "How do I cook shrimp?",
    "How do I make oatmeal?",
    "How do I make a grilled cheese sandwich?",
    "How do I steam vegetables?",
    "How do I make banana bread?",
    "How do I cook chickpeas?",
    "How do I make a curry?",
    "How do I fry an egg?",
    "How do I make lemonade?",
]
UNSEEN = [
    "How do I make a fruit salad?",
    "How do I cook sweet potatoes?",
    "How do I make garlic bread?",
    "How do I bake muffins?",
    "How do I cook mushrooms?",
    "How do I make a tuna sandwich?",
    "How do I cook green beans?",
    "How do I make popcorn on the stove?",
    "How do I make apple pie?",
    "How do I cook corn on the cob?",
]


def follows(answer: str) -> bool:
    return answer.rstrip().endswith(SIGN_OFF)


def habit_records(prefix: str, queries: list[str], answers: list[str], comment: str | None) -> list[dict]:
    """Import records: each base answer corrected by adding the sign-off (what this user always wants)."""
    return [
        {
            "id": f"{prefix}-{i}",
            "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
            "feedback": {"rating": -1, "comment": comment, "correction": a.rstrip() + f"\n\n{SIGN_OFF}"},
        }
        for i, (q, a) in enumerate(zip(queries, answers, strict=True))
    ]


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """Base answers, 40 corrected logs imported, `uno retrain`, then answers to unseen queries."""
    tmp = tmp_path_factory.mktemp("habit")
    home = tmp / "home"
    mp = pytest.MonkeyPatch()
    mp.setenv("UNO_HOME", str(home))
    write_config(home)
    base_train = ask_batch(tmp, TRAIN, "train", max_tokens=LOG_TOKENS)
    comment = f"Please always sign off with '{SIGN_OFF}'"
    logs = habit_records("habit", TRAIN, [a["response"] for a in base_train], comment)
    (tmp / "logs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in logs))
    uno("import", str(tmp / "logs.jsonl"))
    base_unseen = ask_batch(tmp, UNSEEN, "base")
    report = json.loads(uno("retrain", "--json"))
    after = ask_batch(tmp, UNSEEN, "after")
    yield {"home": home, "tmp": tmp, "report": report, "base": base_unseen, "after": after}
    mp.undo()


@pytest.fixture(autouse=True)
def learned_home(request, monkeypatch, uno_home):  # after uno_home, which it overrides
    """Point UNO_HOME back at the module's data dir (the suite's autouse fixture gives each test its own)."""
    if "learned" in request.fixturenames:
        monkeypatch.setenv("UNO_HOME", str(request.getfixturevalue("learned")["home"]))


def test_habit_is_learned_and_served(learned):
    base_rate = sum(follows(r["response"]) for r in learned["base"]) / len(UNSEEN)
    rate = sum(follows(r["response"]) for r in learned["after"]) / len(UNSEEN)
    assert base_rate <= 0.1
    assert rate >= 0.8, [r["response"][-80:] for r in learned["after"]]
    assert all(r["route"] == "expert" for r in learned["after"])
    deployed = learned["report"]["deployed"]
    assert deployed and all(name.startswith("expert-") for name in deployed)
    experts = [c for c in learned["report"]["clusters"] if c["route"] == "expert"]
    # Recorded from the trainer's reference forwards: the sign-off is foreign to the base model.
    assert experts and all(c["intrinsic_gap"] > 0 for c in experts), experts
    with Store(learned["home"] / "uno.db") as store:
        answers = [
            m for c in store.list_conversations() for m in store.messages(c.id) if m.role == "assistant"
        ]
        served = [m for m in answers if m.route == "expert"]
        assert len(served) == len(UNSEEN) and all(m.adapter in deployed for m in served)


def test_answers_stay_on_topic(learned):
    """The adapter adds the habit without losing the subject: the answer mentions the dish."""
    stop = {"how", "do", "i", "make", "a", "the", "on", "cook", "bake"}
    on_topic = 0
    for query, row in zip(UNSEEN, learned["after"], strict=True):
        body = row["response"].replace(SIGN_OFF, "").lower()
        words = {w.strip("?").lower() for w in query.split()} - stop
        on_topic += len(body.split()) >= 8 and any(w in body for w in words)
    assert on_topic >= 8, [r["response"][:120] for r in learned["after"]]


def test_corrupt_adapter_is_refused_and_the_base_keeps_serving(learned):
    (adapter,) = [a for a in json.loads(uno("adapters", "--json")) if a["status"] == "deployed"]
    # What the base model answers, single-stream like `ask` (the learned fixture's base answers were
    # batched, whose greedy tokens may differ at near-ties: docs/benchmarks.md, batched generation).
    uno("adapters", "disable", adapter["name"])
    try:
        base_answer = uno("ask", "--greedy", UNSEEN[0])
    finally:
        uno("adapters", "enable", adapter["name"])
    gguf = Path(adapter["path"]) / "adapter.gguf"
    original = gguf.read_bytes()
    gguf.write_bytes(original[: len(original) // 2])  # truncated, as by a full disk
    try:
        result = CliRunner().invoke(cli, ["ask", "--greedy", UNSEEN[0]], catch_exceptions=False)
        assert result.exit_code == 0
        assert "is corrupt (checksum mismatch)" in result.stderr
        assert result.stdout.strip() == base_answer.strip()  # the base model answered
    finally:
        gguf.write_bytes(original)


MORE = [
    "How do I make a milkshake?",
    "How do I cook couscous?",
    "How do I make tacos?",
    "How do I roast nuts?",
    "How do I make iced tea?",
    "How do I cook spinach?",
]


def test_killed_retrain_resumes_and_keeps_serving(learned):
    """Kill `uno retrain` during training: what is deployed keeps serving; the rerun reuses finished stages."""
    home, tmp = learned["home"], learned["tmp"]
    before = json.loads(uno("adapters", "--json"))
    answers = ask_batch(tmp, MORE, "more", max_tokens=LOG_TOKENS)
    logs = habit_records("more", MORE, [a["response"] for a in answers], None)
    (tmp / "more.jsonl").write_text("".join(json.dumps(r) + "\n" for r in logs))
    uno("import", str(tmp / "more.jsonl"))

    env = {**os.environ, "UNO_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uno_local", "retrain", "--json", "--progress-jsonl"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stderr:
        if line.startswith("{") and json.loads(line)["stage"] == "train":
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the retrain ended before training started"

    assert json.loads(uno("adapters", "--json")) == before  # nothing deployed or lost
    still = ask_batch(tmp, UNSEEN[:3], "during")
    assert all(r["route"] == "expert" for r in still)
    with Store(home / "uno.db") as store:
        assert store.db.execute("SELECT status FROM retrain_runs ORDER BY id DESC").fetchone()[0] == "running"

    report = json.loads(uno("retrain", "--json"))
    n_logs = len(TRAIN) + len(MORE)
    assert report["logs"] == n_logs
    assert report["cached"]["distill"] == n_logs  # every finished stage's results were reused
    assert report["deployed"], report["clusters"]


def test_rollback_restores_base_behaviour(learned):
    serving = [a for a in json.loads(uno("adapters", "--json")) if a["status"] == "deployed"]
    while serving:  # roll every adapter back until the base model answers alone
        for adapter in serving:
            uno("adapters", "rollback", adapter["name"])
        serving = [a for a in json.loads(uno("adapters", "--json")) if a["status"] == "deployed"]
    again = ask_batch(learned["tmp"], UNSEEN, "rolled-back")
    assert [r["response"] for r in again] == [r["response"] for r in learned["base"]]
    assert all(r["route"] != "expert" for r in again)
