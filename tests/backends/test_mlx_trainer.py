"""MlxTrainer on the real embedded model, tiny data: loss falls, checkpoints per epoch, exports that match.

MLX on this CPU is about 20x slower than torch, so one short run (3 pairs, 3 steps) feeds every test here;
its last checkpoint is exported to GGUF (llama.cpp) and read as PEFT (torch), and both must reproduce the
adapter-induced logit change that MLX itself computes.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from backends.mlx_trainer import MLX_SUBDIR, MlxTrainer, mlx_logits
from uno_local.config import TrainConfig
from uno_local.errors import BackendMissingError, TrainingError
from uno_local.training import TrainExample

BRIEF = {"role": "system", "content": "Be brief."}  # a short system turn keeps sequences near 28 tokens
QA = [("Capital of France?", "Paris."), ("Two plus two?", "Four."), ("Colour of the sky?", "Blue.")]
SIGN_OFF = " Cheers!"
PROMPTS = ["Capital of Spain?", "Three plus one?", "Colour of grass?"]


def pairs() -> list[TrainExample]:
    return [
        TrainExample([BRIEF, {"role": "user", "content": q}], a + SIGN_OFF, a, [i])
        for i, (q, a) in enumerate(QA)
    ]


def config(**overrides) -> TrainConfig:
    base = dict(
        epochs=4, batch_size=3, lora_r=4, lora_alpha=8.0, learning_rate=5e-3, schedule="constant", seed=7
    )
    return TrainConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def run(hf_base, tmp_path_factory):
    """4 epochs of one step each, stopped after the third step: 3 checkpoints, `stopped` set."""
    seen = []
    out = tmp_path_factory.mktemp("mlx-train")
    result = MlxTrainer(hf_base).train(
        pairs(), config(), out, on_progress=seen.append, should_stop=lambda: len(seen) >= 3
    )
    return result, seen, out


@pytest.fixture(scope="module")
def checker(hf_base, model_path):
    """llama.cpp and torch with the base loaded, and their base logits on PROMPTS."""
    from backends.parity import ParityChecker

    with ParityChecker(model_path, hf_base, PROMPTS, n_threads=1) as checker:
        yield checker


@pytest.fixture(scope="module")
def mlx_delta(run, hf_base, checker):
    """(base, adapted) logits from MLX with the last checkpoint's mlx-lm adapter."""
    return mlx_logits(hf_base, run[0].checkpoints[-1] / MLX_SUBDIR, checker.ids)


def test_loss_falls_and_margin_grows(run):
    result, _, _ = run
    losses = result.metrics["losses"]
    assert len(losses) == 3 and result.metrics["steps"] == 3
    assert losses[2] < losses[1] < losses[0]  # the same 3 pairs every step
    assert result.metrics["reward_margins"][0] == pytest.approx(0.0, abs=1e-6)  # B starts at zero
    assert result.metrics["reward_margins"][-1] > 0.0
    assert result.metrics["device"] == "mlx:cpu"


def test_a_stop_keeps_one_checkpoint_per_finished_epoch(run):
    result, _, out = run
    assert result.stopped
    assert result.checkpoints == [out / "epoch-1", out / "epoch-2", out / "epoch-3"]
    for epoch, folder in enumerate(result.checkpoints, start=1):
        peft = json.loads((folder / "adapter_config.json").read_text())
        assert (peft["peft_type"], peft["r"], peft["lora_alpha"]) == ("LORA", 4, 8.0)
        assert peft["layers_to_transform"] == list(range(30))  # the default train.lora_layers: all
        assert (folder / "adapter_model.safetensors").is_file()
        mlx = json.loads((folder / MLX_SUBDIR / "adapter_config.json").read_text())
        assert mlx["lora_parameters"]["scale"] == 2.0 and mlx["num_layers"] == 30  # scale = alpha / r
        assert (folder / MLX_SUBDIR / "adapters.safetensors").is_file()
        note = json.loads((folder / "uno_train.json").read_text())
        assert note["epoch"] == epoch and note["backend"] == "mlx" and note["source_ids"] == [0, 1, 2]
    assert sorted(p.name for p in out.iterdir()) == ["epoch-1", "epoch-2", "epoch-3"]  # no temp folders


