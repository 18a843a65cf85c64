"""The OpenAI wire format, pure: request JSON -> ChatRequest, answers -> response JSON, errors -> bodies.

Nothing here touches the store, the model or the network, so every rule is testable in a table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from uno_local.errors import RequestError
from uno_local.runtime import GenerationSettings

ROLES = ("system", "user", "assistant")
MAX_STOPS = 4
MAX_TOKENS_LIMIT = 32768


@dataclass
class ChatRequest:
    """A validated /v1/chat/completions body."""

    model: str
    messages: list[dict]
    settings: GenerationSettings
    stream: bool = False
    stop: list[str] = field(default_factory=list)
    include_usage: bool = False

    @property
    def history(self) -> list[dict]:
        """Everything before the final user message: what a stored conversation must start with."""
        return self.messages[:-1]

    @property
    def query(self) -> str:
        return self.messages[-1]["content"]


def error_body(
    message: str, kind: str = "invalid_request_error", code: str | None = None, param=None
) -> dict:
    """The OpenAI error shape: {"error": {"message", "type", "param", "code"}}."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _content(value, index: int) -> str:
    """A message's text: a string, or OpenAI content parts of type "text" joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) for p in value):
        if any(p.get("type") != "text" or not isinstance(p.get("text"), str) for p in value):
            raise RequestError(
                f"messages[{index}].content has a part that is not text; this model reads text only.",
                param=f"messages[{index}].content",
            )
        return "".join(p["text"] for p in value)
    raise RequestError(
        f"messages[{index}].content must be a string or a list of text parts.", param=f"messages[{index}]"
    )


def _number(body: dict, name: str, low: float, high: float, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise RequestError(f"{name} must be a number from {low:g} to {high:g}, not {value!r}.", param=name)
    return float(value)


def _integer(body: dict, name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(f"{name} must be a whole number from {low} to {high}, not {value!r}.", param=name)
    return value


def parse_chat_request(body: object, models: list[str], defaults: GenerationSettings) -> ChatRequest:
    """Validate a chat completions body; raises RequestError naming the first bad field."""
    if not isinstance(body, dict):
        raise RequestError("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("model is required; GET /v1/models lists the one this server has.", param="model")
    if model not in models:
        raise RequestError(
            f"The model {model!r} does not exist here; use {models[0]!r} (GET /v1/models).",
            kind="invalid_request_error",
            code="model_not_found",
            param="model",
            status=404,
        )
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise RequestError("messages must be a non-empty list of {role, content}.", param="messages")
    messages = []
    for index, message in enumerate(raw):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise RequestError(
                f"messages[{index}] needs a role of system, user or assistant.", param=f"messages[{index}]"
            )
        messages.append({"role": message["role"], "content": _content(message.get("content"), index)})
    if messages[-1]["role"] != "user":
        raise RequestError("The last message must be the user's, the one to answer.", param="messages")
    if body.get("n") not in (None, 1):
        raise RequestError("n must be 1: this server writes one answer per request.", param="n")
    max_tokens = _integer(body, "max_completion_tokens", 1, MAX_TOKENS_LIMIT)
    max_tokens = max_tokens or _integer(body, "max_tokens", 1, MAX_TOKENS_LIMIT)
    seed = _integer(body, "seed", -(2**31), 2**32 - 1)
    settings = GenerationSettings(
        temperature=_number(body, "temperature", 0, 2, defaults.temperature),
        top_p=_number(body, "top_p", 0, 1, defaults.top_p),
        max_tokens=max_tokens or defaults.max_tokens,
        seed=defaults.seed if seed is None else seed,
        dry_multiplier=_number(body, "dry_multiplier", 0, 5, defaults.dry_multiplier),  # llama-server's name
    )
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop or []
    if (
        not isinstance(stops, list)
        or len(stops) > MAX_STOPS
        or not all(isinstance(s, str) and s for s in stops)
    ):
        raise RequestError(f"stop must be a string or a list of at most {MAX_STOPS} strings.", param="stop")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError("stream must be true or false.", param="stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise RequestError("stream_options must be an object.", param="stream_options")
    return ChatRequest(model, messages, settings, stream, stops, bool(options.get("include_usage")))


@dataclass
class StopScanner:
    """Cuts a stream at the first stop string, holding back just enough text to see one across deltas."""

    stops: list[str]
    _pending: str = ""
    hit: bool = False

    def feed(self, delta: str) -> str:
        """Text that is safe to send now; after a hit, nothing more."""
        if self.hit:
            return ""
        text = self._pending + delta
        cuts = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if cuts:
            self.hit = True
            self._pending = ""
            return text[: min(cuts)]
        keep = max((len(s) - 1 for s in self.stops), default=0)
        # hold back a tail that could be the start of a stop string
        safe = len(text)
        for size in range(min(keep, len(text)), 0, -1):
            if any(s.startswith(text[-size:]) for s in self.stops):
                safe = len(text) - size
                break
        self._pending = text[safe:]
        return text[:safe]

    def flush(self) -> str:
        rest, self._pending = self._pending, ""
        return "" if self.hit else rest


def uno_fields(plan, message_id: int, conversation_id: int) -> dict:
    """Where the answer came from: the extra `uno` field of every response."""
    name, _, version = (plan.adapter or "").partition("@v")
    return {
        "route": plan.route,
        "cluster": plan.cluster,
        "adapter": name or None,
        "adapter_version": int(version) if version.isdigit() else None,
        "message_id": message_id,
        "conversation_id": conversation_id,
        "reason": plan.reason,
    }


def uno_headers(fields: dict) -> dict[str, str]:
    """The same facts as response headers (ASCII only; the reason stays in the body)."""
    headers = {
        "X-Uno-Route": fields["route"],
        "X-Uno-Message-Id": str(fields["message_id"]),
        "X-Uno-Conversation": str(fields["conversation_id"]),
    }
    if fields["cluster"] is not None:
        headers["X-Uno-Cluster"] = str(fields["cluster"])
    if fields["adapter"]:
        headers["X-Uno-Adapter"] = f"{fields['adapter']}@v{fields['adapter_version']}"
    return headers


def completion_id(message_id: int) -> str:
    return f"chatcmpl-uno-{message_id}"


def parse_message_ref(value: object) -> int:
    """A message id for feedback: the number, or the completion id this server returned."""
    if isinstance(value, str) and value.startswith("chatcmpl-uno-"):
        value = value.removeprefix("chatcmpl-uno-")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestError(
            "message_id must be the id from a response's uno.message_id (or its completion id).",
            param="message_id",
        )
    return value


def completion_body(
    model: str, text: str, finish: str, fields: dict, usage: dict | None, created: int | None = None
) -> dict:
    return {
        "id": completion_id(fields["message_id"]),
        "object": "chat.completion",
        "created": created or int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
                "logprobs": None,
            }
        ],
        "usage": usage,
        "uno": fields,
    }


def chunk_body(model: str, fields: dict, created: int, delta: dict, finish: str | None = None) -> dict:
    return {
        "id": completion_id(fields["message_id"]),
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        "uno": fields,
    }


def usage_body(stats) -> dict | None:
    if stats is None:
        return None
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "total_tokens": stats.prompt_tokens + stats.completion_tokens,
    }


def parse_feedback(body: object) -> dict:
    """A /v1/feedback body -> {message_id, rating?, comment?, correction?} (absent keys stay unchanged)."""
    if not isinstance(body, dict):
        raise RequestError("The request body must be a JSON object.")
    out: dict = {"message_id": parse_message_ref(body.get("message_id"))}
    if "rating" in body:
        rating = {"up": 1, "down": -1, "+1": 1, "-1": -1}.get(body["rating"], body["rating"])
        if isinstance(rating, bool) or rating not in (1, -1, 0, None):
            raise RequestError("rating must be 1 (up), -1 (down), or 0/null to clear it.", param="rating")
        out["rating"] = rating or None
    for name in ("comment", "correction"):
        if name in body:
            if body[name] is not None and not isinstance(body[name], str):
                raise RequestError(f"{name} must be a string (or null to clear it).", param=name)
            out[name] = body[name]
    if len(out) == 1:
        raise RequestError("Give at least one of rating, comment or correction.")
    return out
