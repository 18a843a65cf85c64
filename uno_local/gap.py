"""Gap stage: feedback-rule and predicted-rule embeddings -> cognitive gap per log and per cluster.

UNO-reference S6 with the on-device substitute of its §9: the novelty of a feedback rule is
1 - its best cosine match among the rules the model predicted from the query alone; a log's gap is
the minimum over its feedback rules (high only when *every* rule was unforeseen); a cluster's gap is
the mean over its eligible logs. Also the model-intrinsic gap (the base model's log-probability
margin).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0.0, 1.0, norms)


def rule_novelty(feedback_rule_vecs: np.ndarray, predicted_rule_vecs: np.ndarray) -> np.ndarray:
    """1 - max cosine of each feedback rule against the predicted rules, shape (n_feedback,).

    Values lie in [0, 2] (0: the model predicted this rule verbatim). With no predicted rules every
    feedback rule is fully novel (1.0); `log_gap` treats such logs as not eligible instead.
    """
    fb = np.asarray(feedback_rule_vecs, dtype=np.float64)
    pred = np.asarray(predicted_rule_vecs, dtype=np.float64)
    if fb.size == 0:
        return np.zeros(0)
    fb = _unit_rows(fb)
    if pred.size == 0:
        return np.ones(fb.shape[0])
    return 1.0 - (fb @ _unit_rows(pred).T).max(axis=1)


def is_eligible(feedback_rule_vecs: np.ndarray, predicted_rule_vecs: np.ndarray) -> bool:
    """A log counts for the gap only when it has feedback rules and predicted rules (reference S6)."""
    return np.asarray(feedback_rule_vecs).size > 0 and np.asarray(predicted_rule_vecs).size > 0


def log_gap(feedback_rule_vecs: np.ndarray, predicted_rule_vecs: np.ndarray) -> float | None:
    """Minimum novelty over the log's feedback rules; None when the log is not eligible."""
    if not is_eligible(feedback_rule_vecs, predicted_rule_vecs):
        return None
    return float(rule_novelty(feedback_rule_vecs, predicted_rule_vecs).min())


def cluster_gap(log_gaps: Iterable[float | None]) -> float:
    """Mean of the eligible logs' gaps (None = not eligible); 0.0 when no log is eligible."""
    eligible = [g for g in log_gaps if g is not None]
    return float(np.mean(eligible)) if eligible else 0.0


def is_high_gap(gap: float, threshold: float) -> bool:
    """High gap (Critic / Reflective path) at or above the threshold, as the reference's `>=`."""
    return gap >= threshold


def mean_logprob(token_logprobs: Sequence[float]) -> float:
    """Mean per-token log-probability of one answer."""
    values = np.asarray(token_logprobs, dtype=np.float64)
    if values.size == 0:
        raise ValueError("mean_logprob needs at least one token log-probability.")
    return float(values.mean())


def intrinsic_gap(logp_chosen: Sequence[float] | float, logp_rejected: Sequence[float] | float) -> float:
    """Model-intrinsic gap: mean per-token log-prob of the rejected (the model's own) answer minus that
    of the chosen answer, under the base model. Larger = the user's preferred answer is less
    natural to the model = a bigger gap; negative = the model already prefers the chosen answer.

    Each argument is the per-token log-probabilities of one answer, or its precomputed mean.
    """

    def mean(value: Sequence[float] | float) -> float:
        return float(value) if np.isscalar(value) else mean_logprob(value)

    return mean(logp_rejected) - mean(logp_chosen)
