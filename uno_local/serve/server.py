"""The HTTP shell of `uno serve`: a Starlette app over the app context, run by uvicorn.

Endpoints: GET /health, GET /v1/models, POST /v1/chat/completions (JSON or SSE), POST /v1/feedback.
Requests queue on the one loaded model (an asyncio lock, first come first served); the blocking work
(routing, generation, SQLite) runs in worker threads. An answer stops early when the client goes
away or the server is asked to stop; the partial text is kept, marked incomplete.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from uno_local.errors import ConfigError, NotFoundError, RequestError, UnoError
from uno_local.serve import protocol
from uno_local.serve.conversations import start_turn

log = logging.getLogger("uno.serve")
MODEL_ID = "uno"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class ServeOptions:
    """How `uno serve` listens: address, optional API key, body size limit."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_body_bytes: int = 1_000_000

    def check(self) -> None:
        """Refuse to listen beyond this machine without an API key."""
        if self.host not in LOOPBACK and not self.api_key:
            raise ConfigError(
                f"Serving on {self.host} makes the chat reachable from other machines; set an API key "
                "with --api-key or UNO_API_KEY, or keep the default --host 127.0.0.1."
            )


@dataclass
class ServeState:
    app: object  # uno_local.app.App
    options: ServeOptions
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)


def _error(exc: RequestError) -> JSONResponse:
    return JSONResponse(protocol.error_body(str(exc), exc.kind, exc.code, exc.param), status_code=exc.status)


def _guarded(handler):
    """Every endpoint answers errors in the OpenAI shape: a sentence, never a traceback."""

    async def endpoint(request: Request) -> Response:
        state: ServeState = request.app.state.uno
        try:
            _authorise(request, state.options)
            return await handler(request, state)
        except RequestError as exc:
            return _error(exc)
        except NotFoundError as exc:
            return _error(RequestError(str(exc), status=404, code="not_found"))
        except UnoError as exc:
            return _error(RequestError(str(exc), status=500, kind="server_error"))
        except Exception as exc:  # the one place an unexpected failure becomes a sentence
            log.error("internal error on %s: %s: %s", request.url.path, type(exc).__name__, exc)
            return _error(
                RequestError(
                    f"Internal error ({type(exc).__name__}); see the server log.",
                    status=500,
                    kind="server_error",
                )
            )

    return endpoint


def _authorise(request: Request, options: ServeOptions) -> None:
    if not options.api_key or request.url.path == "/health":
        return
    given = request.headers.get("authorization", "")
    token = given.removeprefix("Bearer ").strip() if given.startswith("Bearer ") else ""
    if not hmac.compare_digest(token.encode(), options.api_key.encode()):
        raise RequestError(
            "This server needs an API key: send it as 'Authorization: Bearer KEY'.",
            status=401,
            code="invalid_api_key",
        )


async def _json_body(request: Request, limit: int) -> object:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise _too_large(limit)
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"The request body is not valid JSON ({exc}).") from exc


def _too_large(limit: int) -> RequestError:
    return RequestError(
        f"The request body is larger than this server's limit of {limit} bytes.",
        status=413,
        code="body_too_large",
    )


async def health(request: Request, state: ServeState) -> Response:
    return JSONResponse({"status": "ok", "model": MODEL_ID, "busy": state.lock.locked()})


async def models(request: Request, state: ServeState) -> Response:
    card = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "uno-local"}
    card["uno"] = {"base_model": str(state.app.model_path.name)}
    return JSONResponse({"object": "list", "data": [card]})


async def feedback(request: Request, state: ServeState) -> Response:
    fields = protocol.parse_feedback(await _json_body(request, state.options.max_body_bytes))
    message_id = fields.pop("message_id")
    store = state.app.store
    saved = await anyio.to_thread.run_sync(lambda: store.set_feedback(message_id, **fields))
    return JSONResponse(
        {
            "object": "feedback",
            "message_id": message_id,
            "rating": saved.rating if saved else None,
            "comment": saved.comment if saved else None,
            "correction": saved.correction if saved else None,
        }
    )


async def chat_completions(request: Request, state: ServeState) -> Response:
    body = await _json_body(request, state.options.max_body_bytes)
    app = state.app
    chat_request = protocol.parse_chat_request(body, [MODEL_ID], app.settings())
    header = request.headers.get("x-uno-conversation")
    await state.lock.acquire()
    try:
        conversation_id, turn = await anyio.to_thread.run_sync(
            lambda: start_turn(app.chat, chat_request.messages, chat_request.settings, header)
        )
    except BaseException:
        state.lock.release()
        raise
    fields = protocol.uno_fields(turn.plan, turn.answer_id, conversation_id)
    headers = protocol.uno_headers(fields)
    answer = _Answer(turn, protocol.StopScanner(chat_request.stop), state, request)
    if chat_request.stream:
        return _AnswerStream(answer, _sse(answer, chat_request, fields), headers)
    try:
        text = "".join([delta async for delta in answer.deltas()])
    finally:
        await answer.close()
    usage = protocol.usage_body(turn.stats)
    body = protocol.completion_body(MODEL_ID, text, answer.finish_reason, fields, usage)
    return JSONResponse(body, headers=headers)


