"""`uno serve` end to end over real HTTP: the openai client, the store rows, feedback, the bad requests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import openai
import pytest

pytestmark = pytest.mark.slow  # the real model behind a real server (about 2 minutes on 2 busy cores)

GREEDY = {"temperature": 0, "seed": 0}
# A streamed request whose answer runs long enough to be cut off after its first few chunks.
LONG_STORY = {
    "model": "uno",
    "messages": [{"role": "user", "content": "Write a long story about a dragon and a knight."}],
    "stream": True,
    "max_tokens": 400,
    "temperature": 0,
}


def ask(served, text: str, **kwargs):
    raw = served.client().chat.completions.with_raw_response.create(
        model="uno", messages=[{"role": "user", "content": text}], **{**GREEDY, "max_tokens": 24, **kwargs}
    )
    return raw, raw.parse()


def test_models_and_health(served):
    assert [m.id for m in served.client().models.list()] == ["uno"]
    assert httpx.get(f"{served.base}/health").json()["status"] == "ok"


def test_non_streaming_answer_is_logged_with_its_route(served):
    raw, completion = ask(served, "What is the capital of France?")
    text = completion.choices[0].message.content
    uno = completion.model_extra["uno"]
    assert text.strip()
    assert uno["route"] == "base" and uno["adapter"] is None
    assert raw.headers["x-uno-route"] == "base"
    assert raw.headers["x-uno-message-id"] == str(uno["message_id"])
    assert completion.usage.completion_tokens > 0
    stored = served.app.store.get_message(uno["message_id"])
    assert (stored.role, stored.content, stored.route, stored.source) == ("assistant", text, "base", "serve")
    assert stored.complete and stored.settings["temperature"] == 0 and stored.settings["max_tokens"] == 24
    question = served.app.store.messages(stored.conversation_id)[0]
    assert (question.role, question.content) == ("user", "What is the capital of France?")


def test_streaming_matches_the_stored_answer(served):
    stream = served.client().chat.completions.create(
        model="uno",
        messages=[{"role": "user", "content": "Name three colours."}],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=24,
        **GREEDY,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    message_id = chunks[0].model_extra["uno"]["message_id"]
    assert text.strip() and finish in (["stop"], ["length"])
    assert chunks[-1].usage.completion_tokens > 0
    stored = served.app.store.get_message(message_id)
    assert stored.content == text and stored.complete and stored.route == "base"


def test_follow_up_continues_the_conversation_and_stop_cuts(served):
    _, first = ask(served, "Tell me about the moon.", max_tokens=24)
    answer = first.choices[0].message.content
    conversation = first.model_extra["uno"]["conversation_id"]
    history = [
        {"role": "user", "content": "Tell me about the moon."},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "Shorter, please."},
    ]
    full = served.client().chat.completions.create(model="uno", messages=history, max_tokens=24, **GREEDY)
    assert full.model_extra["uno"]["conversation_id"] == conversation
    rows = served.app.store.messages(conversation)
    assert [m.role for m in rows] == ["user", "assistant", "user", "assistant"]
    # the same greedy answer again, cut at a word from its middle
    text = full.choices[0].message.content
    word = text.split()[len(text.split()) // 2]
    cut = served.client().chat.completions.create(
        model="uno", messages=history, max_tokens=24, stop=[word], **GREEDY
    )
    assert cut.choices[0].message.content == text[: text.index(word)]
    assert cut.choices[0].finish_reason == "stop"
    stored = served.app.store.get_message(cut.model_extra["uno"]["message_id"])
    assert stored.content == text[: text.index(word)] and stored.complete


def test_explicit_conversation_header(served):
    conversation = served.app.store.new_conversation("from a header")
    client = served.client(default_headers={"X-Uno-Conversation": str(conversation)})
    reply = client.chat.completions.create(
        model="uno", messages=[{"role": "user", "content": "Hello?"}], max_tokens=8, **GREEDY
    )
    assert reply.model_extra["uno"]["conversation_id"] == conversation
    assert [m.content for m in served.app.store.messages(conversation)][0] == "Hello?"
    bad = served.client(default_headers={"X-Uno-Conversation": "999999"})
    with pytest.raises(openai.NotFoundError):
        bad.chat.completions.create(model="uno", messages=[{"role": "user", "content": "x"}], max_tokens=4)


def test_feedback_over_http(served):
    _, completion = ask(served, "Say hello.", max_tokens=8)
    message_id = completion.model_extra["uno"]["message_id"]
    reply = httpx.post(
        f"{served.v1}/feedback",
        json={"message_id": completion.id, "rating": "down", "comment": "Too stiff.", "correction": "Hi!"},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "object": "feedback",
        "message_id": message_id,
        "rating": -1,
        "comment": "Too stiff.",
        "correction": "Hi!",
    }
    feedback = served.app.store.get_message(message_id).feedback
    assert (feedback.rating, feedback.comment, feedback.correction) == (-1, "Too stiff.", "Hi!")
    # the UNO loop sees it as a log with feedback
    assert message_id in [log.message_id for log in served.app.store.logs(with_feedback_only=True)]
    missing = httpx.post(f"{served.v1}/feedback", json={"message_id": 999999, "rating": 1})
    assert missing.status_code == 404 and missing.json()["error"]["message"].startswith("Message 999999")


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in error["message"]
    return error["message"]


def test_bad_requests_get_openai_errors_without_tracebacks(served, capfd):
    url = f"{served.v1}/chat/completions"
    assert "not valid JSON" in _error(
        httpx.post(url, content=b"{nope", headers={"content-type": "application/json"}), 400
    )
    with pytest.raises(openai.NotFoundError) as info:
        served.client().chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["code"] == "model_not_found"
    big = {"model": "uno", "messages": [{"role": "user", "content": "x" * 30_000}]}
    assert "larger than" in _error(httpx.post(url, json=big), 413)
    chunked = httpx.post(url, content=iter([b"{" + b" " * 15_000, b" " * 15_000 + b"}"]))
    assert "larger than" in _error(chunked, 413)
    with pytest.raises(openai.BadRequestError):
        served.client().chat.completions.create(model="uno", messages=[{"role": "user", "content": "x"}], n=3)
    assert "Not Found" in _error(httpx.get(f"{served.v1}/engines"), 404)
    assert "Traceback" not in capfd.readouterr().err


def test_api_key_required_when_set(served_with_key, capfd):
    no_key = httpx.get(f"{served_with_key.v1}/models")
    assert "API key" in _error(no_key, 401)
    import openai as oa

    with pytest.raises(oa.AuthenticationError):
        oa.OpenAI(base_url=served_with_key.v1, api_key="wrong", max_retries=0).models.list()
    assert [m.id for m in served_with_key.client().models.list()] == ["uno"]
    assert "Traceback" not in capfd.readouterr().err


def test_client_disconnecting_mid_stream_keeps_the_partial_answer(served, capfd):
    with httpx.stream("POST", f"{served.v1}/chat/completions", json=LONG_STORY, timeout=120) as response:
        message_id = int(response.headers["x-uno-message-id"])
        lines = response.iter_lines()
        seen = [next(lines) for _ in range(6)]
    assert any('"content"' in line for line in seen)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        stored = served.app.store.get_message(message_id)
        if stored.completion_tokens is not None:  # the turn has finished its bookkeeping
            break
        time.sleep(0.1)
    assert not stored.complete and stored.content.strip()
    assert stored.completion_tokens < 400
    # the model is free again: the next request is answered
    assert ask(served, "Hi", max_tokens=4)[1].choices[0].message.content is not None
    assert "Traceback" not in capfd.readouterr().err


def test_llm_cli_through_extra_openai_models(served, tmp_path):
    user_path = tmp_path / "llm-user"
    user_path.mkdir()
    (user_path / "extra-openai-models.yaml").write_text(
        f"- model_id: uno\n  model_name: uno\n  api_base: {served.v1}\n"
    )
    env = {**os.environ, "LLM_USER_PATH": str(user_path), "OPENAI_API_KEY": "unused"}
    llm = Path(sys.executable).with_name("llm")
    result = subprocess.run(
        [str(llm), "-m", "uno", "-o", "temperature", "0", "-o", "max_tokens", "12", "Greet a llama."],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    store = served.app.store
    (conversation,) = [c for c in store.list_conversations() if c.title == "Greet a llama."]
    question, answer = store.messages(conversation.id)
    assert (question.content, answer.source, answer.route) == ("Greet a llama.", "serve", "base")
    assert answer.content.strip() == result.stdout.strip()


def test_ctrl_c_stops_cleanly_and_keeps_the_partial_answer(tmp_path, port, wait_up):
    from uno_local.store import Store

    home = tmp_path / "home"
    command = [
        sys.executable,
        "-m",
        "uno_local",
        "--threads",
        "2",
        "--ctx",
        "2048",
        "serve",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(
        command, env={**os.environ, "UNO_HOME": str(home)}, stderr=subprocess.PIPE, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_up(base)
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=LONG_STORY, timeout=60) as response:
            message_id = int(response.headers["x-uno-message-id"])
            lines = response.iter_lines()
            for _ in range(6):
                next(lines)
            proc.send_signal(signal.SIGINT)
            rest = [line for line in lines if line]
        assert rest[-1] == "data: [DONE]"
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read()
    assert "Traceback" not in stderr and "stopped" in stderr
    with Store(home / "uno.db") as store:
        stored = store.get_message(message_id)
    assert not stored.complete and stored.content.strip() and stored.completion_tokens < 400


DEPLOY = """
import json, sys
from pathlib import Path
import numpy as np
from backends.gguf_export import read_base_meta, write_lora_gguf
from uno_local.paths import embedded_chat_model
from uno_local.registry import Registry
from uno_local.store import Store
from uno_local.store.learning import ClusterRow, replace_clusters

