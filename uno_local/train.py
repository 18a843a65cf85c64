"""Train: a cluster's logs -> an Expert LoRA (DPO + NLL on its pairs) or a Critic LoRA (SFT).

Pure parts: the seeded train/held-out split and the example builders. The shell runs the trainer
backend into a folder named by the hash of everything the adapter depends on, so a finished run is
reused after a crash and an unchanged cluster is never trained twice (online learning).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from uno_local.judge import follows_rules
from uno_local.pair import parting_sentence, recases, reformats
from uno_local.route import critic_prompt
from uno_local.training import TrainExample, steps_per_epoch

SPLIT_SEED = 42


@dataclass
class LogData:
    """What the loop knows about one log after distill, predict and pair."""

    message_id: int
    prompt: list[dict]  # context ending with the user's query
    query: str
    answer: str
    correction: str | None
    rules: list[str]  # distilled from this log's feedback
    predicted: list[str] = field(default_factory=list)  # the model's own rules for the query
    pair: dict | None = None  # {"chosen", "rejected", "kind", ...} or None
    user_rules: list[str] | None = None  # the user's edit of its cluster's rules (`uno rules edit`)

    @property
    def guide(self) -> list[str]:
        """The rules that steer learning from this log (revisions, judge, Critic): the user's edit
        of its cluster's rules when there is one, else its own distilled rules."""
        return self.user_rules if self.user_rules is not None else self.rules

    @property
    def judgeable(self) -> bool:
        """Whether a held-out answer to this log can be judged: by the user's correction or by rules. A
        plain thumbs-up has neither: it only trains, as an example of an answer the user liked."""
        return bool(self.guide) or bool(self.correction and self.correction.strip())


def split(
    members: list[int],
    heldout_share: float,
    min_heldout: int,
    judgeable: set[int] | None = None,
    kept_out: set[int] | frozenset[int] = frozenset(),
) -> tuple[list[int], list[int]]:
    """Sorted ids, seeded shuffle, then (train, held-out); only `judgeable` ids (default: all) are held
    out, the rest always train. Too few judgeable logs: everything trains, nothing held out.

    `kept_out` members (their rules disagree with the cluster's) neither train nor are held out. They are
    shuffled with the others and then skipped, so each keeps its place to the logs around it: a held-out
    log kept out is replaced by the next one in the shuffled order, and every other log stays on its side.
    (Shuffling only the logs that remain moved most of a 12-log cluster's held-out logs, docs/thresholds.md.)"""
    ids = sorted(m for m in members if judgeable is None or m in judgeable)
    always = sorted(m for m in members if judgeable is not None and m not in judgeable and m not in kept_out)
    random.Random(SPLIT_SEED).shuffle(ids)
    ids = [m for m in ids if m not in kept_out]
    n_held = max(min_heldout, round(heldout_share * len(ids)))
    if len(ids) - n_held < max(2, min_heldout):
        return ids + always, []
    return ids[n_held:] + always, ids[:n_held]


