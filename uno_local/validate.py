"""Validate: an Expert's per-epoch answers on held-out logs -> ship or not, and which epoch.

The simulation validator of UNO S8 with the deterministic judge (`judge.py`): every held-out log
scores the adapter's answer against the base model's, both judged by that log's own feedback
(the user's correction as the reference when there is one, its rules otherwise), with the length
and BLEU gates. The best epoch ships only with enough held-out logs and a win rate at or above the
threshold; otherwise the cluster goes to the Reflective path. Only a few evenly spaced epochs are
judged (`epochs_to_judge`): each judged epoch costs an export and a generated answer per held-out log.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from uno_local.judge import JudgeCase, best_epoch, judge_trial, score_margin, ship_decision, win_rate
from uno_local.train import LogData


@dataclass
class Validation:
    ship: bool
    epoch: int | None  # 1-based epoch chosen
    win_rates: dict[int, float]
    n_heldout: int
    reason: str
    trials: dict[int, list[tuple[float, float, bool]]] = field(default_factory=dict)


def epochs_to_judge(n_epochs: int, most: int) -> list[int]:
    """Pure: up to `most` evenly spaced 1-based epochs of `n_epochs`, always the last; `most` < 1: all.

    12 epochs, 4 judged -> 3, 6, 9, 12; 3 epochs -> 1, 2, 3.
    """
    if most < 1 or n_epochs <= most:
        return list(range(1, n_epochs + 1))
    return sorted({math.ceil(i * n_epochs / most) for i in range(1, most + 1)})


def judge_case(log: LogData) -> JudgeCase:
    return JudgeCase(log.query, log.answer, log.correction, tuple(log.guide))


def validate_expert(
    heldout: list[LogData],
    base_answers: list[str],
    epoch_answers: dict[int, list[str]],
    threshold: float,
    min_heldout: int,
) -> Validation:
    """Pure: answers in held-out order; `epoch_answers` maps 1-based epoch -> answers."""
    if len(heldout) < min_heldout or not epoch_answers:
        ship, reason = ship_decision(0.0, len(heldout), threshold, min_heldout)
        return Validation(False, None, {}, len(heldout), reason)
    cases = [judge_case(log) for log in heldout]
    trials = {
        epoch: [
            tuple(judge_trial(case, cand, base))
            for case, cand, base in zip(cases, answers, base_answers, strict=True)
        ]
        for epoch, answers in epoch_answers.items()
    }
    rates = {epoch: win_rate(t) for epoch, t in trials.items()}
    epoch = best_epoch(rates, {epoch: score_margin(t) for epoch, t in trials.items()})
    ship, reason = ship_decision(rates[epoch], len(heldout), threshold, min_heldout)
    if len(rates) > 1:  # what the other judged epochs did, for `uno rules` and the retrain report
        reason += "; judged " + ", ".join(f"epoch {e} {r:.2f}" for e, r in sorted(rates.items()))
    return Validation(ship, epoch, rates, len(heldout), f"epoch {epoch} {reason}", trials)
