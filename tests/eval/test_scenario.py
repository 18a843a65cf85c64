"""Scenario loading: shipped files load; each malformed case names the file and the JSON path."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from uno_local.errors import ScenarioError
from uno_local.eval.scenario import Check, load_scenario, parse_scenario

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = Path(__file__).parent / "data" / "example-scenario.json"  # verbatim copy of shared/eval's
SHIPPED = sorted((REPO / "assets" / "eval").glob("*.json"))

VALID = {
    "name": "tiny",
    "seed": 1,
    "topics": [
        {
            "name": "a",
            "rule": {
                "text": "End with Bye.",
                "check": {"type": "ends_with", "value": "Bye."},
                "feedback": ["Say Bye."],
            },
            "train": ["q1", "q2"],
            "test": ["t1"],
        },
        {
            "name": "b",
            "rule": {
                "text": "Give a source.",
                "check": {
                    "type": "regex",
                    "pattern": "Source: ",
                    "rewrite": {"type": "append", "text": "\nSource: me"},
                },
                "feedback": ["Source?"],
            },
            "train": ["q3"],
            "test": ["t2"],
        },
    ],
    "controls": ["c1"],
    "noise": {"rate": 0.2, "feedback": ["meh"]},
}


def test_example_scenario_loads() -> None:
    s = load_scenario(EXAMPLE)
    assert s.name == "example-three-habits" and s.seed == 7
    assert [t.name for t in s.topics] == ["gardening", "fitness", "history"]
    assert s.topic("fitness").rule.check == Check("numbered_list", {"min_items": 3})
    assert s.topic("history").rule.check.params == {"n": 40}
    assert (len(s.controls), s.noise.rate, len(s.noise.feedback)) == (8, 0.15, 4)
    assert all(len(t.train) == 12 and len(t.test) == 5 for t in s.topics)


def test_shipped_scenarios_load_and_cover_the_check_types() -> None:
    names = {p.stem for p in SHIPPED}
    assert {"quick", "cooking-signoff", "study-habits", "travel-format"} <= names
    assert {"pet-care", "home-diy", "money-matters", "tech-support"} <= names  # issue 21's, unseen in tuning
    types = set()
    for path in SHIPPED:
        s = load_scenario(path)
        assert s.name == path.stem
        assert 1 <= len(s.topics) <= 3 and 0 < s.noise.rate < 0.5
        types |= {t.rule.check.type for t in s.topics}
        if s.name != "quick":
            assert all(len(t.train) == 12 and len(t.test) in (5, 6) for t in s.topics)
            assert 6 <= len(s.controls) <= 10
    assert {
        "ends_with",
        "starts_with",
        "contains",
        "numbered_list",
        "bullet_list",
        "max_words",
        "lowercase",
    } <= types
    assert {"regex", "not_regex"} & types


def test_quick_scenario_is_small() -> None:
    s = load_scenario(REPO / "assets" / "eval" / "quick.json")
    assert sum(len(t.train) for t in s.topics) <= 16 and len(s.controls) == 3
    assert all(len(t.test) == 3 for t in s.topics)


def test_parse_fills_defaults() -> None:
    data = copy.deepcopy(VALID)
    del data["noise"]
    s = parse_scenario(data, "x.json")
    assert (s.noise.rate, s.noise.feedback, s.description) == (0.0, [], "")
    assert s.topics[1].rule.check.rewrite == {"type": "append", "text": "\nSource: me"}


def _set(path: str, value: object) -> Callable[[dict], None]:
    """A mutation that sets (or, with value ..., deletes) the key at a dotted path like topics.1.rule.text."""

    def mutate(data: dict) -> None:
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        key = int(last) if last.isdigit() else last
        if value is ...:
            del node[key]
        else:
            node[key] = value

    return mutate


C1 = "topics.1.rule.check"
MALFORMED = [
    (_set("name", ...), "bad.json: name is missing."),
    (_set("name", "has space"), "bad.json: name must be a short name"),
    (_set("seed", "7"), "bad.json: seed must be an integer."),
    (_set("seed", True), "bad.json: seed must be an integer."),
    (_set("extra", 1), "bad.json: extra is not a known field"),
    (_set("topics", []), "bad.json: topics must be a non-empty list."),
    (_set("topics.0", "gardening"), "bad.json: topics[0] must be a JSON object."),
    (_set("topics.1.name", "a"), "bad.json: topics[1].name 'a' is used by topics[0] too"),
    (_set("topics.0.rule", ...), "bad.json: topics[0].rule is missing."),
    (_set("topics.0.rule.text", "  "), "bad.json: topics[0].rule.text must be a non-empty string."),
    (_set("topics.0.rule.feedback", []), "bad.json: topics[0].rule.feedback must be a non-empty list."),
    (
        _set("topics.0.rule.feedback", ["ok", 3]),
        "bad.json: topics[0].rule.feedback[1] must be a non-empty string.",
    ),
    (_set("topics.0.train", []), "bad.json: topics[0].train must be a non-empty list."),
    (_set("topics.1.test", "t2"), "bad.json: topics[1].test must be a non-empty list."),
    (
        _set("topics.0.rule.check.type", "rhymes"),
        "bad.json: topics[0].rule.check.type 'rhymes' is not a known check",
    ),
    (_set("topics.0.rule.check.type", ...), "bad.json: topics[0].rule.check.type is missing."),
    (
        _set("topics.0.rule.check.value", ""),
        "bad.json: topics[0].rule.check.value must be a non-empty string.",
    ),
    (
        _set("topics.0.rule.check", {"type": "max_words", "n": 0}),
        "bad.json: topics[0].rule.check.n must be a positive integer.",
    ),
    (
        _set(C1, {"type": "max_words", "n": 2.5}),
        "bad.json: topics[1].rule.check.n must be a positive integer.",
    ),
    (_set(C1, {"type": "numbered_list"}), "bad.json: topics[1].rule.check.min_items is missing."),
    (
        _set(C1, {"type": "bullet_list", "min_item": 3, "min_items": 3}),
        "bad.json: topics[1].rule.check.min_item is not a known",
    ),
    (
        _set(C1 + ".pattern", "(unclosed"),
        "bad.json: topics[1].rule.check.pattern is not a valid regular expression",
    ),
    (
        _set(C1 + ".rewrite", ...),
        "bad.json: topics[1].rule.check.rewrite is missing: a regex check needs an explicit",
    ),
    (
        _set(C1 + ".rewrite", {"type": "shout"}),
        "bad.json: topics[1].rule.check.rewrite.type 'shout' is not a known rewrite",
    ),
    (_set(C1 + ".rewrite", {"type": "append"}), "bad.json: topics[1].rule.check.rewrite.text is missing."),
    (
        _set(C1 + ".rewrite", {"type": "truncate_words", "n": -1}),
        "bad.json: topics[1].rule.check.rewrite.n must be a positive",
    ),
    (
        _set(C1 + ".rewrite", {"type": "replace", "pattern": "x", "with": "\\9"}),
        "bad.json: topics[1].rule.check.rewrite.with is not a valid replacement",
    ),
    (
        _set(C1 + ".rewrite", {"type": "prepend", "text": "Sauce: "}),
        "bad.json: topics[1].rule.check.rewrite leaves the answer ''",
    ),
    (_set("controls", ["c1", "t1"]), "bad.json: controls[1] repeats topics[0].test[0]"),
    (_set("topics.1.test.0", "Q1 "), "bad.json: topics[1].test[0] repeats topics[0].train[0]"),
    (_set("noise.rate", 1.5), "bad.json: noise.rate must be a number between 0 and 1."),
    (_set("noise.rate", -0.1), "bad.json: noise.rate must be a number between 0 and 1."),
    (_set("noise.rate", "0.1"), "bad.json: noise.rate must be a number between 0 and 1."),
    (_set("noise.feedback", []), "bad.json: noise.feedback must be a non-empty list."),
    (_set("noise", [0.1]), "bad.json: noise must be a JSON object."),
]


@pytest.mark.parametrize(("mutate", "message"), MALFORMED)
def test_malformed_scenario_names_the_path(mutate: Callable[[dict], None], message: str) -> None:
    data = copy.deepcopy(VALID)
    mutate(data)
    with pytest.raises(ScenarioError) as err:
        parse_scenario(data, "bad.json")
    assert str(err.value).startswith(message), str(err.value)
    assert str(err.value).endswith(".")


@pytest.mark.parametrize("value", [[1, 2], "text", None, 3])
def test_top_level_must_be_an_object(value: object) -> None:
    with pytest.raises(ScenarioError, match=r"^s\.json: must hold a JSON object\.$"):
        parse_scenario(value, "s.json")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b'{"name": "x",',
            "is not valid JSON (Expecting property name enclosed in double quotes at line 1, column 14).",
        ),
        (b'{"name": "caf\xe9"}', "is not valid UTF-8 (byte 13); save it as UTF-8."),
        (b"", "is not valid JSON (Expecting value at line 1, column 1)."),
    ],
)
def test_unreadable_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "scenario.json"
    path.write_bytes(content)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(err.value) == f"{path}: {message}"


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(tmp_path / "nope.json")
    with pytest.raises(ScenarioError, match="cannot be read"):
        load_scenario(tmp_path)


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(VALID).encode())
    assert load_scenario(path).name == "tiny"


def test_nested_error_names_the_file_as_given(tmp_path: Path) -> None:
    data = copy.deepcopy(VALID)
    data["topics"][1]["rule"]["check"] = {"type": "max_words", "n": "ten"}
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(err.value) == f"{path}: topics[1].rule.check.n must be a positive integer."


def test_answer_and_log_limits_are_optional_positive_counts() -> None:
    assert (parse_scenario(copy.deepcopy(VALID), "x.json").answer_tokens, None) == (None, None)
    data = {**copy.deepcopy(VALID), "answer_tokens": 160, "log_tokens": 96}
    s = parse_scenario(data, "x.json")
    assert (s.answer_tokens, s.log_tokens) == (160, 96)
    with pytest.raises(ScenarioError, match="log_tokens must be a positive integer"):
        parse_scenario({**data, "log_tokens": 0}, "x.json")
