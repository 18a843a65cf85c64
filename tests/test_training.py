"""The backend-neutral trainer helpers: input checks, step counts, the learning-rate schedule, the reference cache."""

from __future__ import annotations

import math

import pytest

from uno_local.config import TrainConfig
from uno_local.errors import TrainingError
from uno_local.training import (
    ReferenceCache,
    TrainExample,
    answer_window,
    epoch_dir,
    habit_weights,
    lora_layer_indices,
    lr_factor,
    shared_prefix,
    steps_per_epoch,
    validate_inputs,
)


def ex(**kw) -> TrainExample:
    return TrainExample(**{"prompt": [{"role": "user", "content": "q"}], "chosen": "a", **kw})


def test_sft_examples_are_those_without_a_different_rejected():
    assert ex().is_sft and ex(rejected="a").is_sft
    assert not ex(rejected="b").is_sft


@pytest.mark.parametrize(
    ("chosen", "rejected", "extends"),
    [
        ("Feed twice a day.\n\nPurr-fect.", "Feed twice a day.", True),  # a sign-off appended
        ("Feed twice a day.\n\nPurr-fect.", "Feed twice a day.\n", True),  # trailing space is no ending
        ("Feed twice a day.\n\nPurr-fect.", "Feed twice a day. Bye!", False),  # an ending replaced
        ("Feed twice a day.", "Feed twice a day.\n\nPurr-fect.", False),  # an ending removed
        ("Feed twice a day.", "Feed twice a day.  ", False),  # nothing added
        ("Feed twice a day.", "Feed twice a day.", False),  # SFT
        ("Feed twice a day.", None, False),
        ("Purr-fect.", "", False),
    ],
)
def test_a_chosen_answer_extends_its_rejected_one_only_when_text_is_appended(chosen, rejected, extends):
    assert ex(chosen=chosen, rejected=rejected, fitted=True).extends_rejected is extends
    # A pair not cut to the answer budget learns its rejected answer whole, as it always did.
    assert ex(chosen=chosen, rejected=rejected).extends_rejected is False
    assert ex(chosen=chosen, rejected=rejected).appends is extends  # what `habit_share` weighs, cut or not


def test_shared_prefix_counts_the_leading_tokens_both_answers_have():
    assert shared_prefix([1, 2, 3, 4], [1, 2, 9]) == 2
    assert shared_prefix([1, 2, 3], [1, 2, 3, 7]) == 3
    assert shared_prefix([5], [1]) == 0


@pytest.mark.parametrize(
    ("n", "batch", "accum", "steps"), [(6, 3, 1, 2), (7, 3, 1, 3), (7, 3, 2, 2), (1, 4, 1, 1), (40, 4, 8, 2)]
)
def test_steps_per_epoch(n, batch, accum, steps):
    assert steps_per_epoch(n, batch, accum) == steps


@pytest.mark.parametrize(
    ("n_layers", "lora_layers", "expected"),
    [
        (30, 16, list(range(14, 30))),
        (30, 0, list(range(30))),
        (30, 30, list(range(30))),
        (4, 9, [0, 1, 2, 3]),
    ],
)
def test_lora_goes_on_the_last_layers(n_layers, lora_layers, expected):
    assert lora_layer_indices(n_layers, lora_layers) == expected


def test_schedules():
    assert [lr_factor(s, 4, 0, "constant") for s in range(4)] == [1.0] * 4
    assert [lr_factor(s, 4, 0, "linear") for s in range(4)] == [1.0, 0.75, 0.5, 0.25]
    cosine = [lr_factor(s, 4, 0, "cosine") for s in range(4)]
    assert cosine == pytest.approx(
        [1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2]
    )
    # Two warmup steps ramp up linearly before the decay starts at the peak.
    assert [lr_factor(s, 6, 2, "linear") for s in range(4)] == pytest.approx([1 / 3, 2 / 3, 1.0, 0.75])


