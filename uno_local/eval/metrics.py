"""Scoring: each method's answers on the test and control queries -> the report dict of `uno eval`.

- adherence (per topic): share of the topic's test answers that pass the topic's check and say something
  besides the habit (`answers_with_habit`: "Hope that helps!\n\nHope that helps!" ends with the
  sign-off but answers nothing, and an empty answer is under any word limit).
- adherence (overall): share of all test answers that pass, pooled over topics (micro average).
- control_unchanged: share of control answers equal to the base model's greedy answers after
  whitespace normalisation (runs of whitespace -> one space, ends trimmed).
- tokens_per_answer: mean prompt + completion tokens over every answer the method gave (test and
  control queries); the prompt/completion split is kept beside it.
- quality (topic and control answers, beside the base's): `repetition`, the mean share of repeated word
  3-grams per answer, and `content_kept`, the mean share of the base answer's content words the answer
  still has once the habit is set aside (its phrases ignored; case, bullets and punctuation never
  count); `scaffolding_answers` counts answers that carry prompt scaffolding (`quality.scaffolding`: the
  Critic's or revision prompt's headings and instructions), and `topic_looping` the topic answers that
  are loops (`quality.loops`: a mean hides one answer that repeats itself to the token limit).
  uno_local/quality.py defines them.
- routing (methods that route): on-topic `recall` (test queries sent to their topic's cluster, the
  cluster most of that topic's routed queries went to), `precision` (routed queries, controls included,
  that went to their topic's cluster) and `controls_kept` (controls left on the base model).
- validator_vs_test (methods that route): per topic, the cluster most of its test queries went to, the
  validator's held-out win rate for that cluster (its prediction that the adapter helps) and the
  measured test adherence beside it, so a validator that ships adapters which fail the test shows.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

from uno_local.eval.checks import check
from uno_local.eval.scenario import Check, Scenario
from uno_local.quality import content_kept, loops, repetition_share, scaffolding
from uno_local.text import words

TRAINING_SLOTS = ("wall_s", "tokens", "gap_skipped_tokens", "stage_seconds")


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass
class MethodRun:
    """What the runner collected for one method."""

    name: str
    test_answers: dict[str, list[str]]  # topic name -> answers in the order of topic.test
    control_answers: list[str]  # in the order of scenario.controls
    usage: list[Usage]  # one per answer given, test and control
    training: dict[str, Any] = field(default_factory=dict)  # wall_s, tokens, gap_skipped_tokens, ...
    validator: list[dict[str, Any]] = field(default_factory=list)  # one decision per candidate adapter
    extra: dict[str, Any] = field(default_factory=dict)  # anything else worth keeping in report.json


def normalise(text: str) -> str:
    """Whitespace-insensitive form used to compare control answers."""
    return " ".join(text.split())


def habit_phrases(spec: Check) -> list[str]:
    """The words a habit adds (a fixed phrase, an appended line), set aside when content is compared."""
    phrases = [str(spec.params["value"])] if "value" in spec.params else []
    if spec.rewrite and "text" in spec.rewrite:
        phrases.append(str(spec.rewrite["text"]))
    return phrases


def answers_with_habit(answer: str, spec: Check) -> bool:
    """Pure: `answer` passes the check and has a word of its own once the habit's phrases are removed."""
    rest = answer.lower()
    for phrase in habit_phrases(spec):
        rest = rest.replace(phrase.lower().strip(), " ")
    return check(answer, spec) and bool(words(rest))


