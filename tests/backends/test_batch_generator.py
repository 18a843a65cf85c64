"""Batched generation on the real embedded model: agreement with single-stream answers, per-sequence
grammars and lengths, isolation of a failing request, adapter grouping, continuous batching."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from uno_local.runtime import GenerationRequest, GenerationSettings, complete

QUESTIONS = [
    "What is a prime number?",
    "How do I boil an egg?",
    "Name three colours of the rainbow.",
    "Why is the sky blue?",
    "Give me a tip for sleeping better.",
    "What does a gardener do in spring?",
    "How many legs does a spider have?",
    "Write one sentence about the sea.",
]


@pytest.fixture(scope="module", autouse=True)
def _one_llama_thread(runtime):
    """On the shared 2-core test machines, llama.cpp's 2 threads spin at every barrier (measured: several
    times slower under load); one thread keeps these tests cheap. Restored for the tests after."""
    runtime.set_threads(1)
    yield
    runtime.set_threads(None)


def ask(question: str) -> list[dict]:
    return [{"role": "user", "content": question}]


def greedy(n: int, dry_multiplier: float = 0.0) -> GenerationSettings:
    """Greedy without the DRY penalty unless asked: these tests compare raw logits across kernels."""
    return GenerationSettings.greedy(max_tokens=n, dry_multiplier=dry_multiplier)


def logits_after(runtime, tokens: list[int]) -> np.ndarray:
    """The single-stream (chat context) next-token logits after `tokens`."""
    import llama_cpp

    llm = runtime.llm
    with runtime._lock:
        runtime._select(None)
        llm.reset()
        llm.eval(tokens)
        row = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        logits = np.ctypeslib.as_array(row, shape=(llm.n_vocab(),)).copy()
        llm.reset()
    return logits


def test_batched_greedy_agrees_with_single_stream(runtime):
    n = 24
    singles = [complete(runtime, ask(q), greedy(n))[0] for q in QUESTIONS]
    seen = []
    batched = runtime.generate_many(
        [GenerationRequest(ask(q), greedy(n)) for q in QUESTIONS], on_result=seen.append
    )
    assert sorted(r.index for r in seen) == list(range(len(QUESTIONS)))  # each reported once
    assert [r.index for r in batched] == list(range(len(QUESTIONS)))
    assert all(r.ok and 0 < len(r.tokens) <= n for r in batched)
    identical = [b.text == s for b, s in zip(batched, singles, strict=True)]
    print(f"identical answers: {sum(identical)}/{len(identical)}")
    # Measured 5/8 (and 7/8 on one thread): batched kernels sum floats in another order, and SmolLM2's
    # top two logits are often within a few hundredths. What must hold is that each divergence is such
    # a near-tie.
    assert sum(identical) >= len(identical) // 2
    for result, single, same in zip(batched, singles, identical, strict=True):
        if same:
            continue
        # A divergence must be a near-tie for the single stream at the first differing token.
        prompt, _ = runtime._chat_prompt(ask(QUESTIONS[result.index]))
        theirs = runtime.tokenize(single)
        k = next(i for i, (a, b) in enumerate(zip(result.tokens, theirs, strict=False)) if a != b)
        logits = logits_after(runtime, prompt + result.tokens[:k])
        gap = float(logits[theirs[k]] - logits[result.tokens[k]])
        print(f"request {result.index}: diverged at token {k}, single-stream logit gap {gap:.3f}")
        assert abs(gap) < 0.5  # measured 0.015-0.19; a real bug (wrong prompt, adapter) gives several


def test_continuous_batching_gives_the_same_answers_with_fewer_slots(runtime):
    requests = [GenerationRequest(ask(q), greedy(12)) for q in QUESTIONS[:5]]
    wide = runtime.generate_many(requests, n_parallel=8)
    narrow = runtime.generate_many(requests, n_parallel=2)  # 2 slots: 3 requests wait for a free one
    assert all(r.ok for r in narrow)
    same = sum(a.tokens == b.tokens for a, b in zip(wide, narrow, strict=True))
    assert same >= 3, [(a.text, b.text) for a, b in zip(wide, narrow, strict=True)]


def test_each_sequence_has_its_own_grammar(runtime):
    rules = {
        "type": "object",
        "properties": {
            "rules": {"type": "array", "items": {"type": "string", "maxLength": 24}, "maxItems": 2}
        },
        "required": ["rules"],
    }
    count = {
        "type": "object",
        "properties": {"legs": {"type": "integer", "minimum": 0, "maximum": 99}},
        "required": ["legs"],
    }
    results = runtime.generate_many(
        [
            GenerationRequest(
                ask("List two rules for writing emails, as JSON."), greedy(80), json_schema=rules
            ),
            GenerationRequest(ask(QUESTIONS[6]), greedy(20)),  # no grammar beside the two
            GenerationRequest(
                ask("How many legs does a spider have? Answer in JSON."), greedy(40), json_schema=count
            ),
        ]
    )
    first, free, second = results
    assert first.finish_reason == "stop" and second.finish_reason == "stop"
    parsed = json.loads(first.text)
    assert set(parsed) == {"rules"} and all(isinstance(rule, str) for rule in parsed["rules"])
    parsed = json.loads(second.text)
    assert set(parsed) == {"legs"} and isinstance(parsed["legs"], int)
    assert free.ok and not free.text.lstrip().startswith("{")


def test_greedy_under_a_grammar_takes_the_grammar_first_chains_tokens(runtime, monkeypatch):
    """The short cut (check the best token alone, mask the vocabulary only when it is rejected) gives
    the very answers of the chain that masks at every step, and both of its branches ran."""
    import backends.batch_generator as bg
    from uno_local.distill import DISTILL_SYSTEM, RULE_SCHEMA

    requests = [
        GenerationRequest(
            [
                {"role": "system", "content": DISTILL_SYSTEM},
                {"role": "user", "content": f"{q}\nFeedback: {f}"},
            ],
            greedy(40),
            json_schema=RULE_SCHEMA,
        )
        for q in QUESTIONS[:4]
        for f in ("Too long: three bullet points.", "Always end with 'Happy cooking!'")
    ]
    checked = []
    apply = bg.GreedyGrammar._apply
    monkeypatch.setattr(
        bg.GreedyGrammar, "_apply", lambda self, data, size: (checked.append(size), apply(self, data, size))
    )
    short_cut = [r.text for r in runtime.generate_many(requests)]
    assert 1 in checked and any(size > 1 for size in checked), checked  # accepted and rejected best tokens

    sampler = bg.BatchGenerator._sampler
    monkeypatch.setattr(bg.BatchGenerator, "_sampler", lambda self, job: (sampler(self, job)[0], None))
    masked = [r.text for r in runtime.generate_many(requests)]
    assert short_cut == masked
    assert all(text.startswith('{ "rules": [') for text in short_cut), short_cut  # the grammar held


def test_one_sequence_hits_max_tokens_while_the_others_go_on(runtime):
    results = runtime.generate_many(
        [GenerationRequest(ask(QUESTIONS[3]), greedy(3)), GenerationRequest(ask(QUESTIONS[3]), greedy(30))]
    )
    short, long = results
    assert short.finish_reason == "length" and len(short.tokens) == 3
    assert len(long.tokens) > 3 and long.tokens[:3] == short.tokens


def test_stop_strings_end_one_sequence(runtime):
    plain, stopped = runtime.generate_many(
        [
            GenerationRequest(ask(QUESTIONS[0]), greedy(30)),
            GenerationRequest(ask(QUESTIONS[0]), greedy(30), stop=(" ",)),
        ]
    )
    assert " " in plain.text.strip()
    assert stopped.finish_reason == "stop" and " " not in stopped.text
    assert plain.text.startswith(stopped.text)


def test_a_continuation_extends_plain_text_without_the_chat_template(runtime):
    """The validator's near questions: the embedded model, given a numbered list of a user's questions as
    plain text, writes one more like them (in a chat it answers "I'm ready to help." instead)."""
    listed = "Questions people asked:\n1. How do I boil an egg?\n2. How do I cook rice?\n3. How do I make pancakes?\n4."
    request = GenerationRequest([], greedy(40), stop=("\n",), continuation=listed)
    (result,) = runtime.generate_many([request])
    assert result.finish_reason == "stop" and "\n" not in result.text, result
    assert result.text.strip().startswith("How do I") and result.text.strip().endswith("?"), result.text
    assert result.prompt_tokens == len(runtime.llm.tokenize(listed.encode(), add_bos=True))


def test_a_failing_request_loses_nothing_else(runtime):
    good = [GenerationRequest(ask(q), greedy(10)) for q in QUESTIONS[:3]]
    too_long = GenerationRequest(ask("word " * 3000), greedy(10))  # beyond the 2048-token context
    bad_schema = GenerationRequest(
        ask(QUESTIONS[0]), greedy(10), json_schema={"type": "object", "$ref": "#/nope"}
    )
    missing = GenerationRequest(ask(QUESTIONS[0]), greedy(10), adapter="no-such-adapter")
    results = runtime.generate_many([good[0], too_long, good[1], bad_schema, missing, good[2]])
    alone = runtime.generate_many(good)
    failed = [results[i] for i in (1, 3, 4)]
    assert all(r.finish_reason == "error" and r.error and r.error.endswith(".") for r in failed), failed
    assert "2047" in failed[0].error and "no-such-adapter" in failed[2].error
    assert [r.tokens for r in (results[0], results[2], results[5])] == [r.tokens for r in alone]


@pytest.fixture(scope="module")
def random_adapter(runtime, model_path, tmp_path_factory):
    """A real GGUF LoRA on the embedded model (random weights, small enough to keep answers fluent)."""
    from backends.gguf_export import read_base_meta, write_lora_gguf

    meta = read_base_meta(model_path)
    rng = np.random.default_rng(0)
    layers = {}
    for stem, (out_dim, in_dim) in meta.shapes.items():
        a = rng.standard_normal((2, in_dim)).astype(np.float32) * 0.05
        b = rng.standard_normal((out_dim, 2)).astype(np.float32) * 0.05
        layers[(int(stem.split(".")[1]), stem.split(".")[2])] = (a, b)
    path = write_lora_gguf(layers, 4.0, meta, tmp_path_factory.mktemp("lora") / "random.gguf")
    runtime.load_adapter("random", path)
    yield "random"
    runtime.unload_adapter("random")


def test_requests_are_grouped_by_adapter(runtime, random_adapter):
    questions = QUESTIONS[:4]
    requests = [
        GenerationRequest(ask(q), greedy(16), adapter=random_adapter if i % 2 else None)
        for i, q in enumerate(questions)
    ]
    order = []
    results = runtime.generate_many(requests, on_result=lambda r: order.append(r.adapter))
    assert all(r.ok for r in results)
    assert order == [None, None, random_adapter, random_adapter]  # one group at a time
    assert [r.adapter for r in results] == [r.adapter for r in requests]
    # Each group ran as its own batch: the same answers as asking each group alone.
    base_alone = runtime.generate_many(requests[0::2])
    adapted_alone = runtime.generate_many(requests[1::2])
    assert [r.tokens for r in results[0::2]] == [r.tokens for r in base_alone]
    assert [r.tokens for r in results[1::2]] == [r.tokens for r in adapted_alone]
    # The adapter really served its group: the same questions on the base answer otherwise.
    unadapted = runtime.generate_many([GenerationRequest(r.messages, r.settings) for r in requests[1::2]])
    assert [r.tokens for r in unadapted] != [r.tokens for r in adapted_alone]
    # And a request alone through the adapter matches the single-stream path with that adapter.
    single, _ = complete(runtime, requests[1].messages, requests[1].settings, adapter=random_adapter)
    alone = runtime.generate_many([requests[1]])[0]
    assert alone.text == single


def resident_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) / 1024


def test_a_released_model_loads_again_with_its_adapters_and_the_same_answers(runtime, random_adapter):
    """`release` frees the model, its contexts and its adapters (the retrain's training needs the
    memory); the next call loads them again, and the base and the adapter answer as before."""
    requests = [
        GenerationRequest(ask(q), greedy(12), adapter=random_adapter if i else None)
        for i, q in enumerate(QUESTIONS[:3])
    ]
    before = [r.text for r in runtime.generate_many(requests)]
    streamed, _ = complete(runtime, requests[1].messages, requests[1].settings, adapter=random_adapter)
    loaded = resident_mb()
    runtime.release()
    assert runtime._batcher is None and runtime._llm is None
    assert loaded - resident_mb() > 80  # the model's weights (97 MB of Q4_1) and its contexts
    runtime.release()  # nothing to free: fine
    assert runtime.adapters() == [random_adapter]  # still listed; loaded again with the model
    assert (
        complete(runtime, requests[1].messages, requests[1].settings, adapter=random_adapter)[0] == streamed
    )
    runtime.release()
    assert [r.text for r in runtime.generate_many(requests)] == before


def test_an_adapter_whose_file_went_while_released_is_dropped_and_the_others_serve(
    runtime, random_adapter, tmp_path
):
    """A file deleted while the model is released (a rollback or a user's cleanup): the model loads
    again with the adapters it still has; a request for the gone one gets its one sentence."""
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(Path(runtime._adapters[random_adapter].path).read_bytes())
    runtime.load_adapter("copy", copy)
    request = GenerationRequest(ask(QUESTIONS[0]), greedy(8), adapter=random_adapter)
    before = runtime.generate_many([request])[0].text
    runtime.release()
    copy.unlink()
    gone = GenerationRequest(ask(QUESTIONS[0]), greedy(8), adapter="copy")
    kept, missing = runtime.generate_many([request, gone])
    assert kept.text == before and kept.error is None
    assert missing.finish_reason == "error" and "'copy' is not loaded" in missing.error
    assert runtime.adapters() == [random_adapter]
    runtime.unload_adapter("copy")  # gone already: nothing to do


LOOPING = "Write the word cat twenty times."  # greedy without DRY: "Cat,\n" to the token limit


def test_the_dry_penalty_breaks_a_loop_in_batches_and_in_streams(runtime):
    from uno_local.quality import repeated_lines_share

    plain, dry = (greedy(64), greedy(64, dry_multiplier=0.8))
    looping, varied = (
        runtime.generate_many([GenerationRequest(ask(LOOPING), s)])[0].text for s in (plain, dry)
    )
    assert repeated_lines_share(looping) > 0.8, looping
    assert repeated_lines_share(varied) < repeated_lines_share(looping) - 0.2, varied
    streamed = {
        d: "".join(e.delta for e in runtime.stream(ask(LOOPING), s))
        for d, s in (("plain", plain), ("dry", dry))
    }
    assert streamed["plain"] == looping  # this prompt's stream and batch agree without DRY
    assert repeated_lines_share(streamed["dry"]) < repeated_lines_share(streamed["plain"]) - 0.2, streamed


def test_the_streams_dry_processor_penalises_as_llama_cpps_chain_does(runtime):
    """The stream's processor (llama-cpp-python's hook) against llama.cpp's DRY sampler fed the same answer
    tokens: the same penalised logits, and the prompt's tokens never count as the answer's."""
    import ctypes

    import llama_cpp

    from backends.batch_generator import DryLogits, dry_sampler

    llm = runtime.llm
    prompt = runtime.tokenize("cat cat cat cat cat")
    answer = runtime.tokenize(" the cat sat on the mat. the cat sat on the")
    logits = np.random.default_rng(0).normal(size=llm.n_vocab()).astype(np.float32)
    processor = DryLogits(llm, 0.8)
    processor(prompt, logits.copy())  # the first call sees the prompt alone
    ours = processor(prompt + answer, logits.copy())

    native = dry_sampler(llama_cpp, llm._model.vocab, 0.8)
    for token in answer:
        llama_cpp.llama_sampler_accept(native, token)
    data = (llama_cpp.llama_token_data * llm.n_vocab())(
        *[llama_cpp.llama_token_data(i, float(x), 0.0) for i, x in enumerate(logits)]
    )
    array = llama_cpp.llama_token_data_array(data=data, size=llm.n_vocab(), selected=-1, sorted=False)
    llama_cpp.llama_sampler_apply(native, ctypes.byref(array))
    llama_cpp.llama_sampler_free(native)
    theirs = np.array([d.logit for d in data], dtype=np.float32)
    penalised = np.flatnonzero(theirs != logits)
    assert len(penalised) >= 1 and np.array_equal(ours, theirs)  # " mat" follows "sat on the" before
    assert runtime.tokenize(" mat")[0] in penalised