def expert_examples(logs: list[LogData]) -> list[TrainExample]:
    """Preference pairs (a satisfied answer is a pair with chosen == rejected: SFT).

    Corrections of form only (`pair.reformats`: the answer's own words put in a list, say):
    - when the cluster has an answer the user liked that follows the correction's rules (`follows_rules`:
      a liked list where the rules ask for a list; a liked answer of another topic that joined the
      cluster teaches nothing of the form), they do not train: the liked answers teach the form
      in the model's own words, while an answer re-cut into a form the model does not write teaches the
      edit's marks instead (with them the example scenario's fitness Expert kept the list habit on 1-3 of
      5 unseen questions at every epoch, looping "1. 1. 1.1.1..." on others; without them, on 5 of 5 at
      epochs 6-9; docs/eval.md, session 17). They still validate.
    - otherwise they train against the rejected answer's `pair.parting_sentence` only, not all of it
      (travel-format's packing Expert: 5 of 5 unseen questions at epochs 9-12, no more repetition than
      the base, against 2-4 of 5 and loops; docs/eval.md, session 18). A correction that changes only
      the case (`pair.recases`: lowercase) keeps its whole rejected answer: its words stay in place,
      and the answers part at every capital, most after the first sentence ("a melting pot of Berlin's
      history": the capitals the lowercase Expert kept, docs/eval.md, session 38)."""
    liked = [log.answer for log in logs if log.pair and log.pair["kind"] == "sft"]
    examples = []
    for log in logs:
        if not log.pair:
            continue
        chosen, rejected = log.pair["chosen"], log.pair["rejected"]
        if log.pair["kind"] == "correction" and reformats(log.answer, log.correction):
            if any(follows_rules(answer, log.guide) for answer in liked):
                continue
            if not recases(log.answer, log.correction):
                rejected = parting_sentence(chosen, rejected)
        examples.append(
            TrainExample(
                prompt=log.prompt,
                chosen=chosen,
                rejected=rejected,
                source_ids=[log.message_id],
                fitted=bool(log.pair.get("fitted")),
            )
        )
    return examples


def critic_examples(logs: list[LogData]) -> list[TrainExample]:
    """(query, draft) -> numbered suggestions; logs without rules teach nothing and are dropped."""
    return [
        TrainExample(
            prompt=[{"role": "user", "content": critic_prompt(log.query, log.answer)}],
            chosen="\n".join(f"{i}. {rule}" for i, rule in enumerate(log.guide, 1)),
            rejected=None,
            source_ids=[log.message_id],
        )
        for log in logs
        if log.guide
    ]


def with_min_steps(config, n_examples: int):
    """More epochs for a small cluster, so every adapter gets at least `config.min_steps` updates."""
    per_epoch = steps_per_epoch(n_examples, config.batch_size, config.grad_accum)
    epochs = max(config.epochs, math.ceil(config.min_steps / per_epoch))
    return config if epochs == config.epochs else dataclasses.replace(config, epochs=epochs)


def release_memory() -> None:
    """Give a finished run's tensors back to the OS: glibc keeps freed arenas mapped otherwise,
    and one retrain trains several adapters in a row (measured: RSS 8.5 GB without this)."""
    import ctypes
    import gc
    from contextlib import suppress

    gc.collect()
    with suppress(OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def train_cached(
    trainer,
    examples: list[TrainExample],
    config,
    folder: Path,
    objective: str,
    on_progress: Callable | None,
    should_stop: Callable[[], bool] | None,
    epochs_for: int | None = None,
) -> tuple[list[Path], dict]:
    """Run the trainer into `folder` unless a finished run is already there; returns (checkpoints, metrics).
    A small cluster's epochs are counted for `epochs_for` examples (all of them by default): practice
    examples (`retrain/train.practice_logs`) add steps instead of taking the logs' own."""
    done = folder / "done.json"
    if done.is_file():
        info = json.loads(done.read_text())
        return [Path(p) for p in info["checkpoints"]], {**info["metrics"], "reused": True}
    shutil.rmtree(folder, ignore_errors=True)  # a half-finished run from a crash starts over
    config = with_min_steps(config, epochs_for or len(examples))
    try:
        result = trainer.train(
            examples, config, folder, objective=objective, on_progress=on_progress, should_stop=should_stop
        )
    finally:
        release_memory()
    if result.stopped:
        from uno_local.errors import TrainingError

        raise TrainingError(
            "Training was stopped; what is deployed keeps serving. Run `uno retrain` to resume."
        )
    metrics = {k: v for k, v in result.metrics.items() if k not in ("losses", "reward_margins")}
    metrics["final_loss"] = result.metrics.get("losses", [None])[-1]
    done.write_text(json.dumps({"checkpoints": [str(p) for p in result.checkpoints], "metrics": metrics}))
    return result.checkpoints, metrics
