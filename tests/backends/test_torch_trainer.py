"""TorchTrainer's whole runs on the real embedded model, tiny data: losses fall, runs repeat, checkpoints
per epoch, cached reference log-probs and the frozen prefix change no loss, the base model's answer
log-probs reported, and a quiet retrain path. How pairs are encoded and one micro-batch's loss and
gradients are computed: test_torch_loss.py."""

from __future__ import annotations

import json
import warnings

import pytest

import backends.torch_trainer as torch_trainer
from backends.torch_trainer import Encoded, ReferenceLogps, TorchTrainer, encode, resolve_device
from tests.backends.torch_training_data import QA, config, pairs
from uno_local.errors import TrainingError
from uno_local.training import TrainExample


@pytest.fixture(scope="module")
def run(hf_base, tmp_path_factory):
    """One preference run: 6 pairs, batch 3, 2 epochs = 4 steps."""
    seen = []
    out = tmp_path_factory.mktemp("train")
    result = TorchTrainer(hf_base).train(pairs(), config(), out, on_progress=seen.append)
    return result, seen, out


def test_loss_falls_and_margin_grows(run):
    result, _, _ = run
    losses = result.metrics["losses"]
    assert len(losses) == 4
    assert losses[-1] < 0.6 * losses[0]
    assert result.metrics["epoch_losses"][1] < result.metrics["epoch_losses"][0]
    assert result.metrics["reward_margins"][-1] > 0.0


def test_bf16_autocast_trains_like_fp32_from_the_same_start(run, hf_base, tmp_path):
    """bf16 forwards (fp32 weights): the reference still equals the policy at step 1 (zero margin), the
    first loss is fp32's to bf16 rounding, and the loss falls as in fp32."""
    import torch

    from backends.torch_precision import forward_dtype

    assert forward_dtype("cpu", "fp32") is None and forward_dtype("mps", "auto") is None
    assert forward_dtype("cpu", "bf16") is torch.bfloat16
    fp32, _, _ = run
    seen = []
    result = TorchTrainer(hf_base).train(pairs(), config(precision="bf16"), tmp_path, on_progress=seen.append)
    assert result.metrics["precision"] == "bf16" and fp32.metrics["precision"] == "fp32"
    assert seen[0].reward_margin == pytest.approx(0.0, abs=1e-6)
    assert result.metrics["losses"][0] == pytest.approx(fp32.metrics["losses"][0], rel=0.02)
    assert result.metrics["losses"][0] != fp32.metrics["losses"][0]  # autocast really ran
    assert result.metrics["losses"][-1] < 0.6 * result.metrics["losses"][0]


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


def test_lora_weights_sit_on_the_last_layers_when_asked(run, hf_base, tmp_path):
    """By default every layer gets LoRA (PEFT's own default: no layers_to_transform); lora_layers = 16
    puts it on the last 16 of the 30, and the checkpoint and its config say so."""
    from safetensors.numpy import load_file

    def layers_of(folder):
        weights = load_file(folder / "adapter_model.safetensors")
        return sorted({int(k.split(".layers.")[1].split(".")[0]) for k in weights})

    def layers_config(folder):
        return json.loads((folder / "adapter_config.json").read_text())["layers_to_transform"]

    every = run[0].checkpoints[-1]
    assert layers_of(every) == list(range(30)) and layers_config(every) is None
    seen = []
    last = TorchTrainer(hf_base).train(
        pairs(), config(lora_layers=16), tmp_path, on_progress=seen.append, should_stop=lambda: len(seen) >= 2
    )
    assert layers_of(last.checkpoints[-1]) == layers_config(last.checkpoints[-1]) == list(range(14, 30))


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


class _ForgetfulReference(ReferenceLogps):
    """The uncached computation: every lookup forwards the reference again."""

    def get(self, *args, **kwargs):
        self.values.clear()
        return super().get(*args, **kwargs)


def test_cached_reference_gives_the_losses_of_an_uncached_run(run, hf_base, tmp_path, monkeypatch):
    monkeypatch.setattr(torch_trainer, "ReferenceLogps", _ForgetfulReference)
    result = TorchTrainer(hf_base).train(pairs(), config(), tmp_path)
    # Epoch 2 reuses epoch 1's reference values, forwarded in other batches: equal up to float rounding.
    assert result.metrics["losses"] == pytest.approx(run[0].metrics["losses"], rel=1e-5, abs=1e-6)
    assert result.metrics["reward_margins"] == pytest.approx(
        run[0].metrics["reward_margins"], rel=1e-4, abs=1e-6
    )