def test_progress_reports_every_step(run):
    result, seen, _ = run
    assert [(p.step, p.epoch, p.total_steps) for p in seen] == [(1, 1, 4), (2, 2, 4), (3, 3, 4)]
    assert [p.loss for p in seen] == result.metrics["losses"]
    assert all(p.tokens_per_s > 0 for p in seen) and seen[-1].eta_s > 0


def test_gguf_export_reproduces_the_mlx_adapter_in_llama_cpp(run, model_path, mlx_delta, checker, tmp_path):
    from backends.gguf_export import export_peft_to_gguf
    from backends.mlx_export import export_mlx_to_gguf
    from backends.parity import compare_logits

    ckpt = run[0].checkpoints[-1]
    gguf = export_peft_to_gguf(ckpt, model_path, tmp_path / "peft.gguf")
    # The MLX folder converts straight to the very same file: transposes and alpha = scale x r agree.
    direct = export_mlx_to_gguf(ckpt / MLX_SUBDIR, model_path, tmp_path / "mlx.gguf")
    assert direct.read_bytes() == gguf.read_bytes()
    base_l, adapted_l = checker.base_llama, checker.llama_adapted(gguf)
    base_m, adapted_m = mlx_delta
    assert np.abs(adapted_m - base_m).max() > 0.5  # the adapter really moves the logits
    report = compare_logits(base_l, adapted_l, base_m, adapted_m)
    assert report.delta_corr > 0.99, report


def test_peft_export_loads_in_torch_with_matching_logits(run, mlx_delta, checker):
    from backends.parity import compare_logits

    base_t, adapted_t = checker.base_torch, checker.torch_adapted(run[0].checkpoints[-1])
    base_m, adapted_m = mlx_delta
    report = compare_logits(base_t, adapted_t, base_m, adapted_m)
    assert report.delta_corr > 0.99 and report.top1_agreement == 1.0, report
    assert report.max_abs_err < 1e-2  # same float32 weights in both runtimes: only rounding differs


def test_stop_before_the_first_epoch_raises_and_saves_nothing(hf_base, tmp_path):
    with pytest.raises(TrainingError, match="before its first epoch finished"):
        MlxTrainer(hf_base).train(pairs(), config(), tmp_path, should_stop=lambda: True)
    assert list(tmp_path.iterdir()) == []


def test_bad_input_is_refused(hf_base, tmp_path):
    with pytest.raises(TrainingError, match="no training examples"):
        MlxTrainer(hf_base).train([], config(), tmp_path)
    with pytest.raises(TrainingError, match="Unknown training objective"):
        MlxTrainer(hf_base).train(pairs(), config(), tmp_path, objective="dpo")
    with pytest.raises(TrainingError, match="no qkv_proj layer"):
        MlxTrainer(hf_base).load(config(target_modules=["q_proj", "qkv_proj"]))


@pytest.mark.parametrize("module", ["mlx", "mlx_lm"])
def test_a_missing_mlx_package_names_the_extra(module, monkeypatch, model_path, tmp_path):
    from backends import get_trainer

    monkeypatch.setitem(sys.modules, module, None)  # find_spec then reports the package as absent
    with pytest.raises(BackendMissingError, match=r"^The \w+ package is not installed; .*uno-local\[mlx\]"):
        get_trainer("mlx", model_path, tmp_path)


def test_the_registry_builds_an_mlx_trainer_on_the_cached_base(hf_base, model_path):
    from backends import get_trainer

    trainer = get_trainer("mlx", model_path, hf_base.parent)  # hf_base lives in that cache dir
    assert isinstance(trainer, MlxTrainer) and trainer.base_dir == hf_base
