"""Gap arithmetic on fixed vectors: novelty, per-log minimum, cluster mean, thresholds, the intrinsic gap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from uno_local.gap import (
    cluster_gap,
    intrinsic_gap,
    is_eligible,
    is_high_gap,
    log_gap,
    mean_logprob,
    rule_novelty,
)

E1, E2, E3 = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]
DIAG = [1.0, 1.0, 0.0]  # cos 1/sqrt(2) with E1 and E2


@pytest.mark.parametrize(
    "feedback, predicted, expected",
    [
        ([E1], [E1], [0.0]),  # predicted verbatim
        ([E1], [E2, E3], [1.0]),  # orthogonal to every prediction
        ([E1], [[-1.0, 0.0, 0.0]], [2.0]),  # opposite
        ([DIAG], [E1, E3], [1 - 1 / math.sqrt(2)]),  # best match counts, unnormalised input
        ([E1, E3], [E1, DIAG], [0.0, 1.0]),
        ([[2.0, 0.0, 0.0]], [[5.0, 0.0, 0.0]], [0.0]),  # lengths do not matter
        ([E1, E2], [], [1.0, 1.0]),  # nothing predicted: fully novel
        ([], [E1], []),
    ],
)
def test_rule_novelty(feedback, predicted, expected):
    got = rule_novelty(np.array(feedback).reshape(-1, 3), np.array(predicted).reshape(-1, 3))
    assert np.allclose(got, expected)


@pytest.mark.parametrize(
    "feedback, predicted, expected",
    [
        ([E1, E3], [E1], 0.0),  # one foreseen rule is enough to make the log low-gap (minimum)
        ([E2, E3], [E1], 1.0),  # every rule unforeseen
        ([DIAG, E3], [E1], 1 - 1 / math.sqrt(2)),
        ([], [E1], None),  # no feedback rules: not eligible
        ([E1], [], None),  # no predicted rules: not eligible
    ],
)
def test_log_gap_is_minimum_over_feedback_rules(feedback, predicted, expected):
    fb, pred = np.array(feedback).reshape(-1, 3), np.array(predicted).reshape(-1, 3)
    assert is_eligible(fb, pred) == (expected is not None)
    got = log_gap(fb, pred)
    assert got == pytest.approx(expected) if expected is not None else got is None


@pytest.mark.parametrize(
    "gaps, expected",
    [
        ([0.2, 0.4, 0.9], 0.5),
        ([0.2, None, 0.4], pytest.approx(0.3)),  # ineligible logs do not count
        ([None, None], 0.0),  # no eligible log: 0, as the reference
        ([], 0.0),
    ],
)
def test_cluster_gap_is_mean_over_eligible_logs(gaps, expected):
    assert cluster_gap(gaps) == expected


@pytest.mark.parametrize(
    "gap, threshold, expected",
    [(0.55, 0.55, True), (0.549, 0.55, False), (0.9, 0.55, True), (0.0, 0.0, True)],
)
def test_is_high_gap_is_inclusive(gap, threshold, expected):
    assert is_high_gap(gap, threshold) is expected


@pytest.mark.parametrize(
    "chosen, rejected, expected",
    [
        ([-2.0, -4.0], [-1.0, -1.0], 2.0),  # the model finds the user's answer less likely: positive gap
        ([-1.0], [-3.0, -1.0], -1.0),  # the model already prefers the chosen answer: negative
        (-1.5, -1.5, 0.0),  # precomputed means
        ([-0.5, -0.5, -0.5], -2.0, -1.5),  # per-token means, not sums: length does not matter
    ],
)
def test_intrinsic_gap_sign_and_means(chosen, rejected, expected):
    assert intrinsic_gap(chosen, rejected) == pytest.approx(expected)


def test_mean_logprob_needs_tokens():
    assert mean_logprob([-1.0, -3.0]) == -2.0
    with pytest.raises(ValueError, match="at least one token"):
        intrinsic_gap([], [-1.0])