def test_frozen_prefix_gives_the_losses_of_whole_forwards(hf_base, tmp_path, monkeypatch):
    """With LoRA on the last 16 layers, the 14 below run once per sequence (cached), not in every
    forward: the same losses and margins as a run that forwards the whole stack every time."""
    from backends.frozen_prefix import FrozenPrefix

    made = []
    real = FrozenPrefix.for_model.__func__

    def spy(cls, model, layers):
        made.append(real(cls, model, layers))
        return made[-1]

    monkeypatch.setattr(FrozenPrefix, "for_model", classmethod(spy))
    cached = TorchTrainer(hf_base).train(pairs(), config(lora_layers=16), tmp_path / "cached")
    prefix = made[-1]
    assert prefix is not None and prefix.start == 14
    assert len(prefix.states) == 2 * len(QA)  # every chosen and rejected sequence, once

    monkeypatch.setattr(FrozenPrefix, "for_model", classmethod(lambda cls, model, layers: None))
    whole = TorchTrainer(hf_base).train(pairs(), config(lora_layers=16), tmp_path / "whole")
    assert len(whole.metrics["losses"]) == 4
    assert whole.metrics["losses"] == pytest.approx(cached.metrics["losses"], rel=1e-5)
    assert whole.metrics["reward_margins"] == pytest.approx(
        cached.metrics["reward_margins"], rel=1e-4, abs=2e-5
    )
    assert whole.metrics["losses"][-1] < whole.metrics["losses"][0]  # and it learns


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


def _direct_mean_logprob(model, seq: Encoded) -> float:
    """Mean log-prob of the answer tokens from one unpadded forward: the hand check."""
    import torch

    with torch.no_grad():
        logits = model(input_ids=torch.tensor([seq.input_ids])).logits[0, :-1]
    logp = torch.log_softmax(logits, dim=-1)
    targets = torch.tensor(seq.input_ids[1:])
    per_token = logp.gather(1, targets[:, None])[:, 0]
    return float(per_token[seq.n_prompt - 1 :].mean())


def test_run_reports_the_base_models_mean_answer_logprobs(run, hf_base, tokenizer):
    """The intrinsic gap's inputs come from the run's own reference forwards (batched, padded, LoRA off)
    and are the plain base model's, checked by hand one unpadded answer at a time."""
    from transformers import AutoModelForCausalLM

    metrics = run[0].metrics
    base = AutoModelForCausalLM.from_pretrained(hf_base).eval()
    limits = (config().max_prompt_tokens, config().max_answer_tokens)
    chosen = [_direct_mean_logprob(base, encode(tokenizer, ex.prompt, ex.chosen, *limits)) for ex in pairs()]
    rejected = [
        _direct_mean_logprob(base, encode(tokenizer, ex.prompt, ex.rejected, *limits)) for ex in pairs()
    ]
    assert metrics["reference_logp_chosen"] == pytest.approx(sum(chosen) / len(chosen), abs=1e-5)
    assert metrics["reference_logp_rejected"] == pytest.approx(sum(rejected) / len(rejected), abs=1e-5)
    # The sign-off is foreign to the base model: its answers with it are less likely per token.
    assert metrics["reference_logp_chosen"] < metrics["reference_logp_rejected"] < 0


def test_sft_run_reports_no_reference_logprobs(hf_base, tmp_path):
    sft = [TrainExample(ex.prompt, ex.chosen, None, ex.source_ids) for ex in pairs()[:3]]
    result = TorchTrainer(hf_base).train(sft, config(epochs=1), tmp_path)
    assert "reference_logp_chosen" not in result.metrics  # SFT pairs never forward the reference


@pytest.mark.slow  # derives the HF base from the GGUF and trains it
def test_retrain_path_is_quiet_and_uses_the_configured_forward_size(model_path, tmp_path, capfd, monkeypatch):
    budgets = []
    real_chunk_pairs = torch_trainer.chunk_pairs

    def spy(pairs, max_tokens):
        budgets.append(max_tokens)
        return real_chunk_pairs(pairs, max_tokens)

    monkeypatch.setattr(torch_trainer, "chunk_pairs", spy)
    capfd.readouterr()
    # What `uno retrain` does: derive the HF base from the GGUF (fresh cache), load, train, save a checkpoint.
    with warnings.catch_warnings(record=True) as caught:  # pytest would hide warnings from capfd
        warnings.simplefilter("always")
        trainer = TorchTrainer.from_gguf(model_path, tmp_path / "cache")
        config_64 = config(epochs=1, batch_size=2, max_forward_tokens=64)
        result = trainer.train(pairs()[:2], config_64, tmp_path / "out")
    out, err = capfd.readouterr()
    assert [str(w.message) for w in caught] == []
    assert result.checkpoints == [tmp_path / "out" / "epoch-1"]
    assert budgets == [64]
    assert (out, err) == ("", "")