def topic_adherence(scenario: Scenario, test_answers: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """Share of test answers per topic that follow the habit in an answer (`answers_with_habit`)."""
    out = {}
    for topic in scenario.topics:
        answers = test_answers.get(topic.name)
        if answers is None or len(answers) != len(topic.test):
            got = "none" if answers is None else len(answers)
            raise ValueError(f"topic {topic.name!r} needs {len(topic.test)} test answers, got {got}")
        out[topic.name] = sum(answers_with_habit(a, topic.rule.check) for a in answers) / len(answers)
    return out


def overall_adherence(scenario: Scenario, test_answers: Mapping[str, Sequence[str]]) -> float:
    """Share of passing test answers pooled over all topics."""
    per_topic = topic_adherence(scenario, test_answers)
    passed = sum(per_topic[t.name] * len(t.test) for t in scenario.topics)
    return passed / sum(len(t.test) for t in scenario.topics)


def control_unchanged(answers: Sequence[str], base_answers: Sequence[str]) -> float:
    """Share of control answers identical to the base model's, whitespace aside."""
    if len(answers) != len(base_answers) or not answers:
        raise ValueError(
            f"need the same non-zero number of answers, got {len(answers)} and {len(base_answers)}"
        )
    return sum(normalise(a) == normalise(b) for a, b in zip(answers, base_answers, strict=True)) / len(
        answers
    )


def token_means(usage: Sequence[Usage]) -> dict[str, float]:
    """Mean prompt, completion and total tokens per answer."""
    if not usage:
        raise ValueError("no token usage was recorded")
    prompt = fmean(u.prompt_tokens for u in usage)
    completion = fmean(u.completion_tokens for u in usage)
    return {"prompt": prompt, "completion": completion, "total": prompt + completion}


def quality(
    scenario: Scenario,
    test_answers: Mapping[str, Sequence[str]],
    control_answers: Sequence[str],
    base_test: Mapping[str, Sequence[str]],
    base_controls: Sequence[str],
) -> dict[str, float]:
    """Mean repetition share and content kept against the base, over topic and over control answers."""
    reps, kept = [], []
    for topic in scenario.topics:
        ignore = habit_phrases(topic.rule.check)
        for answer, base in zip(test_answers[topic.name], base_test[topic.name], strict=True):
            reps.append(repetition_share(answer))
            kept.append(content_kept(base, answer, ignore))
    answers = [a for t in scenario.topics for a in test_answers[t.name]] + list(control_answers)
    return {
        "scaffolding_answers": sum(scaffolding(a) is not None for a in answers),
        "topic_repetition": fmean(reps) if reps else 0.0,
        "topic_looping": sum(loops(a) for t in scenario.topics for a in test_answers[t.name]),
        "topic_content_kept": fmean(kept) if kept else 1.0,
        "control_repetition": fmean(map(repetition_share, control_answers)) if control_answers else 0.0,
        "control_content_kept": (
            fmean(content_kept(b, a) for a, b in zip(control_answers, base_controls, strict=True))
            if control_answers
            else 1.0
        ),
    }


def routing_figures(routes: Sequence[Mapping[str, Any]]) -> dict[str, float] | None:
    """Router recall, precision and controls kept from a method's routes (`extra.routes`: topic None for
    a control, cluster None when the query stayed on the base); None when the method never routed."""
    if not any(r.get("cluster") is not None for r in routes):
        return None
    counts: dict[Any, Counter] = defaultdict(Counter)
    for r in routes:
        if r["topic"] is not None and r["cluster"] is not None:
            counts[r["cluster"]][r["topic"]] += 1
    owner = {cluster: c.most_common(1)[0][0] for cluster, c in counts.items()}
    tests = [r for r in routes if r["topic"] is not None]
    controls = [r for r in routes if r["topic"] is None]
    right = sum(r["cluster"] is not None and owner.get(r["cluster"]) == r["topic"] for r in tests)
    routed = sum(r["cluster"] is not None for r in routes)
    return {
        "recall": right / len(tests) if tests else 1.0,
        "precision": right / routed,
        "controls_kept": sum(r["cluster"] is None for r in controls) / len(controls) if controls else 1.0,
    }


def validator_vs_test(
    scenario: Scenario,
    routes: Sequence[Mapping[str, Any]],
    validator: Sequence[Mapping[str, Any]],
    per_topic: Mapping[str, float],
) -> dict[str, dict[str, Any]] | None:
    """Per topic: its main cluster (the one most of its routed test queries went to; None when none was
    routed), the share of its test queries routed there, that cluster's route and validator win rate
    (None without a decision), and the measured test adherence. None when the method never routed."""
    if not any(r.get("cluster") is not None for r in routes):
        return None
    decisions = {str(v.get("label")): v for v in validator}
    out = {}
    for topic in scenario.topics:
        clusters = Counter(
            r["cluster"] for r in routes if r["topic"] == topic.name and r["cluster"] is not None
        )
        cluster = clusters.most_common(1)[0][0] if clusters else None
        decision = decisions.get(str(cluster), {}) if cluster is not None else {}
        out[topic.name] = {
            "cluster": cluster,
            "routed": clusters[cluster] / len(topic.test) if cluster is not None else 0.0,
            "route": decision.get("route"),
            "validator_win_rate": decision.get("win_rate"),
            "heldout": decision.get("heldout"),
            "test_adherence": per_topic[topic.name],
        }
    return out


def method_report(
    scenario: Scenario,
    run: MethodRun,
    base_control_answers: Sequence[str],
    base_test_answers: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """One entry of report['methods']; with the base's test answers, its answer quality too."""
    per_topic = topic_adherence(scenario, run.test_answers)
    tokens = token_means(run.usage)
    passed = sum(round(per_topic[t.name] * len(t.test)) for t in scenario.topics)
    extra = {}
    routing = routing_figures(run.extra.get("routes", []))
    if routing is not None:
        extra["routing"] = routing
        extra["validator_vs_test"] = validator_vs_test(
            scenario, run.extra.get("routes", []), run.validator, per_topic
        )
    if base_test_answers is not None:
        extra["quality"] = quality(
            scenario, run.test_answers, run.control_answers, base_test_answers, base_control_answers
        )
    return {
        **extra,
        "adherence": overall_adherence(scenario, run.test_answers),
        "control_unchanged": control_unchanged(run.control_answers, base_control_answers),
        "tokens_per_answer": tokens["total"],
        "prompt_tokens_per_answer": tokens["prompt"],
        "completion_tokens_per_answer": tokens["completion"],
        "per_topic": per_topic,
        "passed": passed,
        "n_test": sum(len(t.test) for t in scenario.topics),
        "n_answers": len(run.usage),
        "training": {**dict.fromkeys(TRAINING_SLOTS), **run.training},
        "validator": list(run.validator),
        "extra": dict(run.extra),
    }


def build_report(
    scenario: Scenario,
    runs: Sequence[MethodRun],
    base_control_answers: Sequence[str] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole report; control answers are compared with the `base` run's unless given."""
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"method names repeat: {names}")
    base = next((run for run in runs if run.name == "base"), None)
    if base_control_answers is None:
        if base is None:
            raise ValueError("no 'base' run to compare control answers with; pass base_control_answers")
        base_control_answers = base.control_answers
    base_test = base.test_answers if base is not None else None
    methods = {run.name: method_report(scenario, run, base_control_answers, base_test) for run in runs}
    if "base" in methods:  # gains over the base model: what learning added, and what context cost it paid
        ref = methods["base"]
        for entry in methods.values():
            entry["adherence_gain"] = entry["adherence"] - ref["adherence"]
            entry["repetition_over_base"] = (
                entry["quality"]["topic_repetition"] - ref["quality"]["topic_repetition"]
            )
            entry["extra_prompt_tokens"] = entry["prompt_tokens_per_answer"] - ref["prompt_tokens_per_answer"]
    return {
        "scenario": {
            "name": scenario.name,
            "seed": scenario.seed,
            "topics": [t.name for t in scenario.topics],
            "n_train": sum(len(t.train) for t in scenario.topics),
            "n_test": sum(len(t.test) for t in scenario.topics),
            "n_controls": len(scenario.controls),
            "noise_rate": scenario.noise.rate,
        },
        "methods": methods,
        "meta": dict(meta or {}),
    }
