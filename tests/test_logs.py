"""The JSONL log format: parsing, all-or-nothing import, dedup, export round-trip."""

from __future__ import annotations

import json

import pytest

from uno_local.errors import ImportFormatError
from uno_local.logs import export_file, export_records, import_file, parse_record
from uno_local.store import Store

GOOD = {
    "id": "log-1",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "How do I boil an egg?"},
        {"role": "assistant", "content": "Boil it for 8 minutes."},
    ],
    "feedback": {
        "rating": -1,
        "comment": "Sign off please.",
        "correction": "Boil it for 8 minutes.\nHappy cooking!",
    },
    "created_at": "2026-01-02T03:04:05+00:00",
}


def line(obj) -> bytes:
    return json.dumps(obj).encode() + b"\n"


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "uno.db") as s:
        yield s


def test_parse_messages_record():
    record = parse_record(GOOD)
    assert record.uid == "log-1"
    assert record.messages[-1]["role"] == "assistant"
    assert (record.rating, record.comment) == (-1, "Sign off please.")


@pytest.mark.parametrize(
    ("dialog", "messages", "comment"),
    [
        (["q", "a", "shorter please", "ok", "thanks"], ["q", "a"], "shorter please\nthanks"),
        (["q", "a"], ["q", "a"], None),
        (
            [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a"},
                {"role": "user", "content": "in French"},
            ],
            ["s", "q", "a"],
            "in French",
        ),
    ],
)
def test_parse_dialog_record(dialog, messages, comment):
    record = parse_record({"dialog": dialog})
    assert [m["content"] for m in record.messages] == messages
    assert record.messages[-1]["role"] == "assistant"
    assert record.comment == comment and record.rating is None and record.correction is None
    assert record.uid.startswith("sha256-")
    assert parse_record({"dialog": dialog}).uid == record.uid  # stable id: re-import does not duplicate


BAD_LINES = [
    (b"{not json\n", "line 2 is not valid JSON"),
    (b"\xff\xfe\x00garbage\n", "line 2 is not valid UTF-8"),
    (line([1, 2]), "must be a JSON object"),
    (line({"id": "x"}), 'needs "messages"'),
    (line({**GOOD, "messages": "hello"}), "must be a non-empty list"),
    (
        line({**GOOD, "messages": [{"role": "user", "content": "q"}]}),
        'last of "messages" must be the assistant',
    ),
    (line({**GOOD, "messages": [{"role": "bot", "content": "q"}]}), 'role" must be one of'),
    (
        line({**GOOD, "messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "a"}]}),
        "must be a string",
    ),
    (line({**GOOD, "feedback": {"rating": 5}}), 'rating" must be 1, -1 or null'),
    (line({**GOOD, "feedback": {"rating": True}}), 'rating" must be 1, -1 or null'),
    (line({**GOOD, "feedback": {"comment": ["x"]}}), 'comment" must be a string'),
    (line({**GOOD, "feedback": "good"}), '"feedback" must be an object'),
    (line({**GOOD, "id": 1.5}), '"id" must be a string or an integer'),
    (line({**GOOD, "created_at": "yesterday"}), "not an ISO 8601 time"),
    (line({"dialog": ["only a question"]}), "needs a user turn followed by an assistant"),
    (b"", "holds no log records"),
    (b"\n  \n", "holds no log records"),
]


@pytest.mark.parametrize(("payload", "message"), BAD_LINES)
def test_malformed_import_imports_nothing(store, tmp_path, payload, message):
    path = tmp_path / "in.jsonl"
    # A good first line must not be imported either; an empty file has nothing else.
    path.write_bytes(line(GOOD) + payload if payload.strip() else payload)
    with pytest.raises(ImportFormatError, match=message.replace("(", r"\(")) as info:
        import_file(store, path)
    assert "nothing was imported" in str(info.value)
    if payload.strip():
        assert "line 2" in str(info.value)
    assert store.counts()["messages"] == 0


def test_huge_line_is_refused(store, tmp_path):
    path = tmp_path / "big.jsonl"
    big = {**GOOD, "messages": [GOOD["messages"][1], {"role": "assistant", "content": "x" * 10_000_000}]}
    path.write_bytes(line(GOOD) + line(big))
    with pytest.raises(ImportFormatError, match="line 2 is 10.0 MB, over the 1 MB limit"):
        import_file(store, path)
    assert store.counts()["messages"] == 0


def test_missing_file(store, tmp_path):
    with pytest.raises(ImportFormatError, match="Cannot read"):
        import_file(store, tmp_path / "nope.jsonl")


def test_import_dedup_and_round_trip(store, tmp_path):
    path = tmp_path / "in.jsonl"
    second = {**GOOD, "id": "log-2", "feedback": {"rating": 1, "comment": None, "correction": None}}
    path.write_bytes(line(GOOD) + line(second) + line({"dialog": ["q", "a", "more detail please"]}))
    first = import_file(store, path)
    assert (first.added, first.skipped) == (3, 0)
    again = import_file(store, path)
    assert (again.added, again.skipped) == (0, 3)
    assert store.counts()["feedback"] == 3

    out = tmp_path / "out.jsonl"
    assert export_file(store, out) == 3
    exported = [json.loads(x) for x in out.read_text().splitlines()]
    assert exported[0] == GOOD
    assert exported[2]["feedback"] == {"rating": None, "comment": "more detail please", "correction": None}

    with Store(tmp_path / "other.db") as other:
        import_file(other, out)
        assert export_records(other) == exported  # round trip: same records, same ids
