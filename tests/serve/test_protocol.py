"""The OpenAI wire format of `uno serve`: request validation, stop strings, feedback bodies (pure)."""

from __future__ import annotations

import pytest

from uno_local.chat import RoutePlan
from uno_local.errors import RequestError
from uno_local.runtime import GenerationSettings
from uno_local.serve import protocol

DEFAULTS = GenerationSettings(temperature=0.2, top_p=0.9, max_tokens=512, seed=-1)
HELLO = [{"role": "user", "content": "hi"}]


def parse(**body):
    return protocol.parse_chat_request({"model": "uno", "messages": HELLO, **body}, ["uno"], DEFAULTS)


def test_defaults_and_sampling_parameters():
    assert parse().settings == DEFAULTS
    req = parse(temperature=0, top_p=0.5, max_tokens=7, seed=3, stop="\n", stream=True)
    assert req.settings == GenerationSettings(0.0, 0.5, 7, 3)
    assert (req.stop, req.stream, req.query, req.history) == (["\n"], True, "hi", [])
    assert parse(max_completion_tokens=9).settings.max_tokens == 9
    assert parse(dry_multiplier=0).settings.dry_multiplier == 0.0  # llama-server's name for it
    with pytest.raises(RequestError, match="dry_multiplier must be a number from 0 to 5"):
        parse(dry_multiplier=-1)


def test_text_parts_are_joined():
    messages = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    req = protocol.parse_chat_request({"model": "uno", "messages": messages}, ["uno"], DEFAULTS)
    assert req.messages == [{"role": "user", "content": "ab"}]


@pytest.mark.parametrize(
    "body, param, status",
    [
        ([], None, 400),
        ({"messages": HELLO}, "model", 400),
        ({"model": "gpt-4", "messages": HELLO}, "model", 404),
        ({"model": "uno"}, "messages", 400),
        ({"model": "uno", "messages": [{"role": "tool", "content": "x"}]}, "messages[0]", 400),
        ({"model": "uno", "messages": [{"role": "assistant", "content": "x"}]}, "messages", 400),
        ({"model": "uno", "messages": [{"role": "user", "content": 5}]}, "messages[0]", 400),
        (
            {"model": "uno", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content",
            400,
        ),
        ({"model": "uno", "messages": HELLO, "temperature": 3}, "temperature", 400),
        ({"model": "uno", "messages": HELLO, "top_p": "1"}, "top_p", 400),
        ({"model": "uno", "messages": HELLO, "max_tokens": 0}, "max_tokens", 400),
        ({"model": "uno", "messages": HELLO, "seed": 1.5}, "seed", 400),
        ({"model": "uno", "messages": HELLO, "stop": ["a", "b", "c", "d", "e"]}, "stop", 400),
        ({"model": "uno", "messages": HELLO, "stop": [""]}, "stop", 400),
        ({"model": "uno", "messages": HELLO, "n": 2}, "n", 400),
        ({"model": "uno", "messages": HELLO, "stream": "yes"}, "stream", 400),
    ],
)
def test_bad_requests_name_the_field(body, param, status):
    with pytest.raises(RequestError) as info:
        protocol.parse_chat_request(body, ["uno"], DEFAULTS)
    assert (info.value.param, info.value.status) == (param, status)
    assert str(info.value).endswith(".") and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "stops, deltas, sent",
    [
        (["END"], ["abc", "E", "N", "D", "zzz"], "abc"),
        (["END"], ["abE", "Nx", "y"], "abENxy"),
        (["\n\n", "##"], ["one\n", "two#", "#three"], "one\ntwo"),
        ([], ["a", "b"], "ab"),
        (["xy"], ["x"], "x"),
    ],
)
def test_stop_scanner_cuts_across_deltas(stops, deltas, sent):
    scanner = protocol.StopScanner(stops)
    out = "".join(scanner.feed(d) for d in deltas) + scanner.flush()
    assert out == sent
    assert scanner.hit == any(s in "".join(deltas) for s in stops)


def test_uno_fields_and_headers():
    plan = RoutePlan("expert", "c3-expert@v2", "3", "near cluster 3")
    fields = protocol.uno_fields(plan, 41, 7)
    assert fields == {
        "route": "expert",
        "cluster": "3",
        "adapter": "c3-expert",
        "adapter_version": 2,
        "message_id": 41,
        "conversation_id": 7,
        "reason": "near cluster 3",
    }
    assert protocol.uno_headers(fields) == {
        "X-Uno-Route": "expert",
        "X-Uno-Message-Id": "41",
        "X-Uno-Conversation": "7",
        "X-Uno-Cluster": "3",
        "X-Uno-Adapter": "c3-expert@v2",
    }
    base = protocol.uno_fields(RoutePlan(), 1, 1)
    assert (base["adapter"], base["adapter_version"]) == (None, None)
    assert "X-Uno-Adapter" not in protocol.uno_headers(base)


@pytest.mark.parametrize(
    "body, parsed",
    [
        ({"message_id": 4, "rating": "up"}, {"message_id": 4, "rating": 1}),
        ({"message_id": "chatcmpl-uno-4", "rating": -1}, {"message_id": 4, "rating": -1}),
        (
            {"message_id": "4", "rating": 0, "comment": "meh"},
            {"message_id": 4, "rating": None, "comment": "meh"},
        ),
        ({"message_id": 4, "correction": "Better."}, {"message_id": 4, "correction": "Better."}),
    ],
)
def test_feedback_bodies(body, parsed):
    assert protocol.parse_feedback(body) == parsed


@pytest.mark.parametrize(
    "body",
    [
        {"rating": 1},
        {"message_id": True, "rating": 1},
        {"message_id": "chatcmpl-x", "rating": 1},
        {"message_id": 4},
        {"message_id": 4, "rating": 5},
        {"message_id": 4, "comment": 3},
        ["message_id", 4],
    ],
)
def test_bad_feedback_is_refused(body):
    with pytest.raises(RequestError):
        protocol.parse_feedback(body)


def test_error_body_has_the_openai_shape():
    assert protocol.error_body("No.", code="x", param="p") == {
        "error": {"message": "No.", "type": "invalid_request_error", "param": "p", "code": "x"}
    }
