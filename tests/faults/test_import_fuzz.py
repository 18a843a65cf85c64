"""A seeded import fuzzer: hundreds of generated malformed and adversarial JSONL files.

Each file goes through the real `uno import` boundary (click, in-process; a sample through a real
subprocess). Every file is either imported whole or refused with one sentence, and a refused file
changes no row of any table; no file gives a traceback.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys

from click.testing import CliRunner

from tests.faults.harness import lost_rows, one_sentence_error, record, snapshot
from uno_local.cli import cli

SEED = 16
FILES = 320
SUBPROCESS_EVERY = 40  # every 40th file also through `python -m uno_local import`

FIELDS = ("user", "answer", "comment", "correction", "id", "created_at", "role", "key")
ODD_VALUES = [None, 0, 1, -1, 2, 1.5, True, False, [], {}, "", "x", 2**70, -(2**70), [1, 2], {"a": 1}]


def valid_record(rng: random.Random, n: int) -> dict:
    context = [{"role": "user", "content": f"question {n}"}]
    if rng.random() < 0.3:
        context = [{"role": "system", "content": "be brief"}, *context]
    return {
        "id": f"fz-{n}-{rng.randrange(10**6)}",
        "messages": [*context, {"role": "assistant", "content": f"answer {n} ünï \u2028 \x85"}],
        "feedback": {"rating": rng.choice([1, -1, None]), "comment": "c", "correction": None},
        "created_at": "2025-01-02T03:04:05",
    }


def place(obj: dict, field: str, value: object) -> None:
    """Put `value` in one field of a record (in place)."""
    if field == "user":
        obj["messages"][-2]["content"] = value
    elif field == "answer":
        obj["messages"][-1]["content"] = value
    elif field in ("comment", "correction"):
        obj["feedback"][field] = value
    elif field == "role":
        obj["messages"][0]["role"] = value
    elif field == "key":
        obj[value if isinstance(value, str) else "k"] = 1
    else:
        obj[field] = value


def lone_surrogate(rng, n):
    obj = valid_record(rng, n)
    marker = "@@SURROGATE@@"
    place(obj, rng.choice(FIELDS), f"x{marker}y")
    return json.dumps(obj).replace(marker, rng.choice(["\\ud800", "\\udfff", "\\udc00\\ud800"])).encode()


def deep_nesting(rng, n):
    depth = rng.choice([100, 999, 1000, 5000, 100_000])
    nest = "[" * depth + "]" * depth
    obj = valid_record(rng, n)
    where = rng.choice(["top", "messages", "content", "feedback"])
    if where == "top":
        return nest.encode()
    text = json.dumps(obj)
    key = {"messages": '"messages": ', "content": '"content": ', "feedback": '"feedback": '}[where]
    start = text.index(key) + len(key)
    end = text.index(",", start) if where == "content" else start
    return (text[:start] + nest + text[end:]).encode()


def wrong_type(rng, n):
    obj = valid_record(rng, n)
    field = rng.choice(["messages", "feedback", "rating", "id", "created_at", "content", "role", "dialog"])
    value = rng.choice(ODD_VALUES)
    if field == "rating":
        obj["feedback"]["rating"] = value
    elif field == "content":
        obj["messages"][rng.randrange(len(obj["messages"]))]["content"] = value
    elif field == "role":
        obj["messages"][-1]["role"] = value
    elif field == "dialog":
        del obj["messages"]
        obj["dialog"] = value
    else:
        obj[field] = value
    return json.dumps(obj).encode()


def missing_field(rng, n):
    obj = valid_record(rng, n)
    target = rng.choice(["messages", "answer", "user", "role", "content"])
    if target == "messages":
        del obj["messages"]
    elif target == "answer":
        obj["messages"].pop()
    elif target == "user":
        obj["messages"] = [m for m in obj["messages"] if m["role"] != "user"]
    else:
        del obj["messages"][-1][target]
    return json.dumps(obj).encode()


def byte_flips(rng, n):
    data = bytearray(json.dumps(valid_record(rng, n)).encode())
    for _ in range(rng.randint(1, 6)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def truncated(rng, n):
    data = json.dumps(valid_record(rng, n)).encode()
    return data[: rng.randrange(1, len(data))]


def bad_utf8(rng, n):
    data = json.dumps(valid_record(rng, n)).encode()
    at = rng.randrange(len(data))
    junk = rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xc0\xaf"])
    return data[:at] + junk + data[at:]


def control_chars(rng, n):
    text = json.dumps(valid_record(rng, n))
    at = text.index("question") + 2
    return (text[:at] + chr(rng.randrange(0, 32)) + text[at:]).encode()


def odd_numbers(rng, n):
    text = json.dumps(valid_record(rng, n))
    return text.replace(
        '"rating": ',
        '"rating": ' + rng.choice(["NaN", "Infinity", "-Infinity", "1e999", "1.0", "01"]) + ', "x": ',
        1,
    ).encode()


def not_an_object(rng, n):
    return rng.choice([b"[]", b'"text"', b"1", b"null", b"true", b"{}", b"[{}]", b'{"messages": []}'])


def empty_file(rng, n):
    return rng.choice([b"", b"\n\n", b"   \n\t\n", b"\xef\xbb\xbf", b"\xef\xbb\xbf\n", b"\r\n"])


def good_then_bad(rng, n):
    good = json.dumps(valid_record(rng, n)).encode()
    bad = GENERATORS_BAD[rng.randrange(len(GENERATORS_BAD))](rng, n + 1)
    return good + b"\n" + bad.replace(b"\n", b" ")


def bad_time(rng, n):
    obj = valid_record(rng, n)
    obj["created_at"] = rng.choice(["yesterday", "2025-13-40", "", "2025-01-02T25:00:00", "\u0661\u0662"])
    return json.dumps(obj).encode()


def big_line(rng, n):
    from uno_local.logs import MAX_LINE_BYTES

    obj = valid_record(rng, n)
    obj["messages"][-1]["content"] = "x" * (MAX_LINE_BYTES + 10)
    return json.dumps(obj).encode()


# Adversarial but legal: these import (once) and must not lose or mix up anything.
def id_clash(rng, n):
    """The tester's case: id "k" with several context messages, then id "k:1" (either order)."""
    first = valid_record(rng, n)
    first["id"] = f"k{n}"
    first["messages"] = [{"role": r, "content": f"m{i}"} for i, r in enumerate(["user", "assistant"] * 2)] + [
        {"role": "user", "content": "last"},
        {"role": "assistant", "content": "final"},
    ]
    second = valid_record(rng, n)
    second["id"] = f"k{n}:1"
    lines = [json.dumps(first), json.dumps(second)]
    rng.shuffle(lines)
    return "\n".join(lines).encode()


