"""The JSONL log format: parsing, all-or-nothing import, dedup, export round-trip."""

from __future__ import annotations

import json
import subprocess

import pytest

from uno_local.errors import ImportFormatError, OutputError
from uno_local.logs import MAX_LINE_BYTES, export_file, export_records, import_file, parse_record
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
    content = "x" * MAX_LINE_BYTES
    big = {**GOOD, "messages": [GOOD["messages"][1], {"role": "assistant", "content": content}]}
    path.write_bytes(line(GOOD) + line(big))
    size = len(line(big)) - 1
    with pytest.raises(
        ImportFormatError, match=f"line 2 is {size:,} bytes, over the {MAX_LINE_BYTES:,}-byte"
    ):
        import_file(store, path)
    assert store.counts()["messages"] == 0


# Issue 16, item 1: inputs that gave tracebacks or lost records.
@pytest.mark.parametrize(
    "payload, says",
    [
        (b"[" * 1000 + b"]" * 1000, "nested too deeply"),
        (b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
        (line(GOOD).replace(b"How do I", b"How \\ud800do I"), "lone surrogate"),
        (line(GOOD).replace(b"Sign off", b"Sign \\udfff off"), "lone surrogate"),
        (line(GOOD).replace(b"happy", b"x").replace(b"Happy", b"\\ud800"), "lone surrogate"),
        (line({**GOOD, "id": "x\ud800y"}), "lone surrogate"),
        (line(GOOD).replace(b"8 minutes.", b"8 \x01minutes."), "Invalid control character at column"),
    ],
)
def test_adversarial_input_is_one_sentence(store, tmp_path, payload, says):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(payload)
    with pytest.raises(ImportFormatError, match=says) as info:
        import_file(store, path)
    assert "\n" not in str(info.value) and "nothing was imported" in str(info.value)
    assert store.counts()["messages"] == 0


@pytest.mark.parametrize("order", ["k first", "k:1 first"])
def test_ids_never_clash_with_context_messages(store, tmp_path, order):
    turns = ["user", "assistant", "user", "assistant", "user", "assistant"]
    k = {"id": "k", "messages": [{"role": r, "content": f"m{i}"} for i, r in enumerate(turns)]}
    k1 = {**GOOD, "id": "k:1"}
    path = tmp_path / "in.jsonl"
    path.write_bytes(line(k) + line(k1) if order == "k first" else line(k1) + line(k))
    result = import_file(store, path)
    assert (result.added, result.skipped) == (2, 0)
    assert sorted(r["id"] for r in export_records(store)) == ["k", "k:1"]


def test_an_id_held_by_a_question_is_refused_not_skipped(store, tmp_path):
    conversation = store.new_conversation("chat")
    question = store.get_message(store.add_message(conversation, "user", "hi"))
    path = tmp_path / "in.jsonl"
    path.write_bytes(line({**GOOD, "id": question.uid}))
    with pytest.raises(ImportFormatError, match="already names a question"):
        import_file(store, path)
    assert store.counts()["messages"] == 1


def test_utf8_bom_is_accepted(store, tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + line(GOOD))
    assert import_file(store, path).added == 1


# Issue 16, item 2: export writes what import reads back, one line per record, and leaves no temp file.
def test_export_of_a_record_near_the_limit_imports_again(store, tmp_path):
    answer = "y" * (MAX_LINE_BYTES - 400)
    record = {
        "id": "big",
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": answer}],
    }
    source = tmp_path / "in.jsonl"
    source.write_bytes(json.dumps(record, separators=(",", ":")).encode())
    import_file(store, source)
    out = tmp_path / "out.jsonl"
    export_file(store, out)
    assert len(out.read_bytes()) <= MAX_LINE_BYTES
    with Store(tmp_path / "other.db") as other:
        assert import_file(other, out).added == 1


def test_export_escapes_unicode_line_separators(store, tmp_path):
    text = "one\u2028two\u2029three\x85four"
    record = {**GOOD, "messages": [{"role": "user", "content": text}, {"role": "assistant", "content": text}]}
    source = tmp_path / "in.jsonl"
    source.write_bytes(line(record))
    import_file(store, source)
    out = tmp_path / "out.jsonl"
    export_file(store, out)
    data = out.read_text(encoding="utf-8")
    assert len(data.splitlines()) == 1
    assert json.loads(data)["messages"][0]["content"] == text


@pytest.mark.parametrize("target", ["folder", "missing/out.jsonl", "file/out.jsonl"])
def test_export_to_a_bad_path_is_one_sentence(store, tmp_path, target):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="Cannot write .*Nothing was written there"):
        export_file(store, tmp_path / target)
    assert not list(tmp_path.rglob("*.uno-partial"))


def test_a_killed_exports_temp_file_goes_with_the_next_export(store, tmp_path):
    out = tmp_path / "out.jsonl"
    finished = subprocess.Popen(["true"])
    finished.wait()
    dead = finished.pid  # the pid of an export killed before it could clean up
    leftover = tmp_path / f".out.jsonl.{dead}.uno-partial"
    leftover.write_text("partial")
    export_file(store, out)
    assert not leftover.exists() and out.exists()


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
