"""Issue acceptance: one visible habit learned from 40 corrections given to a running `uno serve`, served
by that server without a restart, resumed after a killed retrain, and rolled back.

Real embedded model through llama.cpp, the real `openai` client and HTTP feedback, the real trainer,
GGUF export, parity check and registry. One learning run proves all of it: the habit (issue 1), the
server that learns from its own chats (issue 20) and a retrain killed mid-way that resumes from its
finished stages (issue 3), so the suite trains this adapter once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx2 as httpx
import openai
import pytest
from click.testing import CliRunner

from tests.e2e.conftest import LOG_TOKENS, ask_batch, uno, write_config
from tests.serve.conftest import free_port, wait_healthy
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


ASKED = UNSEEN[:5]  # unseen questions the server answers after the retrain (no restart)
GREEDY = {"temperature": 0, "seed": 0}


def retrain_process(home: Path, *args: str) -> subprocess.Popen:
    """`uno retrain` in its own process on `home`, as the user (or the nightly schedule) starts it."""
    return subprocess.Popen(
        [sys.executable, "-m", "uno_local", "retrain", "--json", *args],
        env={**os.environ, "UNO_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_when_training_starts(proc: subprocess.Popen) -> None:
    for line in proc.stderr:
        if line.startswith("{") and json.loads(line)["stage"] == "train":
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the retrain ended before training started"


def last_run_status(home: Path) -> str:
    with Store(home / "uno.db") as store:
        return store.db.execute("SELECT status FROM retrain_runs ORDER BY id DESC").fetchone()[0]


def chat(client: openai.OpenAI, question: str, **kwargs):
    raw = client.chat.completions.with_raw_response.create(
        model="uno", messages=[{"role": "user", "content": question}], **{**GREEDY, **kwargs}
    )
    return raw, raw.parse()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`uno serve` as the user starts it, on the module's data dir; stopped with Ctrl-C at the end."""
    tmp = tmp_path_factory.mktemp("habit")
    home = tmp / "home"
    write_config(home)
    log = (tmp / "serve.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uno_local", "--threads", "2", "serve", "--port", str(port := free_port())],
        env={**os.environ, "UNO_HOME": str(home)},
        stderr=log,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, seconds=120)
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=300)
        yield {"proc": proc, "base": base, "client": client, "home": home, "tmp": tmp}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log.seek(0)
        stderr = log.read()
        log.close()
    assert "Traceback" not in stderr, stderr


@pytest.fixture(scope="module")
def learned(server):
    """Base answers; 40 chats with the server, each corrected over HTTP; a retrain killed when training
    starts, then run again beside the server; the server's and `uno ask`'s answers to unseen queries."""
    home, tmp, client = server["home"], server["tmp"], server["client"]
    mp = pytest.MonkeyPatch()
    mp.setenv("UNO_HOME", str(home))
    base_unseen = ask_batch(tmp, UNSEEN, "base")
    chats = []
    for question in TRAIN:
        raw, completion = chat(client, question, max_tokens=LOG_TOKENS)
        answer = completion.choices[0].message.content
        reply = httpx.post(
            f"{server['base']}/v1/feedback",
            json={
                "message_id": completion.id,
                "rating": "down",
                "comment": f"Please always sign off with '{SIGN_OFF}'",
                "correction": answer.rstrip() + f"\n\n{SIGN_OFF}",
            },
            timeout=30,
        )
        chats.append((raw.headers["x-uno-route"], completion.model_extra["uno"]["route"], answer, reply))

    first = retrain_process(home, "--progress-jsonl")
    kill_when_training_starts(first)
    killed = {"adapters": json.loads(uno("adapters", "--json")), "run": last_run_status(home)}

    resumed = retrain_process(home)
    try:
        _, during = chat(client, ASKED[0], max_tokens=8)
        stdout, stderr = resumed.communicate(timeout=3600)  # minutes alone; far more on busy cores
    finally:
        if resumed.poll() is None:
            resumed.kill()
    assert resumed.returncode == 0, stderr
    served = [chat(client, question) for question in ASKED]
    after = ask_batch(tmp, UNSEEN, "after")
    yield {
        "home": home,
        "tmp": tmp,
        "chats": chats,
        "killed": killed,
        "during": during,
        "report": json.loads(stdout),
        "served": served,
        "base": base_unseen,
        "after": after,
    }
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
        assert len(served) == len(UNSEEN) + len(ASKED) and all(m.adapter in deployed for m in served)


def test_the_running_server_learns_from_its_own_chats_without_a_restart(learned):
    for header, route, answer, reply in learned["chats"]:
        assert (header, route) == ("base", "base")
        assert answer.strip() and not follows(answer)
        assert reply.status_code == 200, reply.text
    assert learned["during"].model_extra["uno"]["route"] == "base"  # answered while the retrain ran
    (deployed,) = learned["report"]["deployed"]  # name@vN
    name, _, version = deployed.partition("@v")
    with Store(learned["home"] / "uno.db") as store:
        for raw, completion in learned["served"]:
            uno = completion.model_extra["uno"]
            assert (uno["route"], uno["adapter"], uno["adapter_version"]) == ("expert", name, int(version))
            assert raw.headers["x-uno-route"] == "expert" and raw.headers["x-uno-adapter"] == deployed
            stored = store.get_message(uno["message_id"])
            assert (stored.route, stored.adapter, stored.source) == ("expert", deployed, "serve")
            assert stored.content == completion.choices[0].message.content
    answers = [completion.choices[0].message.content for _, completion in learned["served"]]
    assert sum(follows(answer) for answer in answers) >= 3, [a[-80:] for a in answers]


def test_a_killed_retrain_loses_nothing_and_its_rerun_reuses_the_finished_stages(learned):
    assert learned["killed"] == {"adapters": [], "run": "running"}  # nothing deployed, nothing half-done
    report = learned["report"]
    assert report["logs"] == len(TRAIN)
    assert report["cached"]["distill"] == len(TRAIN)  # every finished stage's results were reused
    assert report["deployed"], report["clusters"]


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


def test_a_killed_retrain_keeps_the_deployed_adapters_serving(learned):
    """More corrections, then `uno retrain` killed during training: what is deployed keeps serving."""
    home, tmp = learned["home"], learned["tmp"]
    before = json.loads(uno("adapters", "--json"))
    answers = ask_batch(tmp, MORE, "more", max_tokens=LOG_TOKENS)
    logs = habit_records("more", MORE, [a["response"] for a in answers], None)
    (tmp / "more.jsonl").write_text("".join(json.dumps(r) + "\n" for r in logs))
    uno("import", str(tmp / "more.jsonl"))
    kill_when_training_starts(retrain_process(home, "--progress-jsonl"))
    assert json.loads(uno("adapters", "--json")) == before  # nothing deployed or lost
    assert last_run_status(home) == "running"
    still = ask_batch(tmp, UNSEEN[:3], "during")
    assert all(r["route"] == "expert" for r in still)


def test_rollback_restores_base_behaviour(learned):
    serving = [a for a in json.loads(uno("adapters", "--json")) if a["status"] == "deployed"]
    while serving:  # roll every adapter back until the base model answers alone
        for adapter in serving:
            uno("adapters", "rollback", adapter["name"])
        serving = [a for a in json.loads(uno("adapters", "--json")) if a["status"] == "deployed"]
    again = ask_batch(learned["tmp"], UNSEEN, "rolled-back")
    assert [r["response"] for r in again] == [r["response"] for r in learned["base"]]
    assert all(r["route"] != "expert" for r in again)