def bom_crlf_separators(rng, n):
    lines = [json.dumps(valid_record(rng, n + i), ensure_ascii=False) for i in range(3)]
    return (b"\xef\xbb\xbf" if rng.random() < 0.5 else b"") + "\r\n".join(lines).encode()


def dialog_form(rng, n):
    return json.dumps({"id": f"d{n}", "dialog": ["q", "a", rng.choice(["more", 1, None])]}).encode()


GENERATORS_BAD = [
    lone_surrogate,
    deep_nesting,
    wrong_type,
    missing_field,
    byte_flips,
    truncated,
    bad_utf8,
    control_chars,
    odd_numbers,
    not_an_object,
    empty_file,
    bad_time,
]
GENERATORS = [*GENERATORS_BAD, good_then_bad, id_clash, bom_crlf_separators, dialog_form]


def corpus(seed: int = SEED, count: int = FILES) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    files = [("big_line", big_line(rng, 0))]
    for n in range(1, count):
        generate = GENERATORS[n % len(GENERATORS)]
        files.append((generate.__name__, generate(rng, n)))
    return files


def test_import_fuzz(seeded_home, tmp_path):
    runner = CliRunner()
    db = seeded_home / "uno.db"
    failures = []
    files = corpus()
    assert len(files) >= 300
    for index, (kind, data) in enumerate(files):
        path = tmp_path / f"fuzz-{index:03d}-{kind}.jsonl"
        path.write_bytes(data)
        before = snapshot(db)
        if index % SUBPROCESS_EVERY == 0:
            run = subprocess.run(
                [sys.executable, "-m", "uno_local", "import", str(path)],
                env={**os.environ, "UNO_HOME": str(seeded_home)},
                capture_output=True,
                text=True,
                timeout=120,
            )
            code, stderr = run.returncode, run.stderr
        else:
            result = runner.invoke(cli, ["import", str(path)])
            code, stderr = result.exit_code, result.stderr
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                stderr = f"Traceback: {result.exception!r}"
        after = snapshot(db)
        lost = lost_rows(before, after)
        # Imported whole (nothing lost), or refused with one sentence and no row changed.
        ok = lost == 0 if code == 0 else code == 1 and one_sentence_error(stderr) and after == before
        record("import fuzz (files)", failed=not ok, lost=lost)
        if not ok:
            failures.append(f"{path.name}: exit {code}, {lost} rows lost, stderr {stderr[-300:]!r}")
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    assert not failures, "\n".join(failures[:20])
