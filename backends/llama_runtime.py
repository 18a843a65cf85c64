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
from dataclasses import dataclass
from pathlib import Path

from uno_local.errors import AdapterError, ConfigError, ContextOverflowError, ModelError
from uno_local.runtime import (
    ChatStats,
    GenerationRequest,
    GenerationResult,
    GenerationSettings,
    StreamEvent,
)

GGUF_MAGIC = b"GGUF"
MIN_CTX = 64
TURN_OVERHEAD = 8  # template tokens around each message (role markers, separators), generously
ANSWER_ROOM = 32  # tokens kept free for at least the start of an answer
# The chat format for a GGUF without a chat template, per architecture (llama-cpp-python's formats).
FALLBACK_FORMATS = {"gemma": "gemma", "gemma2": "gemma", "gemma3": "gemma"}
DEFAULT_FALLBACK = "chatml"
NO_SYSTEM_ROLE = ("gemma", "gemma2", "gemma3")  # Gemma's templates have no system turn


def fallback_template(fmt: str, bos: bool) -> str:
    """The Jinja chat template that renders what llama-cpp-python's named format `fmt` renders (with the
    system turn folded as `fold_system` folds it, for gemma), so the trainer learns on the very prompts
    the runtime answers from a GGUF without a template of its own. `bos`: the GGUF adds a BOS token."""
    start = "{{ bos_token }}" if bos else ""
    if fmt == "gemma":
        return start + (
            "{% set ns = namespace(system='') %}"
            "{% for m in messages if m['role'] == 'system' %}"
            "{% set ns.system = ns.system + ('\n\n' if ns.system else '') + m['content'] %}{% endfor %}"
            "{% set rest = messages | rejectattr('role', 'equalto', 'system') | list %}"
            "{% if ns.system and (not rest or rest[0]['role'] != 'user') %}"
            "<start_of_turn>user\n{{ ns.system }}<end_of_turn>\n{% endif %}"
            "{% for m in rest %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
            "{% if loop.first and ns.system and m['role'] == 'user' %}{{ ns.system }}\n\n{% endif %}"
            "{{ m['content'] }}<end_of_turn>\n{% endfor %}"
            "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
        )
    if fmt == "chatml":  # llama-cpp-python always writes the system turn, empty or not: its first one
        return start + (
            "{% set ns = namespace(system=none) %}"
            "{% for m in messages if m['role'] == 'system' and ns.system is none %}"
            "{% set ns.system = m['content'] %}{% endfor %}"
            "<|im_start|>system\n{{ ns.system or '' }}<|im_end|>\n"
            "{% for m in messages if m['role'] in ('user', 'assistant') %}"
            "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
        )
    raise ModelError(f"uno cannot train with the chat format {fmt!r}; use the GGUF's own template.")


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _drop_log(level, text, user_data):
    """llama.cpp's own log lines never reach the user's terminal: its errors surface as exceptions."""


def prepare_llama_cpp():
    """The llama_cpp module, ready for this process (idempotent; call before loading a model):

    - llama.cpp's own log lines never reach the user's terminal: its errors surface as exceptions;
    - on a build with llama.cpp's AMX kernels (compiled natively on an Intel CPU with AMX), models load
      without its extra buffer types: its AMX matrix multiply segfaults at the first decode on some such
      machines (ggml-org/llama.cpp#20824; seen here on a Xeon with AMX, llama-cpp-python 0.3.36, on the
      embedded Q4_1 model), and a crash must never reach the user.
    """
    import llama_cpp
    import llama_cpp.llama_cpp as lc

    llama_cpp.llama_log_set(_drop_log, ctypes.c_void_p(0))
    if b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info() and not hasattr(
        lc.llama_model_default_params, "without_extra_buffers"
    ):
        defaults = lc.llama_model_default_params

        def without_extra_buffers():
            params = defaults()
            params.use_extra_bufts = False
            return params

        without_extra_buffers.without_extra_buffers = True
        lc.llama_model_default_params = without_extra_buffers  # what `llama_cpp.Llama` builds its params from
    return llama_cpp


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


