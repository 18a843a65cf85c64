"""Many answers at once from one loaded llama.cpp model: continuous batching over KV-cache sequences.

jobs (prompt tokens, sampling, grammar, stop strings, max tokens) -> one `GenerationResult` per job.

On a CPU, decoding one token reads every weight once; the same read serves every sequence in a batch,
so a batch of 8 costs little more than one sequence until compute binds. The generator owns a second
llama.cpp context on the runtime's model (the chat context and its reused prefix stay untouched),
with one KV-cache sequence per slot. Each step decodes one llama_batch holding the next token of every
generating sequence and chunks of the prompts being read; a finished sequence frees its slot and cache
cells for the next job at once (continuous batching). Each sequence has its own sampler chain (the
same chain llama-cpp-python builds for one stream: the grammar when given, else the DRY penalty on
repeats when asked, then greedy argmax or sampling), so grammars, seeds and stops never mix. A greedy
sequence under a grammar takes llama.cpp's own short cut (`GreedyGrammar`): the same tokens, without
masking the whole vocabulary at every step. An error in one job (a grammar llama.cpp refuses, a
prompt too long) becomes that job's result; the others go on.
"""

from __future__ import annotations

import ctypes
import json
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field

from uno_local.runtime import GenerationResult, GenerationSettings

# llama-cpp-python's own chain for a sampled stream (create_chat_completion's defaults).
TOP_K = 40
MIN_P = 0.05


def dry_sampler(lc, vocab, multiplier: float):
    """llama.cpp's DRY sampler with uno's settings (`uno_local.config.DRY_*`) and no sequence breakers: a
    line repeated word for word ("Purr-fect." forty times, "- - - -") is a loop like any other. It sees
    what it is given to accept: the answer's own tokens, never the prompt's (a question may be quoted)."""
    from uno_local.config import DRY_ALLOWED_LENGTH, DRY_BASE, DRY_LAST_N

    no_breakers = (ctypes.c_char_p * 0)()
    return lc.llama_sampler_init_dry(
        vocab, multiplier, DRY_BASE, DRY_ALLOWED_LENGTH, DRY_LAST_N, no_breakers, 0
    )


class DryLogits:
    """llama.cpp's own DRY sampler (`dry_sampler`) as a llama-cpp-python logits processor, for streams:
    its high-level streams take no DRY argument. The sampler accepts the answer's tokens as they come
    (the ids after the prompt) and penalises the logits in place of llama.cpp's token array, so a
    stream's answer is the one `generate_many` gives for the same request."""

    def __init__(self, llm, multiplier: float) -> None:
        import llama_cpp
        import numpy as np

        self._lc = llama_cpp
        self._sampler = dry_sampler(llama_cpp, llm._model.vocab, multiplier)
        self._seen: int | None = None  # ids already accepted (the prompt's are skipped)
        n_vocab = llm.n_vocab()
        self._data = np.zeros(n_vocab, dtype=[("id", np.int32), ("logit", np.float32), ("p", np.float32)])
        self._data["id"] = np.arange(n_vocab)
        self._array = llama_cpp.llama_token_data_array(
            data=self._data.ctypes.data_as(llama_cpp.llama_token_data_p),
            size=n_vocab,
            selected=-1,
            sorted=False,
        )

    def __call__(self, input_ids, scores):
        if self._seen is None:
            self._seen = len(input_ids)
        for token in input_ids[self._seen :]:
            self._lc.llama_sampler_accept(self._sampler, int(token))
        self._seen = len(input_ids)
        self._data["logit"] = scores
        self._lc.llama_sampler_apply(self._sampler, ctypes.byref(self._array))
        return self._data["logit"].copy()

    def __del__(self) -> None:
        with suppress(AttributeError):
            self._lc.llama_sampler_free(self._sampler)


@dataclass
class Job:
    """One request, ready for llama.cpp: `index` is its place in the caller's list."""

    index: int
    prompt: list[int]
    settings: GenerationSettings
    json_schema: dict | None = None
    stop: tuple[str, ...] = ()
    adapter: str | None = None


