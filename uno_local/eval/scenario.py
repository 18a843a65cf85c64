"""Scenario files: JSON path -> a validated `Scenario`, or a ScenarioError naming the file and JSON path.

The format (docs/eval.md; example: assets/eval/*.json) is
  {"name", "seed", "description"?, "topics": [{"name", "rule": {"text", "check", "feedback"}, "train",
   "test"}], "controls", "noise"?: {"rate", "feedback"}}
where `check` is {"type", <its parameters>, "rewrite"?: {"type", <its parameters>}} (see checks.py), and the
optional "answer_tokens" / "log_tokens" cap the answers under test and the simulated logs' answers (by
default both are as long as the chat's `generation.max_tokens`: real-length answers).
Every query (train, test or control) must be unique across the file, so no test query leaks into
training. An explicit rewrite is probed when the file loads: it must make fixed probe answers and the
scenario's own texts pass its check, or the scenario is refused.

`uno eval --quick` runs assets/eval/quick.json (2 topics, 8 train and 3 test queries each, 3 controls)
rather than subsampling a big scenario, so CI measures a fixed, readable workload.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uno_local.errors import ScenarioError
from uno_local.eval.checks import CHECK_PARAMS, NEEDS_REWRITE, REWRITE_PARAMS, first_failing_probe

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class Check:
    type: str
    params: dict[str, Any]
    rewrite: dict[str, Any] | None = None


@dataclass(frozen=True)
class Rule:
    text: str
    check: Check
    feedback: list[str]


@dataclass(frozen=True)
class Topic:
    name: str
    rule: Rule
    train: list[str]
    test: list[str]


@dataclass(frozen=True)
class Noise:
    rate: float = 0.0
    feedback: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Scenario:
    name: str
    seed: int
    topics: list[Topic]
    controls: list[str]
    noise: Noise = field(default_factory=Noise)
    description: str = ""
    answer_tokens: int | None = None  # test and control answers; None: the chat's generation.max_tokens
    log_tokens: int | None = None  # the simulated logs' base answers; None: as long as the chat's

    def topic(self, name: str) -> Topic:
        """The topic called `name` (KeyError when there is none)."""
        for topic in self.topics:
            if topic.name == name:
                return topic
        raise KeyError(name)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file; check the path.") from None
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot be read ({exc.strerror}); check the path.") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: is not valid UTF-8 (byte {exc.start}); save it as UTF-8.") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScenarioError(
            f"{path}: is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})."
        ) from None
    return parse_scenario(data, str(path))


def parse_scenario(data: object, source: str = "<scenario>") -> Scenario:
    """Validate parsed JSON; the first problem raises ScenarioError('<source>: <json path> ...')."""
    v = _Validator(source)
    v.fields(
        data,
        "",
        {"name", "seed", "topics", "controls"},
        {"noise", "description", "answer_tokens", "log_tokens"},
    )
    assert isinstance(data, dict)
    name = v.name(data["name"], "name")
    seed = data["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool):
        v.fail("seed", "must be an integer")
    description = v.text(data["description"], "description") if "description" in data else ""
    topics_raw = v.items(data["topics"], "topics")
    topics = [v.topic(t, f"topics[{i}]") for i, t in enumerate(topics_raw)]
    seen: dict[str, str] = {}
    for i, topic in enumerate(topics):
        if topic.name in seen:
            v.fail(
                f"topics[{i}].name", f"{topic.name!r} is used by {seen[topic.name]} too; names must differ"
            )
        seen[topic.name] = f"topics[{i}]"
    controls = v.texts(data["controls"], "controls")
    noise = v.noise(data["noise"], "noise") if "noise" in data else Noise()
    _unique_queries(v, topics, controls)
    limits = {k: v.count(data[k], k) for k in ("answer_tokens", "log_tokens") if k in data}
    return Scenario(name, seed, topics, controls, noise, description, **limits)


def _unique_queries(v: _Validator, topics: list[Topic], controls: list[str]) -> None:
    # A repeated query would leak a test answer into training or blur which rule applies.
    first: dict[str, str] = {}
    lists = [
        (f"topics[{i}].{part}", getattr(t, part)) for i, t in enumerate(topics) for part in ("train", "test")
    ]
    for where, queries in [*lists, ("controls", controls)]:
        for j, query in enumerate(queries):
            key = " ".join(query.split()).casefold()
            if key in first:
                v.fail(f"{where}[{j}]", f"repeats {first[key]}; every query must appear once")
            first[key] = f"{where}[{j}]"


class _Validator:
    """Type checks that raise ScenarioError with the source and the JSON path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, problem: str) -> None:
        where = f"{self.source}: {path}" if path else f"{self.source}:"
        raise ScenarioError(f"{where} {problem}.")

    def fields(self, value: object, path: str, required: set[str], optional: set[str]) -> None:
        if not isinstance(value, dict):
            self.fail(path, "must be a JSON object" if path else "must hold a JSON object")
        assert isinstance(value, dict)
        prefix = f"{path}." if path else ""
        for key in sorted(required - value.keys()):
            self.fail(prefix + key, "is missing")
        for key in value:
            if key not in required | optional:
                known = ", ".join(sorted(required | optional)) or "none"
                self.fail(prefix + str(key), f"is not a known field (known: {known})")

    def text(self, value: object, path: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(path, "must be a non-empty string")
        return value  # type: ignore[return-value]

    def name(self, value: object, path: str) -> str:
        if not isinstance(value, str) or not _NAME.match(value):
            self.fail(path, "must be a short name of letters, digits, '-' or '_' (at most 64)")
        return value  # type: ignore[return-value]

    def count(self, value: object, path: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            self.fail(path, "must be a positive integer")
        return value  # type: ignore[return-value]

    def items(self, value: object, path: str) -> list:
        if not isinstance(value, list) or not value:
            self.fail(path, "must be a non-empty list")
        return value  # type: ignore[return-value]

    def texts(self, value: object, path: str) -> list[str]:
        return [self.text(item, f"{path}[{i}]") for i, item in enumerate(self.items(value, path))]

    def regex(self, value: object, path: str) -> str:
        if not isinstance(value, str) or not value:
            self.fail(path, "must be a non-empty regular expression string")
        try:
            re.compile(value)  # type: ignore[arg-type]
        except re.error as exc:
            self.fail(path, f"is not a valid regular expression ({exc})")
        return value  # type: ignore[return-value]

    def params(self, value: dict, path: str, kinds: dict[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, kind in kinds.items():
            where = f"{path}.{key}"
            if kind == "text":
                out[key] = self.text(value[key], where)
            elif kind == "count":
                out[key] = self.count(value[key], where)
            elif kind == "regex":
                out[key] = self.regex(value[key], where)
            elif not isinstance(value[key], str):
                self.fail(where, "must be a string")
            else:
                out[key] = value[key]
        return out

    def typed(self, value: object, path: str, table: dict[str, dict[str, str]], what: str) -> str:
        if not isinstance(value, dict):
            self.fail(path, "must be a JSON object")
        assert isinstance(value, dict)
        if "type" not in value:
            self.fail(f"{path}.type", "is missing")
        kind = value["type"]
        if kind not in table:
            self.fail(f"{path}.type", f"{kind!r} is not a known {what} type (known: {', '.join(table)})")
        return kind

    def check(self, value: object, path: str) -> Check:
        kind = self.typed(value, path, CHECK_PARAMS, "check")
        assert isinstance(value, dict)
        self.fields(value, path, {"type", *CHECK_PARAMS[kind]}, {"rewrite"})
        params = self.params(value, path, CHECK_PARAMS[kind])
        if "rewrite" not in value:
            if kind in NEEDS_REWRITE:
                self.fail(f"{path}.rewrite", f"is missing: a {kind} check needs an explicit rewrite")
            return Check(kind, params)
        rpath = f"{path}.rewrite"
        rkind = self.typed(value["rewrite"], rpath, REWRITE_PARAMS, "rewrite")
        self.fields(value["rewrite"], rpath, {"type", *REWRITE_PARAMS[rkind]}, set())
        rewrite = {"type": rkind, **self.params(value["rewrite"], rpath, REWRITE_PARAMS[rkind])}
        if rkind == "replace":
            try:  # re.sub parses the replacement template before searching
                re.compile(rewrite["pattern"]).sub(rewrite["with"], "")
            except re.error as exc:
                self.fail(f"{rpath}.with", f"is not a valid replacement ({exc})")
        return Check(kind, params, rewrite)

    def topic(self, value: object, path: str) -> Topic:
        self.fields(value, path, {"name", "rule", "train", "test"}, set())
        assert isinstance(value, dict)
        name = self.name(value["name"], f"{path}.name")
        rpath = f"{path}.rule"
        self.fields(value["rule"], rpath, {"text", "check", "feedback"}, set())
        rule_raw = value["rule"]
        rule = Rule(
            self.text(rule_raw["text"], f"{rpath}.text"),
            self.check(rule_raw["check"], f"{rpath}.check"),
            self.texts(rule_raw["feedback"], f"{rpath}.feedback"),
        )
        topic = Topic(
            name, rule, self.texts(value["train"], f"{path}.train"), self.texts(value["test"], f"{path}.test")
        )
        if rule.check.rewrite is not None:
            probes = (rule.text, *rule.feedback, *topic.train, *topic.test)
            bad = first_failing_probe(rule.check, probes)
            if bad is not None:
                self.fail(
                    f"{rpath}.check.rewrite",
                    f"leaves the answer {bad[:40]!r} failing the check; change the rewrite so it always passes",
                )
        return topic

    def noise(self, value: object, path: str) -> Noise:
        self.fields(value, path, {"rate"}, {"feedback"})
        assert isinstance(value, dict)
        rate = value["rate"]
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            self.fail(f"{path}.rate", "must be a number between 0 and 1")
        if rate == 0 and not value.get("feedback"):
            return Noise(float(rate), [])
        return Noise(float(rate), self.texts(value.get("feedback"), f"{path}.feedback"))