class _Answer:
    """A turn streamed from a worker thread; stops on a stop string, a disconnect or shutdown."""

    def __init__(self, turn, scanner: protocol.StopScanner, state: ServeState, request: Request) -> None:
        self.turn, self.scanner, self.state, self.request = turn, scanner, state, request
        self._iter = iter(turn)
        self.finished = False  # the model ended the answer itself (or a stop string did)
        self._closed = False

    @property
    def finish_reason(self) -> str:
        stats = self.turn.stats
        if self.scanner.hit:
            return "stop"
        return (
            (stats.finish_reason if stats and stats.finish_reason else "stop") if self.finished else "length"
        )

    async def deltas(self) -> AsyncIterator[str]:
        while not self.state.stopping.is_set():
            if await self.request.is_disconnected():
                return
            delta = await anyio.to_thread.run_sync(next, self._iter, None)
            if delta is None:
                self.finished = True
                break
            text = self.scanner.feed(delta)
            if text:
                yield text
            if self.scanner.hit:
                self.finished = True
                return
        if self.finished:
            rest = self.scanner.flush()
            if rest:
                yield rest

    async def close(self) -> None:
        """Free the model: a cut-short answer keeps its text, marked incomplete; a stop string's is complete."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(self._finish)
            finally:
                self.state.lock.release()

    def _finish(self) -> None:
        self._iter.close()  # runs the turn's own bookkeeping (incomplete unless it ended by itself)
        if self.scanner.hit:
            text = self.turn.text
            cut = min(i for i in (text.find(s) for s in self.scanner.stops) if i >= 0)
            self.turn.store.finish_answer(self.turn.answer_id, text[:cut], complete=True)


class _AnswerStream(StreamingResponse):
    """An SSE response that frees the model however it ends, even before its first byte."""

    def __init__(self, answer: _Answer, events: AsyncIterator[str], headers: dict) -> None:
        super().__init__(
            events, media_type="text/event-stream", headers={**headers, "Cache-Control": "no-cache"}
        )
        self.answer = answer

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except (OSError, ClientDisconnect):
            log.info("client went away during message %s", self.answer.turn.answer_id)
        finally:
            await self.answer.close()


async def _sse(answer: _Answer, chat_request: protocol.ChatRequest, fields: dict) -> AsyncIterator[str]:
    created = int(time.time())

    def event(payload: dict) -> str:
        return f"data: {json.dumps(payload)}\n\n"

    try:
        yield event(protocol.chunk_body(MODEL_ID, fields, created, {"role": "assistant", "content": ""}))
        try:
            async for delta in answer.deltas():
                yield event(protocol.chunk_body(MODEL_ID, fields, created, {"content": delta}))
        except Exception as exc:  # headers are sent: the error goes in the stream, as OpenAI does
            log.error("answer %s failed: %s: %s", fields["message_id"], type(exc).__name__, exc)
            message = str(exc) if isinstance(exc, UnoError) else f"Internal error ({type(exc).__name__})."
            yield event(protocol.error_body(message, "server_error"))
            return
        final = protocol.chunk_body(MODEL_ID, fields, created, {}, answer.finish_reason)
        yield event(final)
        if chat_request.include_usage:
            usage = {**protocol.chunk_body(MODEL_ID, fields, created, {}), "choices": []}
            usage["usage"] = protocol.usage_body(answer.turn.stats)
            yield event(usage)
        yield "data: [DONE]\n\n"
    finally:
        await answer.close()


async def _not_found(request: Request, exc: HTTPException) -> Response:
    kind = "invalid_request_error"
    return JSONResponse(
        protocol.error_body(f"{request.method} {request.url.path}: {exc.detail}.", kind, None),
        status_code=exc.status_code,
    )


def build_app(app, options: ServeOptions) -> Starlette:
    """The ASGI app over an `uno_local.app.App` context."""
    routes = [
        Route("/health", _guarded(health), methods=["GET"]),
        Route("/v1/models", _guarded(models), methods=["GET"]),
        Route("/v1/chat/completions", _guarded(chat_completions), methods=["POST"]),
        Route("/v1/feedback", _guarded(feedback), methods=["POST"]),
    ]
    web = Starlette(routes=routes, exception_handlers={HTTPException: _not_found})
    web.state.uno = ServeState(app, options)
    return web


def make_server(app, options: ServeOptions):
    """A uvicorn server whose Ctrl-C first tells streaming answers to stop (they keep their text)."""
    import uvicorn

    options.check()
    web = build_app(app, options)
    config = uvicorn.Config(
        web,
        host=options.host,
        port=options.port,
        log_level="warning",
        timeout_graceful_shutdown=10,
        lifespan="off",
    )

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            web.state.uno.stopping.set()
            super().handle_exit(sig, frame)

    return Server(config)
