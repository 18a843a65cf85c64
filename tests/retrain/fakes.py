"""Protocol-following fakes for the runtime, the embedder, the trainer, the GGUF exporter and the parity
checker, so `Retrain` itself runs in well under a second on a real store and a real registry.

The fakes are simple but honest: the runtime's revisions follow the rules they are given, an adapter
answers with the habit its training data showed (a numbered list, or the most common last line of its
chosen answers), and
the embedder is a hashed bag of words (same words, same direction). Each can be told to fail.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uno_local.distill import PREDICT_SYSTEM
from uno_local.retrain.context import Tools
from uno_local.route import critic_prompt
from uno_local.runtime import ChatStats, GenerationResult, StreamEvent
from uno_local.text import content_words
from uno_local.training import TrainProgress, TrainResult

PREDICTED = ["Give the steps as a list.", "End with a short cooking tip."]  # the model's prior, any query


CRITIQUE = "critique:\n"  # what a fake Critic's checkpoint starts with
CRITIC_INSTRUCTION = critic_prompt("", "").split("\n", 1)[0]


class Failure(RuntimeError):
    """What a fake raises when told to fail."""


def base_answer(query: str) -> str:
    """What the fake base model answers to `query` (the logs' original answers are the same)."""
    return f"To {query.lower().rstrip('?')}, follow the usual steps and check as you go."


def follow(answer: str, suggestions: list[str]) -> str:
    """A revision that follows the rules it can: an ending to add, a numbered list."""
    for rule in suggestions:
        if m := re.search(r'end the answer with "([^"]+)"', rule, re.I):
            answer = f"{answer}\n{m.group(1)}"
        elif "numbered list" in rule.lower():
            parts = re.split(r", | and ", answer)  # three items: a list the judge counts as one
            answer = "\n".join(f"{i}. {part}" for i, part in enumerate(parts, 1))
    return answer


class FakeRuntime:
    """Follows `uno_local.runtime.Runtime`; `fail` names a kind of call to fail on
    ("distill", "predict", "revise", "answer"; "adapter": an answer through an adapter)."""

    model_name = "fake.gguf"
    model_path = Path("fake.gguf")

    def __init__(self) -> None:
        self.calls: Counter = Counter()
        self.batches: list[list[str]] = []  # per generate_many call, the kinds of its requests
        self.budgets: list[set[int]] = []  # per generate_many call, its requests' max_tokens
        self.decoding: set[tuple[str, float]] = set()  # (kind, dry_multiplier) of every request
        self.last_kind = ""
        self.loaded: dict[str, str] = {}  # adapter name -> what it learned
        self.fail: str | None = None
        self.revises = True  # False: a revision gives back the answer it was asked to revise
        self.loops_on: tuple[str, ...] = ()  # questions an adapter answers with a loop
        self.model_loaded = True  # False after `release`, until the next generation loads it again
        self.writes: str | None = None  # what a continuation writes (None: one more like the last listed)
        self.asked: list[tuple[str, str | None]] = []  # (question, adapter) of every answer

    def stream(self, messages, settings, *, adapter=None, json_schema=None):
        system = messages[0]["content"] if messages[0]["role"] == "system" else ""
        if json_schema is not None:
            kind = "predict" if system == PREDICT_SYSTEM else "distill"
        else:
            kind = "revise" if "\n## Suggestion\n" in messages[-1]["content"] else "answer"
        self.calls[kind] += 1
        self.last_kind = kind
        if kind == "answer":
            self.asked.append((messages[-1]["content"], adapter))
        self.model_loaded = True
        if self.fail == kind or (self.fail == "adapter" and adapter is not None):
            raise Failure(f"the runtime failed during {kind}")
        return self._events(self._reply(kind, messages[-1]["content"], adapter))

    def _reply(self, kind: str, content: str, adapter: str | None) -> str:
        if kind == "distill":
            return '{"rules": []}'  # the distiller then falls back to the feedback's own sentences
        if kind == "predict":
            return json.dumps({"rules": PREDICTED})
        if kind == "revise":
            answer = content.split("## Initial Answer\n\n", 1)[1].split("\n\n## Suggestion", 1)[0]
            block = content.split("## Suggestion\n\n", 1)[1].split("\n\n## User Question", 1)[0]
            if not self.revises:
                return answer
            return follow(answer, [re.sub(r"^\d+\.\s*", "", line) for line in block.splitlines()])
        learned = self.loaded.get(adapter, "") if adapter else ""
        if learned and any(q in content for q in self.loops_on):
            return "Happy cooking!\n\n" * 12
        if learned.startswith(CRITIQUE):  # a Critic: its critique for a critic prompt, else a plain answer
            return (
                learned[len(CRITIQUE) :] if content.startswith(CRITIC_INSTRUCTION) else base_answer(content)
            )
        return follow(base_answer(content), learned.splitlines())

    def generate_many(self, requests, *, on_result=None, n_parallel=8):
        """One request after another through `stream` (the real runtime batches them); `batches` keeps
        each call's request kinds."""
        self.batches.append([])
        self.budgets.append({r.settings.max_tokens for r in requests})
        results = []
        for index, r in enumerate(requests):
            if r.continuation is not None:  # a list of the user's questions: a new one on the last's topic
                word = sorted(content_words(r.continuation.splitlines()[-2]))[-1]
                self.calls["continue"] += 1
                self.last_kind = "continue"
                events = list(
                    self._events(
                        self.writes if self.writes is not None else f" Why do people talk about {word}?"
                    )
                )
            else:
                events = list(
                    self.stream(r.messages, r.settings, adapter=r.adapter, json_schema=r.json_schema)
                )
            stats = events[-1].stats
            result = GenerationResult(
                index,
                text="".join(e.delta for e in events),
                tokens=list(range(stats.completion_tokens)),
                prompt_tokens=stats.prompt_tokens,
                adapter=r.adapter,
            )
            self.batches[-1].append(self.last_kind)
            self.decoding.add((self.last_kind, r.settings.dry_multiplier))
            results.append(result)
            if on_result is not None:
                on_result(result)
        return results

    @staticmethod
    def _events(text: str):
        for part in re.findall(r"\S+\s*", text):
            yield StreamEvent(delta=part)
        yield StreamEvent(stats=ChatStats(1, len(text.split()), 1.0, 2.0))

    def tokenize(self, text: str) -> list[int]:
        return list(range(len(text.split())))

    def load_adapter(self, name: str, path: Path) -> None:
        self.loaded[name] = Path(path).read_text()

    def unload_adapter(self, name: str) -> None:
        self.loaded.pop(name, None)

    def adapters(self) -> list[str]:
        return sorted(self.loaded)

    def set_threads(self, n) -> None:
        pass

    def release(self) -> None:
        self.calls["release"] += 1
        self.model_loaded = False

    def close(self) -> None:
        pass


# Words a real sentence embedder would place near each other: each topic gets a direction of its own.
TOPICS = [
    {"boil", "egg", "cook", "pasta", "roast", "chicken", "bake", "bread", "fry", "rice", "steam", "broccoli",
     "grill", "fish", "poach", "soup", "toast", "omelette", "cooking"},
    {"plant", "tomatoes", "water", "orchid", "prune", "roses", "grow", "basil", "repot", "cactus", "mulch",
     "garden", "compost", "leaves", "sow", "carrots", "weed", "lawn", "feed", "hydrangeas", "gardening"},
]  # fmt: skip


class FakeEmbedder:
    """Follows `uno_local.embedding.Embedder`: a hashed bag of content words, where a topic word also
    points along its topic's direction; unit rows. After `fail_after` calls it fails (None: never)."""

    dim = 64

    def __init__(self) -> None:
        self.calls = 0
        self.fail_after: int | None = None

    def encode(self, texts: list[str]) -> np.ndarray:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise Failure("the embedder failed")
        self.calls += 1
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, text in enumerate(texts):
            for w in content_words(text) or {"<empty>"}:
                out[i, 2 + int(hashlib.sha256(w.encode()).hexdigest(), 16) % (self.dim - 2)] += 1.0
                for axis, topic in enumerate(TOPICS):
                    out[i, axis] += 2.0 * (w in topic)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


class FakeTrainer:
    """Follows `uno_local.training.Trainer`: a checkpoint folder per epoch holding the examples it saw
    and what it "learned", as rules `follow` applies: a numbered list when most chosen answers are one,
    and the most common last line as an ending when most share it (nothing when `learns` is False). `fail_on` = the n-th `train` call (1-based) fails."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, list]] = []  # (objective, examples) per call
        self.epochs: list[int] = []  # per call, the epochs it was asked for
        self.fail_on: int | None = None
        self.learns = True
        self.runtime: FakeRuntime | None = None  # the chat model's runtime, to see whether it is loaded
        self.beside_the_chat_model: list[bool] = []  # per call: whether that model was loaded

    def train(self, examples, config, out_dir, *, objective="preference", on_progress=None, should_stop=None):
        self.runs.append((objective, examples))
        self.epochs.append(config.epochs)
        self.beside_the_chat_model.append(self.runtime is not None and self.runtime.model_loaded)
        if self.fail_on == len(self.runs):
            raise Failure("the trainer failed")
        taught = [e.chosen for e in examples if objective == "sft" or not e.is_sft]
        endings = Counter(chosen.splitlines()[-1] for chosen in taught)
        habits = []
        if taught and self.learns:
            if 2 * sum(chosen.startswith("1. ") for chosen in taught) > len(taught):
                habits.append("Answer as a numbered list.")
            ending, count = endings.most_common(1)[0]
            if not re.match(r"\d+\. ", ending) and 2 * count > len(taught):
                habits.append(f'End the answer with "{ending}".')
        learned = "\n".join(habits)
        if objective == "sft" and taught and self.learns and all(c.startswith("1. ") for c in taught):
            learned = CRITIQUE + Counter(taught).most_common(1)[0][0]  # a Critic learns its critique
        ckpts = []
        for epoch in range(1, config.epochs + 1):
            ckpt = Path(out_dir) / f"epoch-{epoch}"
            ckpt.mkdir(parents=True)
            (ckpt / "examples.json").write_text(json.dumps([e.chosen for e in examples]))
            (ckpt / "learned.txt").write_text(learned)
            ckpts.append(ckpt)
            if on_progress:
                on_progress(TrainProgress(epoch, config.epochs, epoch, 1.0 / epoch, 0.1, 100.0, 0.0))
        metrics = {"losses": [1.0], "tokens_per_s": 100.0, "seconds": 0.5}
        if objective == "preference":
            metrics |= {"reference_logp_chosen": -2.0, "reference_logp_rejected": -1.5}
        return TrainResult(ckpts, metrics)


@dataclass
class ParityResult:
    passes_: bool = True
    error_ratio: float = 0.1
    top1_agreement: float = 1.0

    def passes(self) -> bool:
        return self.passes_


class FakeParity:
    """Follows `backends.parity.ParityChecker`'s `check` and `close`."""

    def __init__(self, owner: Fakes) -> None:
        self.owner = owner

    def check(self, ckpt: Path, gguf: Path) -> ParityResult:
        if self.owner.parity_fails:
            raise Failure("the parity check failed")
        return ParityResult()

    def close(self) -> None:
        pass


class Fakes:
    """Every fake of one test, and the `Tools` that hand them to `Retrain`."""

    def __init__(self) -> None:
        self.runtime, self.embedder, self.trainer = FakeRuntime(), FakeEmbedder(), FakeTrainer()
        self.trainer.runtime = self.runtime
        self.export_fails = False
        self.parity_fails = False
        self.parity_beside_the_chat_model: list[bool] = []  # per checker opened: was that model loaded
        self.exports = 0

    def export(self, peft_dir: Path, model_path: Path, target: Path) -> None:
        if self.export_fails:
            raise Failure("the export failed")
        self.exports += 1
        target.write_text((Path(peft_dir) / "learned.txt").read_text())  # the "GGUF" carries the lesson

    def tools(self) -> Tools:
        return Tools(lambda *a: self.trainer, self.export, self.open_parity)

    def open_parity(self, *args) -> FakeParity:
        self.parity_beside_the_chat_model.append(self.runtime.model_loaded)
        return FakeParity(self)

    def heal(self) -> None:
        """Nothing fails any more."""
        self.runtime.fail, self.embedder.fail_after, self.trainer.fail_on = None, None, None
        self.export_fails = self.parity_fails = False


COOKING = [
    "boil an egg",
    "cook pasta",
    "roast a chicken",
    "bake bread",
    "fry rice",
    "steam broccoli",
    "grill fish",
    "poach an egg",
    "make soup",
    "toast bread",
]
GARDEN = [
    "plant tomatoes",
    "water an orchid",
    "prune roses",
    "grow basil",
    "repot a cactus",
    "mulch a garden",
    "compost leaves",
    "sow carrots",
    "weed a lawn",
    "feed hydrangeas",
]
SIGN_OFF = "Happy cooking!"


def add_log(app, query: str, *, correction: str | None = None, comment: str | None = None) -> int:
    """One answered turn with feedback; returns the answer's message id."""
    store = app.store
    cid = store.new_conversation()
    store.add_message(cid, "user", f"How do I {query}?")
    answer_id = store.start_answer(cid, model="fake.gguf")
    store.finish_answer(answer_id, base_answer(f"How do I {query}?"))
    store.set_feedback(answer_id, correction=correction, comment=comment)
    return answer_id


def add_cooking(app, queries=COOKING) -> list[int]:
    """Corrections that add a sign-off: an Expert learns it."""
    return [add_log(app, q, correction=base_answer(f"How do I {q}?") + f"\n{SIGN_OFF}") for q in queries]


def add_garden(app, queries=GARDEN) -> list[int]:
    """Comments asking for a numbered list: revisions make the pairs."""
    return [add_log(app, q, comment="Answer as a numbered list.") for q in queries]