@pytest.mark.parametrize(
    ("examples", "config", "objective", "message"),
    [
        ([], TrainConfig(), "preference", "no training examples"),
        ([ex()], TrainConfig(), "kto", "Unknown training objective"),
        ([ex()], TrainConfig(schedule="step"), "sft", "Unknown learning-rate schedule"),
        ([ex()], TrainConfig(batch_size=0), "sft", "train.batch_size must be at least 1"),
        ([ex()], TrainConfig(warmup_ratio=1.0), "sft", "warmup_ratio"),
        ([ex()], TrainConfig(precision="fp16"), "sft", "Unknown training precision"),
        ([ex()], TrainConfig(lora_layers=-1), "sft", "train.lora_layers must be 0"),
        (
            [ex(prompt=[{"role": "assistant", "content": "x"}])],
            TrainConfig(),
            "sft",
            "example 0 has no prompt",
        ),
        ([ex(), ex(chosen="  ")], TrainConfig(), "sft", "example 1 has an empty answer"),
    ],
)
def test_bad_inputs_are_refused_with_one_sentence(examples, config, objective, message):
    with pytest.raises(TrainingError, match=message):
        validate_inputs(examples, config, objective)


def test_valid_inputs_pass_and_epochs_have_stable_folders(tmp_path):
    validate_inputs([ex(), ex(rejected="b")], TrainConfig(), "preference")
    assert epoch_dir(tmp_path, 2) == tmp_path / "epoch-2"


def test_the_interface_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, uno_local.training; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_reference_cache_stores_once_and_reports_per_token_means():
    cache = ReferenceCache()
    assert cache.logp_means() == {}  # an SFT run forwards no reference
    assert cache.missing([4, 9]) == [0, 1]
    cache.store([4, 9], [-6.0, -8.0, -3.0, -2.0], [3, 4, 3, 1])  # chosen of 4, 9, then rejected of 4, 9
    assert cache.missing([9, 5, 4]) == [1]
    assert cache.lookup([9, 4]) == [-8.0, -6.0, -2.0, -3.0]
    means = cache.logp_means()  # per pair: chosen -2.0 and -2.0, rejected -1.0 and -2.0
    assert means == {"reference_logp_chosen": -2.0, "reference_logp_rejected": -1.5}


@pytest.mark.parametrize(
    "chosen, rejected, limit, start",
    [
        ([1, 2, 3], [1, 2, 4], 8, 0),  # both fit: learn everything
        (list(range(20)), None, 8, 0),  # SFT: the head
        (list(range(20)), [99] + list(range(1, 20)), 8, 0),  # differs at once: the head
        (list(range(20)) + [7, 7], list(range(20)), 8, 14),  # an added ending: the window ends at it
        (list(range(20)), list(range(10)) + [0] * 10, 8, 8),  # differs at 10: starts 8 // 4 before it
        (list(range(5)) + [9] * 15, list(range(20)), 8, 3),
    ],
)
def test_answer_window_keeps_where_a_pair_differs(chosen, rejected, limit, start):
    assert answer_window(chosen, rejected, limit) == start
    if rejected is not None and chosen != rejected:  # the learned tokens of a real pair never coincide
        assert chosen[start : start + limit] != rejected[start : start + limit]


@pytest.mark.parametrize(
    ("n", "parted", "share", "expected"),
    [
        (20, 18, 0.0, None),  # off
        (20, 0, 0.5, None),  # the answers part at once: the habit is already the whole answer
        (20, 20, 0.5, None),  # nothing past the shared part (an SFT-like pair)
        (20, 8, 0.5, None),  # 12 of 20 past it: already at least half
        (20, 18, 0.5, [10 / 18] * 18 + [5.0] * 2),  # a two-token sign-off carries half of the answer
        (10, 12, 0.5, None),  # parted beyond the learned window: nothing of the habit in it
    ],
)
def test_habit_weights_give_the_tokens_past_the_shared_part_their_share(n, parted, share, expected):
    weights = habit_weights(n, parted, share)
    assert weights == (None if expected is None else pytest.approx(expected))
    if weights is not None:
        assert len(weights) == n and math.fsum(weights) == pytest.approx(n)  # the answer weighs the same
        assert math.fsum(weights[parted:]) / n == pytest.approx(share)
