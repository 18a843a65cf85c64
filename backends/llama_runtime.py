"""llama.cpp chat runtime: one model loaded per process, streamed chat, LoRA adapters per request.

Adapters are loaded once each through llama.cpp's low-level API and selected per request
(`llama_set_adapters_lora`); after a switch the reused KV prefix is reset so an answer never
mixes two adapters' caches. The base model is never reloaded. `generate_many` answers many
requests at once in a second context on the same model (`backends/batch_generator.py`).
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

from uno_local.errors import AdapterError, ModelError
from uno_local.runtime import (
    ChatStats,
    GenerationRequest,
    GenerationResult,
    GenerationSettings,
    StreamEvent,
)

GGUF_MAGIC = b"GGUF"


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
    ) -> None:
        import llama_cpp

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
        self._lock = threading.Lock()
        self._adapters: dict[str, object] = {}
        self._active: str | None = None
        self._batcher = None  # the batch context, made on the first generate_many

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

    # many answers at once
    def generate_many(
        self,
        requests: list[GenerationRequest],
        *,
        on_result: Callable[[GenerationResult], None] | None = None,
        n_parallel: int = 8,
    ) -> list[GenerationResult]:
        """Answer every request with batched decoding, one adapter at a time (requests are grouped by
        adapter, in order of first appearance). Returns the results in request order; `on_result`
        sees each as it finishes. A request that fails is its own result's `error`."""
        from backends.batch_generator import BatchGenerator, Job

        results: list[GenerationResult | None] = [None] * len(requests)

        def done(result: GenerationResult) -> None:
            results[result.index] = result
            if on_result is not None:
                on_result(result)

        groups: dict[str | None, list[Job]] = {}
        for index, request in enumerate(requests):
            try:
                prompt = self._chat_prompt(request.messages)
            except Exception as exc:  # a template error is this request's alone
                done(
                    GenerationResult(
                        index,
                        finish_reason="error",
                        error=f"The chat template failed ({exc}).",
                        adapter=request.adapter,
                    )
                )
                continue
            job = Job(
                index, prompt, request.settings, request.json_schema, tuple(request.stop), request.adapter
            )
            groups.setdefault(request.adapter, []).append(job)
        if not groups:
            return results  # type: ignore[return-value]  # nothing to decode: every result is an error
        with self._lock:
            if self._batcher is None or self._batcher.n_parallel != n_parallel:
                if self._batcher is not None:
                    self._batcher.close()
                self._batcher = BatchGenerator(self.llm, n_parallel=n_parallel)
            ctx = self.llm._ctx.ctx
            self._batcher.set_threads(
                self._llama_cpp.llama_n_threads(ctx), self._llama_cpp.llama_n_threads_batch(ctx)
            )
            for adapter, jobs in groups.items():
                if adapter is not None and adapter not in self._adapters:
                    for job in jobs:
                        done(
                            GenerationResult(
                                job.index,
                                finish_reason="error",
                                error=f"Adapter {adapter!r} is not loaded; `uno adapters` lists what is deployed.",
                                adapter=adapter,
                            )
                        )
                    continue
                self._batcher.set_adapter(self._adapters[adapter] if adapter else None)
                self._batcher.run(jobs, done)
        return results  # type: ignore[return-value]  # every index was answered

    def _chat_prompt(self, messages: list[dict]) -> list[int]:
        """The prompt tokens `stream` decodes for `messages`: the model's own chat template (from the
        GGUF metadata, as llama-cpp-python renders it) and the configured system prompt."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        if self.system_prompt and not (messages and messages[0]["role"] == "system"):
            messages = [{"role": "system", "content": self.system_prompt}, *messages]
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelError(f"{self.model_name} has no chat template; batched answers need one.")
        model = self.llm._model
        eos, bos = self.llm.token_eos(), self.llm.token_bos()
        formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
        )
        prompt = formatter(messages=messages).prompt
        return self.llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode(), add_bos=False, special=True)

    def close(self) -> None:
        with self._lock:
            if self._batcher is not None:
                self._batcher.close()
                self._batcher = None
            for handle in self._adapters.values():
                with suppress(Exception):
                    self._llama_cpp.llama_adapter_lora_free(handle)
            self._adapters.clear()
            self.llm.close()