home, centroid = Path(sys.argv[1]), json.loads(sys.argv[2])
meta = read_base_meta(embedded_chat_model())
rng = np.random.default_rng(0)
layers = {}
for stem, (out_dim, in_dim) in list(meta.shapes.items())[:2]:
    a = rng.standard_normal((2, in_dim)).astype(np.float32) * 0.01
    b = rng.standard_normal((out_dim, 2)).astype(np.float32) * 0.01
    layers[(int(stem.split(".")[1]), stem.split(".")[2])] = (a, b)
gguf = write_lora_gguf(layers, 4.0, meta, home / "made.gguf")
with Store(home / "uno.db") as store:
    Registry(store, home / "adapters").deploy(
        name="c0-expert", kind="expert", gguf_file=gguf, peft_dir=None,
        base_model=embedded_chat_model().name, sources=[], metrics={}, config={},
    )
    replace_clusters(store, [ClusterRow(0, centroid, [], ["Be brief."], route="expert", expert="c0-expert")])
"""


def test_an_adapter_deployed_by_another_process_serves_the_next_request(served):
    """What a retrain's deploy step writes (registry row + cluster table), from another process,
    is picked up by the running server on its next request: routed to the new Expert adapter."""
    query = "Which river runs through Paris?"
    _, before = ask(served, query, max_tokens=8)
    assert before.model_extra["uno"]["route"] == "base"
    centroid = served.app.embedder.encode([query])[0].tolist()
    script = subprocess.run(
        [sys.executable, "-c", DEPLOY, str(served.app.home), json.dumps(centroid)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert script.returncode == 0, script.stderr
    raw, after = ask(served, query, max_tokens=8)
    uno = after.model_extra["uno"]
    assert (uno["route"], uno["adapter"], uno["adapter_version"], uno["cluster"]) == (
        "expert",
        "c0-expert",
        1,
        "0",
    )
    assert raw.headers["x-uno-adapter"] == "c0-expert@v1" and raw.headers["x-uno-cluster"] == "0"
    stored = served.app.store.get_message(uno["message_id"])
    assert (stored.route, stored.adapter) == ("expert", "c0-expert@v1")
    # a question far from the cluster still goes to the base model
    _, far = ask(served, "Write a limerick about databases.", max_tokens=8)
    assert far.model_extra["uno"]["route"] == "base"


def test_concurrent_requests_queue_on_the_one_model(served):
    from concurrent.futures import ThreadPoolExecutor

    questions = ["Name a fruit.", "Name a planet.", "Name a colour."]
    with ThreadPoolExecutor(len(questions)) as pool:
        replies = list(pool.map(lambda q: ask(served, q, max_tokens=8)[1], questions))
    ids = [r.model_extra["uno"]["message_id"] for r in replies]
    assert len(set(ids)) == 3
    for question, reply in zip(questions, replies, strict=True):
        stored = served.app.store.get_message(reply.model_extra["uno"]["message_id"])
        assert stored.complete and stored.content == reply.choices[0].message.content
        assert served.app.store.messages(stored.conversation_id)[0].content == question
