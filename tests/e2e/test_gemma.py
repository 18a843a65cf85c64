"""Issue 17 acceptance: a habit learned on a second, real architecture (Gemma 3 270M base, Q4_K_M).

The user's logs are Gemma's own answers, each corrected to open with a chef's note; `uno --model <gemma>
retrain` trains, exports and checks a Gemma adapter; `uno --model <gemma> ask` follows the habit on unseen
questions; rolling back restores Gemma's own answers; the embedded model never serves Gemma's adapter.
The base Gemma is not instruction-tuned (it tends to repeat the question), so the habit is an opening
one: it does not depend on where a rambling answer would end.
"""

from __future__ import annotations

import json

import pytest

from backends.hf_base import hf_base_dir
from tests.e2e.conftest import uno
from tests.e2e.test_habit import TRAIN, UNSEEN
from uno_local.paths import cache_dir

OPENING = "Chef's note:"
CONFIG = """
[generation]
max_tokens = 48

[train]
epochs = 2
max_answer_tokens = 64
max_prompt_tokens = 128

[uno]
# Practice (on by default) trains more steps on questions of its own making (266 s -> 316 s for this
# module in session 35's clean clone) and proves nothing Gemma-specific: the UNO-loop gate and the habit
# test practise on the embedded model.
practice_questions = 0
"""


def follows(answer: str) -> bool:
    return answer.lstrip().startswith(OPENING)


def ask(tmp, model: str, queries: list[str], name: str, max_tokens: int) -> list[dict]:
    src, out = tmp / f"{name}-in.jsonl", tmp / f"{name}-out.jsonl"
    src.write_text("".join(json.dumps({"id": i, "query": q}) + "\n" for i, q in enumerate(queries)))
    uno("--model", model, "ask", "--batch", str(src), "--out", str(out), "--max-tokens", str(max_tokens))
    return [json.loads(line) for line in out.read_text().splitlines()]


def deploy_embedded_adapter(home, tmp) -> None:
    """An adapter of the embedded model already serving in this data dir (random weights on every
    projection, deployed through the registry as a retrain deploys), for Gemma's retrain to leave alone."""
    from benchmarks.bench_adapters import PROJECTIONS, random_adapter
    from uno_local.app import App

    app = App.open(home=home)
    gguf = random_adapter(app.model_path, tmp / "embedded.gguf", seed=0, modules=set(PROJECTIONS), rank=4)
    app.registry.deploy(
        name="expert-embedded",
        kind="expert",
        gguf_file=gguf,
        peft_dir=None,
        base_model=app.model_path.name,
        sources=[],
        metrics={},
        config={},
    )
    app.close()


def embedded_state() -> tuple[list, str]:
    """The embedded model's adapters (their checksums included) and its greedy answer to one question."""
    return json.loads(uno("adapters", "--json")), uno("ask", "--greedy", "--max-tokens", "24", UNSEEN[0])


@pytest.fixture(scope="module")
def learned(tmp_path_factory, gemma_path, gemma_hf_base):
    tmp = tmp_path_factory.mktemp("gemma")
    home = tmp / "home"
    home.mkdir(mode=0o700)
    (home / "uno.toml").write_text(CONFIG)
    # The HF folder the retrain derives first (tests/backends/test_gemma.py derived it this session):
    # linked where the retrain looks, so that the suite pays for the derivation once.
    cached = hf_base_dir(gemma_path, cache_dir(home))
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.symlink_to(gemma_hf_base, target_is_directory=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("UNO_HOME", str(home))
    model = str(gemma_path)
    deploy_embedded_adapter(home, tmp)
    embedded_before = embedded_state()
    answers = ask(tmp, model, TRAIN, "train", 48)
    logs = [
        {
            "id": f"gemma-{i}",
            "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a["response"]}],
            "feedback": {
                "rating": -1,
                "comment": f"Always start with '{OPENING}'",
                "correction": f"{OPENING} {a['response'].strip()}",
            },
        }
        for i, (q, a) in enumerate(zip(TRAIN, answers, strict=True))
    ]
    (tmp / "logs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in logs))
    uno("import", str(tmp / "logs.jsonl"))
    base = ask(tmp, model, UNSEEN, "base", 24)
    report = json.loads(uno("--model", model, "retrain", "--json"))
    after = ask(tmp, model, UNSEEN, "after", 24)
    embedded_after = embedded_state()
    yield {
        "tmp": tmp,
        "model": model,
        "report": report,
        "base": base,
        "after": after,
        "embedded": (embedded_before, embedded_after),
    }
    mp.undo()


@pytest.fixture(autouse=True)
def learned_home(request, monkeypatch, uno_home):  # after uno_home, which it overrides
    if "learned" in request.fixturenames:
        monkeypatch.setenv("UNO_HOME", str(request.getfixturevalue("learned")["tmp"] / "home"))


def test_gemma_learns_the_habit_and_serves_it(learned):
    assert sum(follows(r["response"]) for r in learned["base"]) <= 1
    after = learned["after"]
    assert sum(follows(r["response"]) for r in after) >= 8, [r["response"][:60] for r in after]
    deployed = learned["report"]["deployed"]
    assert deployed and all(name.startswith("expert-") for name in deployed), learned["report"]["clusters"]
    assert all(r["route"] == "expert" for r in after)


def test_the_embedded_models_adapters_are_untouched(learned):
    before, after = learned["embedded"]
    assert after == before  # the same adapters, versions and files; the same answer
    (adapter,) = after[0]
    assert (adapter["name"], adapter["status"], adapter["problem"]) == ("expert-embedded", "deployed", None)
    gemma = json.loads(uno("--model", learned["model"], "adapters", "--json"))
    assert gemma and "expert-embedded" not in {a["name"] for a in gemma}  # each base sees its own
    assert any(a["status"] == "deployed" for a in gemma)


def test_rollback_restores_gemmas_own_answers(learned):
    model = learned["model"]
    serving = [
        a for a in json.loads(uno("--model", model, "adapters", "--json")) if a["status"] == "deployed"
    ]
    while serving:
        for adapter in serving:
            uno("--model", model, "adapters", "rollback", adapter["name"])
        serving = [
            a for a in json.loads(uno("--model", model, "adapters", "--json")) if a["status"] == "deployed"
        ]
    again = ask(learned["tmp"], model, UNSEEN, "rolled-back", 24)
    assert [r["response"] for r in again] == [r["response"] for r in learned["base"]]
    assert all(r["route"] != "expert" for r in again)
