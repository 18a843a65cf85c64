"""TorchTrainer on the real embedded model, tiny data: losses fall, runs repeat, checkpoints per epoch."""

from __future__ import annotations

import json
import math

import pytest

from backends.torch_trainer import (
    IGNORE,
    Encoded,
    TorchTrainer,
    batch_loss,
    encode,
    encode_pairs,
    resolve_device,
)
from uno_local.config import TrainConfig
from uno_local.errors import TrainingError
from uno_local.training import TrainExample

QA = [
    ("What is the capital of France?", "Paris."),
    ("Name a primary colour.", "Red."),
    ("How many legs does a spider have?", "Eight."),
    ("What is 2 plus 3?", "Five."),
    ("Which planet is closest to the sun?", "Mercury."),
    ("What do bees make?", "Honey."),
]
SIGN_OFF = " Cheers, Uno!"


def pairs() -> list[TrainExample]:
    return [
        TrainExample([{"role": "user", "content": q}], a + SIGN_OFF, a, [i]) for i, (q, a) in enumerate(QA)
    ]


def config(**overrides) -> TrainConfig:
    base = dict(epochs=2, batch_size=3, learning_rate=2e-3, schedule="constant", threads=2, seed=7)
    return TrainConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def run(hf_base, tmp_path_factory):
    """One preference run: 6 pairs, batch 3, 2 epochs = 4 steps."""
    seen = []
    out = tmp_path_factory.mktemp("train")
    result = TorchTrainer(hf_base).train(pairs(), config(), out, on_progress=seen.append)
    return result, seen, out


@pytest.fixture(scope="module")
def tokenizer(hf_base):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(hf_base)


def test_loss_falls_and_margin_grows(run):
    result, _, _ = run
    losses = result.metrics["losses"]
    assert len(losses) == 4
    assert losses[-1] < 0.6 * losses[0]
    assert result.metrics["epoch_losses"][1] < result.metrics["epoch_losses"][0]
    assert result.metrics["reward_margins"][-1] > 0.0


def test_one_checkpoint_per_epoch_with_provenance(run):
    result, _, out = run
    assert result.checkpoints == [out / "epoch-1", out / "epoch-2"]
    assert not result.stopped
    for epoch, folder in enumerate(result.checkpoints, start=1):
        assert (folder / "adapter_config.json").is_file()
        assert (folder / "adapter_model.safetensors").is_file()
        note = json.loads((folder / "uno_train.json").read_text())
        assert note["epoch"] == epoch and note["source_ids"] == list(range(len(QA)))
    assert sorted(p.name for p in out.iterdir()) == ["epoch-1", "epoch-2"]  # no temp folders left


def test_progress_reports_every_step(run):
    result, seen, _ = run
    assert [p.step for p in seen] == [1, 2, 3, 4]
    assert [p.epoch for p in seen] == [1, 1, 2, 2]
    assert all(p.total_steps == 4 for p in seen)
    assert [p.loss for p in seen] == result.metrics["losses"]
    assert all(p.tokens_per_s > 0 for p in seen) and seen[-1].eta_s == 0


def test_same_seed_repeats_and_a_stop_keeps_finished_epochs(run, hf_base, tmp_path):
    seen = []
    result = TorchTrainer(hf_base).train(
        pairs(), config(), tmp_path, on_progress=seen.append, should_stop=lambda: len(seen) >= 2
    )
    assert result.stopped and result.checkpoints == [tmp_path / "epoch-1"]
    assert result.metrics["losses"] == pytest.approx(run[0].metrics["losses"][:2], rel=1e-6)


def test_other_seed_gives_other_losses(run, hf_base, tmp_path):
    seen = []
    result = TorchTrainer(hf_base).train(
        pairs(), config(seed=8), tmp_path, on_progress=seen.append, should_stop=lambda: len(seen) >= 2
    )
    # Step 1 runs before any update (LoRA B starts at zero); step 2 depends on the seeded init and order.
    assert result.metrics["losses"][1] != pytest.approx(run[0].metrics["losses"][1], rel=1e-6)