@dataclass
class _Sequence:
    job: Job
    seq_id: int
    sampler: object
    max_tokens: int
    todo: list[int]  # prompt tokens not decoded yet
    pos: int = 0  # next position in this sequence
    out: list[int] = field(default_factory=list)
    raw: bytearray = field(default_factory=bytearray)
    row: int = -1  # this step's logits row, -1 when it has none
    greedy_grammar: GreedyGrammar | None = None  # greedy under a grammar: sampled here, not by `sampler`

    @property
    def need(self) -> int:
        return len(self.job.prompt) + self.max_tokens


class GreedyGrammar:
    """Greedy decoding under a grammar as llama.cpp's common sampler does it: the best token is checked
    against the grammar alone, and only when the grammar rejects it is the whole vocabulary masked and
    the best allowed token taken. Either way the token is the argmax over what the grammar allows, the
    one the grammar-first chain picks; the mask, a grammar check of every token in the vocabulary, is
    what made JSON 2.4x (SmolLM2, 49k tokens) to 5.8x (Gemma 3, 262k) slower per token than free text.
    `grammar` belongs to the sequence's chain, which frees it."""

    def __init__(self, lc, grammar, n_vocab: int) -> None:
        import numpy as np

        self._lc, self._np, self.grammar, self.n_vocab = lc, np, grammar, n_vocab
        self._one = (lc.llama_token_data * 1)()
        self._all = np.zeros(n_vocab, dtype=[("id", np.int32), ("logit", np.float32), ("p", np.float32)])
        self._all["id"] = np.arange(n_vocab, dtype=np.int32)

    def _apply(self, data, size: int) -> None:
        array = self._lc.llama_token_data_array(data=data, size=size, selected=-1, sorted=False)
        self._lc.llama_sampler_apply(self.grammar, ctypes.byref(array))

    def sample(self, ctx, row: int) -> int:
        lc, np = self._lc, self._np
        logits = np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, row), shape=(self.n_vocab,))
        token = int(np.argmax(logits))
        self._one[0].id, self._one[0].logit, self._one[0].p = token, float(logits[token]), 0.0
        self._apply(self._one, 1)
        if self._one[0].logit == float("-inf"):  # rejected: mask every token, take the best allowed
            self._all["logit"] = logits
            self._apply(self._all.ctypes.data_as(ctypes.POINTER(lc.llama_token_data)), self.n_vocab)
            token = int(np.argmax(self._all["logit"]))
        lc.llama_sampler_accept(self.grammar, token)
        return token


