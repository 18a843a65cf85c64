"""llama.cpp chat runtime: one model loaded per process, streamed chat, LoRA adapters per request.

Adapters are loaded once each through llama.cpp's low-level API and selected per request
(`llama_set_adapters_lora`); after a switch the reused KV prefix is reset so an answer never
mixes two adapters' caches. The base model is never reloaded.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

from uno_local.errors import AdapterError, ModelError
from uno_local.runtime import ChatStats, GenerationSettings, StreamEvent

GGUF_MAGIC = b"GGUF"
# The chat format for a GGUF without a chat template, per architecture (llama-cpp-python's formats).
FALLBACK_FORMATS = {"gemma": "gemma", "gemma2": "gemma", "gemma3": "gemma"}
DEFAULT_FALLBACK = "chatml"
NO_SYSTEM_ROLE = ("gemma", "gemma2", "gemma3")  # Gemma's templates have no system turn


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _drop_log(level, text, user_data):
    """llama.cpp's own log lines never reach the user's terminal: its errors surface as exceptions."""


def silence_llama_logs() -> None:
    import llama_cpp

    llama_cpp.llama_log_set(_drop_log, ctypes.c_void_p(0))


def fold_system(messages: list[dict]) -> list[dict]:
    """For models without a system role: the system text opens the first user turn instead."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [m for m in messages if m["role"] != "system"]
    if not system:
        return rest
    if rest and rest[0]["role"] == "user":
        return [{**rest[0], "content": f"{system}\n\n{rest[0]['content']}"}, *rest[1:]]
    return [{"role": "user", "content": system}, *rest]