@dataclass
class LoadedAdapter:
    """A GGUF LoRA adapter picked by name: its file, and llama.cpp's handle (None while released)."""

    path: Path
    handle: object | None


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
        if n_ctx < 0 or 0 < n_ctx < MIN_CTX:
            raise ConfigError(
                f"The context window n_ctx={n_ctx} is too small; use at least {MIN_CTX} tokens "
                "(or 0 for the model's own size) in uno.toml or --ctx."
            )
        if n_batch < 1:
            raise ConfigError(f"n_batch={n_batch} must be a positive number of tokens; set it in uno.toml.")
        llama_cpp = prepare_llama_cpp()
        self._llama_cpp = llama_cpp
        self.model_path = check_model_file(model_path)
        self.model_name = self.model_path.name
        self.system_prompt = system_prompt
        self._threads = n_threads or max(1, (os.cpu_count() or 2))
        self._shape = {"n_ctx": n_ctx, "n_batch": n_batch}
        self._llm = self._load(self._threads)
        self.arch = self._llm.metadata.get("general.architecture", "")
        self.template_note = ""  # one sentence when the GGUF has no chat template of its own
        self._chat_format = None
        if not self._llm.metadata.get("tokenizer.chat_template"):
            fmt = self._chat_format = chat_format or FALLBACK_FORMATS.get(self.arch, DEFAULT_FALLBACK)
            self._llm.chat_format = fmt
            self.template_note = (
                f"{self.model_name} has no chat template; using the {fmt} template "
                "(set chat_format in [model] of uno.toml to choose another)."
            )
        self._lock = threading.Lock()
        self._adapters: dict[str, LoadedAdapter] = {}
        self._active: str | None = None
        self._batcher = None  # the batch context, made on the first generate_many
        self._current_threads = self._threads
        self._closed = False

    def _load(self, threads: int):
        try:
            return self._llama_cpp.Llama(
                model_path=str(self.model_path),
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
                **self._shape,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(
                f"llama.cpp could not load {self.model_path.name} ({exc}); the file may be corrupt or unsupported."
            ) from exc

    @property
    def llm(self):
        """The llama.cpp model and chat context, loaded again (with its adapters) after `release`."""
        if self._llm is None:
            if self._closed:
                raise ModelError(f"{self.model_name} was closed; open the app again to use it.")
            llm = self._load(self._current_threads)
            if self._chat_format:
                llm.chat_format = self._chat_format
            self._llm = llm
            for name, adapter in list(self._adapters.items()):
                try:
                    adapter.handle = self._init_adapter(adapter.path)
                except AdapterError:  # its file went while the model was released: the others still serve
                    del self._adapters[name]
        return self._llm

    def release(self) -> None:
        """Free the model, its contexts and its adapters' weights (the retrain's training needs the
        memory and generates nothing); the next call loads them again, with the same adapters."""
        with self._lock:
            if self._batcher is not None:
                self._batcher.close()
                self._batcher = None
            if self._llm is None:
                return
            for adapter in self._adapters.values():
                with suppress(Exception):
                    self._llama_cpp.llama_adapter_lora_free(adapter.handle)
                adapter.handle = None
            self._active = None
            self._llm.close()
            self._llm = None

    def set_threads(self, n: int | None) -> None:
        """Use `n` CPU threads from the next answer on (None: the configured number). llama.cpp's
        threads spin while they wait, so sharing cores with a training job needs fewer of them."""
        n = n or self._threads
        with self._lock:
            self._current_threads = n
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
            self._adapters[name] = LoadedAdapter(path, self._init_adapter(path))

    def _init_adapter(self, path: Path) -> object:
        handle = self._llama_cpp.llama_adapter_lora_init(self.llm._model.model, str(path).encode())
        if not handle:
            raise AdapterError(
                f"llama.cpp refused the adapter {path.name}; it is corrupt or was made for another model."
            )
        return handle

    def unload_adapter(self, name: str) -> None:
        with self._lock:
            adapter = self._adapters.pop(name, None)
            if adapter is None or adapter.handle is None:  # unknown, or the model is released
                return
            if self._active == name:
                self._select(None)
            self._llama_cpp.llama_adapter_lora_free(adapter.handle)

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
            array = (self._llama_cpp.llama_adapter_lora_p_ctypes * 1)(self._adapters[name].handle)
            scales = (ctypes.c_float * 1)(1.0)
            rc = self._llama_cpp.llama_set_adapters_lora(ctx, array, 1, scales)
        if rc != 0:
            raise AdapterError(f"llama.cpp could not switch to adapter {name!r} (code {rc}).")
        self.llm.reset()
        self._active = name

    # chat
    def _tokens(self, message: dict) -> int:
        return (
            len(self.llm.tokenize(message["content"].encode("utf-8", "replace"), add_bos=False))
            + TURN_OVERHEAD
        )

    def fit(self, messages: list[dict]) -> list[dict]:
        """The context that fits the window: the oldest turns are dropped (the system prompt and the
        last message stay); a last message too long on its own is one sentence."""
        budget = self.llm.n_ctx() - ANSWER_ROOM
        system = [m for m in messages[:1] if m["role"] == "system"]
        if self.system_prompt and not system:
            system = [{"role": "system", "content": self.system_prompt}]
        rest = messages[len(system) if messages[:1] == system else 0 :]
        used = sum(self._tokens(m) for m in system)
        kept: list[dict] = []
        for message in reversed(rest):
            used += self._tokens(message)
            if used > budget:
                break
            kept.insert(0, message)
        if not kept and rest:
            raise ContextOverflowError(
                f"The message is about {used:,} tokens with the system prompt, more than the model's "
                f"{budget + ANSWER_ROOM:,}-token context window; shorten it or raise n_ctx in uno.toml "
                "(the message is kept, unanswered)."
            )
        return ([m for m in messages[:1] if m["role"] == "system"]) + kept

    def stream(
        self,
        messages: list[dict],
        settings: GenerationSettings,
        *,
        adapter: str | None = None,
        json_schema: dict | None = None,
    ) -> Iterator[StreamEvent]:
        """Stream one answer with the model's own chat template (JSON-schema constrained if given)."""
        messages = self._prepare(messages)
        with self._lock:
            self._select(adapter)
            start = time.perf_counter()
            chunks = self.llm.create_chat_completion(
                messages=messages,
                stream=True,
                response_format={"type": "json_object", "schema": json_schema} if json_schema else None,
                **sampling(settings),
                logits_processor=None if json_schema else self._dry(settings),
            )
            yield from self._timed(chunks, start, lambda choice: choice["delta"].get("content") or "")

    def continue_stream(
        self, messages: list[dict], partial: str, settings: GenerationSettings, *, adapter: str | None = None
    ) -> Iterator[StreamEvent]:
        """Stream more of the answer `partial`: the chat template's prompt with the answer turn left open
        and `partial` already in it, decoded on from there (the template's stop strings end it)."""
        prompt, stop = self._chat_prompt(messages)
        prompt += self.llm.tokenize(partial.encode("utf-8", "replace"), add_bos=False, special=False)
        with self._lock:
            self._select(adapter)
            start = time.perf_counter()
            chunks = self.llm.create_completion(
                prompt=prompt,
                stream=True,
                stop=list(stop) or None,
                **sampling(settings),
                logits_processor=self._dry(settings),
            )
            # Nothing more to say is no error here: the answer had simply reached its end.
            yield from self._timed(chunks, start, lambda choice: choice.get("text") or "", empty_ok=True)

    def _timed(
        self, chunks, start: float, text_of: Callable[[dict], str], *, empty_ok: bool = False
    ) -> Iterator[StreamEvent]:
        """A llama-cpp-python stream as text events, then one event with the timing statistics."""
        first = None
        count = 0
        finish = None
        try:
            for chunk in _context_errors(chunks, self.llm.n_ctx()):
                choice = chunk["choices"][0]
                delta = text_of(choice)
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
        if count == 0 and finish == "stop" and not empty_ok:
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
                if request.continuation is not None:
                    prompt = self.llm.tokenize(request.continuation.encode("utf-8"), add_bos=True)
                    template_stop: tuple[str, ...] = ()
                else:
                    prompt, template_stop = self._chat_prompt(request.messages)
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
            stop = (*request.stop, *template_stop)
            job = Job(index, prompt, request.settings, request.json_schema, stop, request.adapter)
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
                self._batcher.set_adapter(self._adapters[adapter].handle if adapter else None)
                self._batcher.run(jobs, done)
        return results  # type: ignore[return-value]  # every index was answered

    def _prepare(self, messages: list[dict]) -> list[dict]:
        """The messages as the template gets them: the configured system prompt first, and folded into
        the first user turn for models without a system role."""
        if self.system_prompt and not (messages and messages[0]["role"] == "system"):
            messages = [{"role": "system", "content": self.system_prompt}, *messages]
        return fold_system(messages) if self.arch in NO_SYSTEM_ROLE else messages

    def _chat_prompt(self, messages: list[dict]) -> tuple[list[int], tuple[str, ...]]:
        """The prompt tokens `stream` decodes for `messages`, and the template's stop strings: the
        model's own chat template (from the GGUF metadata, as llama-cpp-python renders it), else the
        named fallback format `stream` uses (`self.llm.chat_format`)."""
        from llama_cpp import llama_chat_format

        messages = self._prepare(messages)
        template = self.llm.metadata.get("tokenizer.chat_template")
        if template:
            model = self.llm._model
            eos, bos = self.llm.token_eos(), self.llm.token_bos()
            formatter = llama_chat_format.Jinja2ChatFormatter(
                template=template,
                eos_token=model.token_get_text(eos) if eos != -1 else "",
                bos_token=model.token_get_text(bos) if bos != -1 else "",
            )
        else:  # a named format: llama-cpp-python's format_<name> ("llama-2" -> format_llama2)
            name = self.llm.chat_format or DEFAULT_FALLBACK
            formatter = getattr(llama_chat_format, f"format_{name.replace('-', '')}", None) or getattr(
                llama_chat_format, f"format_{name.replace('-', '_')}", None
            )
            if formatter is None:
                raise ModelError(f"The chat format {name!r} cannot render batched answers; choose another.")
        response = formatter(messages=messages)
        stop = response.stop if isinstance(response.stop, list) else [response.stop] if response.stop else []
        # As llama-cpp-python's own chat handler: a named format leaves the BOS token to the tokenizer.
        tokens = self.llm.tokenize(
            response.prompt.encode("utf-8"), add_bos=not response.added_special, special=True
        )
        return tokens, tuple(stop)

    def _dry(self, settings: GenerationSettings):
        """The DRY penalty of `settings` for one stream, as `generate_many`'s chains apply it (None: off)."""
        if settings.dry_multiplier <= 0:
            return None
        from llama_cpp import LogitsProcessorList

        from backends.batch_generator import DryLogits

        return LogitsProcessorList([DryLogits(self.llm, settings.dry_multiplier)])

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode(), add_bos=False, special=True)

    def close(self) -> None:
        self.release()
        self._adapters.clear()
        self._closed = True


def sampling(settings: GenerationSettings) -> dict:
    """llama-cpp-python's sampling arguments for `settings` (a negative seed: a random one)."""
    return {
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "max_tokens": settings.max_tokens,
        "seed": None if settings.seed < 0 else settings.seed,
    }


def _context_errors(chunks, n_ctx: int):
    """llama-cpp-python's "Requested tokens exceed context window" as one sentence."""
    try:
        yield from chunks
    except ValueError as exc:
        if "context window" not in str(exc):
            raise
        raise ContextOverflowError(
            f"The conversation is longer than the model's {n_ctx:,}-token context window; start a new "
            "conversation or raise n_ctx in uno.toml."
        ) from exc