class BatchGenerator:
    """A batch context on `llm`'s model: `n_parallel` sequences sharing `n_ctx` KV-cache cells."""

    def __init__(self, llm, *, n_parallel: int = 8, n_ctx: int = 8192, n_batch: int = 512) -> None:
        import llama_cpp

        self._lc = llama_cpp
        self.llm = llm
        self.n_parallel = n_parallel
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        self.seq_ctx = llm.n_ctx()  # one sequence never outgrows what the chat context allows
        params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = n_parallel
        params.kv_unified = True  # one pool of cells: a long answer may use what short ones leave
        self.ctx = llama_cpp.llama_init_from_model(llm._model.model, params)
        if not self.ctx:
            raise MemoryError(f"llama.cpp could not create a batch context of {n_ctx} tokens")
        self.n_ctx = llama_cpp.llama_n_ctx(self.ctx)
        self._memory = llama_cpp.llama_get_memory(self.ctx)
        self._vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self._adapter: object | None = None

    def set_threads(self, n_threads: int, n_threads_batch: int) -> None:
        self._lc.llama_set_n_threads(self.ctx, n_threads, n_threads_batch)

    def set_adapter(self, handle: object | None) -> None:
        """Serve the next run through one LoRA adapter (None: the base model)."""
        if handle is self._adapter:
            return
        if handle is None:
            rc = self._lc.llama_set_adapters_lora(self.ctx, None, 0, None)
        else:
            array = (self._lc.llama_adapter_lora_p_ctypes * 1)(handle)
            rc = self._lc.llama_set_adapters_lora(self.ctx, array, 1, (ctypes.c_float * 1)(1.0))
        if rc != 0:
            raise RuntimeError(f"llama.cpp could not switch the batch context's adapter (code {rc})")
        self._adapter = handle

    def run(self, jobs: list[Job], on_result: Callable[[GenerationResult], None]) -> None:
        """Answer every job; `on_result` gets each result as soon as its sequence ends."""
        lc = self._lc
        pending = deque(jobs)
        free = list(range(self.n_parallel - 1, -1, -1))
        active: dict[int, _Sequence] = {}
        lc.llama_memory_clear(self._memory, True)
        try:
            while pending or active:
                # Continuous batching: free slots take the next jobs while their cells fit.
                reserved = sum(s.need for s in active.values())
                while pending and free:
                    if active and reserved + self._need(pending[0]) > self.n_ctx:
                        break
                    seq = self._start(pending.popleft(), free[-1], on_result)
                    if seq is not None:
                        active[free.pop()] = seq
                        reserved += seq.need
                if not active:
                    continue
                rows = self._fill(list(active.values()))
                rc = lc.llama_decode(self.ctx, self._batch)
                if rc != 0:
                    for seq in list(active.values()):
                        self._finish(
                            seq, active, free, on_result, "error", f"llama.cpp could not decode (code {rc})."
                        )
                    continue
                for seq in rows:
                    self._step(seq, active, free, on_result)
        finally:
            for seq in active.values():
                lc.llama_sampler_free(seq.sampler)
            lc.llama_memory_clear(self._memory, True)

    def _limit(self) -> int:
        return min(self.seq_ctx, self.n_ctx)

    def _max_tokens(self, job: Job) -> int:
        room = self._limit() - len(job.prompt)
        return room if job.settings.max_tokens <= 0 else min(job.settings.max_tokens, room)

    def _need(self, job: Job) -> int:
        return len(job.prompt) + max(0, self._max_tokens(job))

    def _start(self, job: Job, seq_id: int, on_result) -> _Sequence | None:
        """A sequence for `job`, or None after reporting why it cannot run."""
        if not 0 < len(job.prompt) < self._limit():
            return self._fail(
                job,
                on_result,
                f"The prompt is {len(job.prompt)} tokens; it must be 1 to {self._limit() - 1}.",
            )
        try:
            sampler, grammar = self._sampler(job)
        except ValueError as exc:
            return self._fail(job, on_result, str(exc))
        seq = _Sequence(job, seq_id, sampler, self._max_tokens(job), todo=list(job.prompt))
        if grammar is not None and job.settings.temperature == 0:
            seq.greedy_grammar = GreedyGrammar(self._lc, grammar, self._lc.llama_vocab_n_tokens(self._vocab))
        return seq

    def _sampler(self, job: Job):
        """The per-sequence chain (grammar first, then greedy argmax or llama-cpp-python's sampling) and
        its grammar sampler, or None."""
        lc = self._lc
        s = job.settings
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        grammar = None
        if job.json_schema is not None:
            from llama_cpp.llama_grammar import json_schema_to_gbnf

            try:
                gbnf = json_schema_to_gbnf(json.dumps(job.json_schema))
            except Exception as exc:  # the converter raises bare Exceptions for schemas it cannot map
                lc.llama_sampler_free(chain)
                raise ValueError(f"The JSON schema cannot be turned into a grammar ({exc}).") from exc
            grammar = lc.llama_sampler_init_grammar(self._vocab, gbnf.encode(), b"root")
            if not grammar:
                lc.llama_sampler_free(chain)
                raise ValueError("llama.cpp refused the grammar made from the JSON schema.")
            lc.llama_sampler_chain_add(chain, grammar)
        seed = lc.LLAMA_DEFAULT_SEED if s.seed < 0 else s.seed
        if s.dry_multiplier > 0 and grammar is None:  # JSON repeats its own structure by design
            lc.llama_sampler_chain_add(chain, dry_sampler(lc, self._vocab, s.dry_multiplier))
        if s.temperature == 0:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_greedy())
        elif s.temperature < 0:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_dist(seed))
        else:
            for sampler in (
                lc.llama_sampler_init_top_k(TOP_K),
                lc.llama_sampler_init_typical(1.0, 1),
                lc.llama_sampler_init_top_p(s.top_p, 1),
                lc.llama_sampler_init_min_p(MIN_P, 1),
                lc.llama_sampler_init_temp(s.temperature),
                lc.llama_sampler_init_dist(seed),
            ):
                lc.llama_sampler_chain_add(chain, sampler)
        return chain, grammar

    def _fill(self, sequences) -> list[_Sequence]:
        """Put this step's tokens in the batch: one per generating sequence, then prompt chunks."""
        batch = self._batch
        n = 0
        rows = []

        def add(seq: _Sequence, token: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = seq.pos
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = seq.seq_id
            batch.logits[n] = logits
            if logits:
                seq.row = n
                rows.append(seq)
            seq.pos += 1
            n += 1

        for seq in sequences:
            seq.row = -1
            if not seq.todo:
                add(seq, seq.out[-1], True)
        for seq in sequences:
            if seq.todo and n < self.n_batch:
                chunk = seq.todo[: self.n_batch - n]
                del seq.todo[: len(chunk)]
                for i, token in enumerate(chunk):
                    add(seq, token, not seq.todo and i == len(chunk) - 1)
        batch.n_tokens = n
        return rows

    def _step(self, seq: _Sequence, active, free, on_result) -> None:
        """Sample this sequence's next token and end it on end-of-generation, a stop string or length."""
        lc = self._lc
        if seq.greedy_grammar is not None:
            token = seq.greedy_grammar.sample(self.ctx, seq.row)
        else:
            token = lc.llama_sampler_sample(seq.sampler, self.ctx, seq.row)
        if lc.llama_vocab_is_eog(self._vocab, token):
            self._finish(seq, active, free, on_result, "stop")
            return
        seq.out.append(token)
        piece = self.llm.detokenize([token])
        seq.raw += piece
        stops = seq.job.stop
        if stops:
            longest = max(len(s.encode()) for s in stops)
            tail = bytes(seq.raw[-(longest + len(piece) + 4) :]).decode("utf-8", "ignore")
            if any(s in tail for s in stops):
                self._finish(seq, active, free, on_result, "stop")
                return
        if len(seq.out) >= seq.max_tokens:
            self._finish(seq, active, free, on_result, "length")

    def _finish(self, seq, active, free, on_result, reason: str, error: str | None = None) -> None:
        lc = self._lc
        lc.llama_memory_seq_rm(self._memory, seq.seq_id, -1, -1)
        lc.llama_sampler_free(seq.sampler)
        del active[seq.seq_id]
        free.append(seq.seq_id)
        text = bytes(seq.raw).decode("utf-8", "ignore")
        if seq.job.stop and reason == "stop":
            cut = min((text.find(s) for s in seq.job.stop if s in text), default=-1)
            text = text[:cut] if cut >= 0 else text
        on_result(
            GenerationResult(
                index=seq.job.index,
                text=text if error is None else "",
                tokens=seq.out,
                prompt_tokens=len(seq.job.prompt),
                finish_reason=reason,
                error=error,
                adapter=seq.job.adapter,
            )
        )

    def _fail(self, job: Job, on_result, error: str) -> None:
        on_result(
            GenerationResult(
                index=job.index,
                prompt_tokens=len(job.prompt),
                finish_reason="error",
                error=error,
                adapter=job.adapter,
            )
        )
        return None

    def close(self) -> None:
        if self.ctx:
            self._lc.llama_batch_free(self._batch)
            self._lc.llama_free(self.ctx)
            self.ctx = None