def check_model_file(path: Path) -> Path:
    """Raise ModelError with one sentence unless `path` is a readable GGUF file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelError(f"Model file not found: {path}; pass an existing GGUF file with --model.")
    if not path.is_file():
        raise ModelError(f"Model path is not a file: {path}; pass a GGUF file with --model.")
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise ModelError(
            f"Cannot read the model file {path} ({exc.strerror}); check its permissions."
        ) from exc
    if magic != GGUF_MAGIC:
        raise ModelError(
            f"{path} is not a GGUF model file; convert it to GGUF or choose another with --model."
        )
    return path


class LlamaRuntime:
    """The chat model in llama.cpp. Thread-safe: one generation at a time."""

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = 4096,
        n_threads: int = 0,
        n_batch: int = 512,
        system_prompt: str = "",
        chat_format: str = "",
    ) -> None:
        import llama_cpp

        silence_llama_logs()
        self._llama_cpp = llama_cpp
        self.model_path = check_model_file(model_path)
        self.model_name = self.model_path.name
        self.system_prompt = system_prompt
        threads = n_threads or max(1, (os.cpu_count() or 2))
        self._threads = threads
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(self.model_path),
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                n_batch=n_batch,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(
                f"llama.cpp could not load {self.model_path.name} ({exc}); the file may be corrupt or unsupported."
            ) from exc
        self.arch = self.llm.metadata.get("general.architecture", "")
        self.template_note = ""  # one sentence when the GGUF has no chat template of its own
        if not self.llm.metadata.get("tokenizer.chat_template"):
            fmt = chat_format or FALLBACK_FORMATS.get(self.arch, DEFAULT_FALLBACK)
            self.llm.chat_format = fmt
            self.template_note = (
                f"{self.model_name} has no chat template; using the {fmt} template "
                "(set chat_format in [model] of uno.toml to choose another)."
            )
        self._lock = threading.Lock()
        self._adapters: dict[str, object] = {}
        self._active: str | None = None

    def set_threads(self, n: int | None) -> None:
        """Use `n` CPU threads from the next answer on (None: the configured number). llama.cpp's
        threads spin while they wait, so sharing cores with a training job needs fewer of them."""
        n = n or self._threads
        with self._lock:
            self.llm._ctx.set_n_threads(n, n)

    # adapters
    def load_adapter(self, name: str, path: Path) -> None:
        """Load a GGUF LoRA adapter once; it can then be picked per request by name."""
        path = Path(path)
        if not path.is_file():
            raise AdapterError(f"Adapter file not found: {path}; `uno adapters` lists what is deployed.")
        with self._lock:
            if name in self._adapters:
                return
            handle = self._llama_cpp.llama_adapter_lora_init(self.llm._model.model, str(path).encode())
            if not handle:
                raise AdapterError(
                    f"llama.cpp refused the adapter {path.name}; it is corrupt or was made for another model."
                )
            self._adapters[name] = handle

    def unload_adapter(self, name: str) -> None:
        with self._lock:
            handle = self._adapters.pop(name, None)
            if handle is None:
                return
            if self._active == name:
                self._select(None)
            self._llama_cpp.llama_adapter_lora_free(handle)

    def adapters(self) -> list[str]:
        return sorted(self._adapters)

    def _select(self, name: str | None) -> None:
        """Make `name` (or the base, for None) active; reset the KV prefix after a change."""
        if name == self._active:
            return
        ctx = self.llm._ctx.ctx
        if name is None:
            rc = self._llama_cpp.llama_set_adapters_lora(ctx, None, 0, None)
        else:
            if name not in self._adapters:
                raise AdapterError(f"Adapter {name!r} is not loaded; `uno adapters` lists what is deployed.")
            array = (self._llama_cpp.llama_adapter_lora_p_ctypes * 1)(self._adapters[name])
            scales = (ctypes.c_float * 1)(1.0)
            rc = self._llama_cpp.llama_set_adapters_lora(ctx, array, 1, scales)
        if rc != 0:
            raise AdapterError(f"llama.cpp could not switch to adapter {name!r} (code {rc}).")
        self.llm.reset()
        self._active = name

    # chat
    def stream(
        self,
        messages: list[dict],
        settings: GenerationSettings,
        *,
        adapter: str | None = None,
        json_schema: dict | None = None,
    ) -> Iterator[StreamEvent]:
        """Stream one answer with the model's own chat template (JSON-schema constrained if given)."""
        if self.system_prompt and not (messages and messages[0]["role"] == "system"):
            messages = [{"role": "system", "content": self.system_prompt}, *messages]
        if self.arch in NO_SYSTEM_ROLE:
            messages = fold_system(messages)
        with self._lock:
            self._select(adapter)
            start = time.perf_counter()
            first = None
            count = 0
            finish = None
            chunks = self.llm.create_chat_completion(
                messages=messages,
                stream=True,
                temperature=settings.temperature,
                top_p=settings.top_p,
                max_tokens=settings.max_tokens,
                seed=None if settings.seed < 0 else settings.seed,
                response_format={"type": "json_object", "schema": json_schema} if json_schema else None,
            )
            try:
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    delta = choice["delta"].get("content") or ""
                    finish = choice.get("finish_reason") or finish
                    if delta:
                        count += 1
                        if first is None:
                            first = time.perf_counter()
                        yield StreamEvent(delta=delta)
            finally:
                with suppress(Exception):
                    chunks.close()
            end = time.perf_counter()
            if count == 0 and finish == "stop":
                raise ModelError(
                    f"{self.model_name} gave an empty answer"
                    + (f": {self.template_note}" if self.template_note else "; try rephrasing the question.")
                )
            prompt_tokens = max(0, self.llm.n_tokens - count)
            yield StreamEvent(
                stats=ChatStats(
                    prompt_tokens=prompt_tokens,
                    completion_tokens=count,
                    ttft_ms=((first or end) - start) * 1000,
                    duration_ms=(end - start) * 1000,
                    finish_reason=finish,
                )
            )

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode(), add_bos=False, special=True)

    def close(self) -> None:
        with self._lock:
            for handle in self._adapters.values():
                with suppress(Exception):
                    self._llama_cpp.llama_adapter_lora_free(handle)
            self._adapters.clear()
            self.llm.close()