def test_stop_before_the_first_epoch_raises_and_saves_nothing(hf_base, tmp_path):
    with pytest.raises(TrainingError, match="before its first epoch finished"):
        TorchTrainer(hf_base).train(pairs(), config(), tmp_path, should_stop=lambda: True)
    assert list(tmp_path.iterdir()) == []


def test_bad_input_is_refused(hf_base, tmp_path):
    with pytest.raises(TrainingError, match="no training examples"):
        TorchTrainer(hf_base).train([], config(), tmp_path)
    with pytest.raises(TrainingError, match="Unknown training objective"):
        TorchTrainer(hf_base).train(pairs(), config(), tmp_path, objective="dpo")
    with pytest.raises(TrainingError, match="not available"):
        TorchTrainer(hf_base).train(pairs(), config(device="cuda"), tmp_path)


def test_device_auto_prefers_cuda_then_mps(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(TrainingError, match="Unknown training device"):
        resolve_device("tpu")


def test_encode_masks_the_prompt_and_truncates(tokenizer):
    prompt = [{"role": "user", "content": "one two three four five six"}]
    full = encode(tokenizer, prompt, "Paris.", 1000, 1000)
    answer = full.input_ids[full.n_prompt :]
    assert tokenizer.decode(answer) == "Paris.<|im_end|>\n"
    assert full.labels == [IGNORE] * full.n_prompt + answer
    cut = encode(tokenizer, prompt, "Paris.", 5, 2)
    assert (
        cut.input_ids == full.input_ids[full.n_prompt - 5 : full.n_prompt] + answer[:2]
    )  # last prompt, first answer


def test_chosen_equal_to_rejected_is_sft_only(tokenizer):
    same = TrainExample([{"role": "user", "content": "Hi"}], "Hello.", "Hello.")
    none = TrainExample([{"role": "user", "content": "Hi"}], "Hello.", None)
    real = TrainExample([{"role": "user", "content": "Hi"}], "Hello.", "Go away.")
    encoded = encode_pairs(tokenizer, [same, none, real], TrainConfig(), "preference")
    assert [r is None for _, r in encoded] == [True, True, False]
    assert all(r is None for _, r in encode_pairs(tokenizer, [real], TrainConfig(), "sft"))


def _lora_b_grads(model):
    return [p.grad for n, p in model.named_parameters() if "lora_B" in n]


def test_dpo_gradient_is_zero_when_chosen_equals_rejected(hf_base, tokenizer):
    trainer = TorchTrainer(hf_base)
    _, model, device = trainer.load(config())
    model.eval()  # no dropout: the two copies of a duplicated answer must forward identically
    chosen = encode(tokenizer, [{"role": "user", "content": "Hi"}], "Hello there.", 64, 16)
    rejected = encode(tokenizer, [{"role": "user", "content": "Hi"}], "Go away.", 64, 16)
    for pair, expect_zero in (((chosen, None), True), ((chosen, chosen), True), ((chosen, rejected), False)):
        model.zero_grad(set_to_none=False)
        parts = batch_loss(model, [pair], 0.1, "preference", tokenizer.pad_token_id, device)
        if pair[1] is None:
            assert not parts.dpo.requires_grad
        else:
            parts.dpo.backward()
        norm = sum(float(g.abs().sum()) for g in _lora_b_grads(model))
        assert (norm < 1e-6) == expect_zero
        if expect_zero:
            assert float(parts.dpo) == pytest.approx(math.log(2.0), abs=1e-6)


def test_sft_loss_counts_only_completion_tokens(hf_base, tokenizer):
    import torch
    import torch.nn.functional as F

    _, model, device = TorchTrainer(hf_base).load(config())
    model.eval()
    ids = tokenizer("The sky is blue and the grass is green", add_special_tokens=False)["input_ids"]
    n_prompt = 5
    seq = Encoded(ids, [IGNORE] * n_prompt + ids[n_prompt:], n_prompt)
    with torch.no_grad():
        nll = float(batch_loss(model, [(seq, None)], 0.1, "sft", tokenizer.pad_token_id, device).nll)
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
    per_token = F.cross_entropy(logits, torch.tensor(ids[1:]), reduction="none")
    assert nll == pytest.approx(float(per_token[n_prompt - 1 :].mean()), rel=1e-5)
    assert nll != pytest.approx(float(per_token.mean()), rel=1e-3)
