"""`uno export --format dpo|sft|kto` and `uno adapters export`, each used by the tool it is for."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from tests.tiny_models import TINY_SIZES
from uno_local.cli import cli
from uno_local.store import Store

CHATS = Path(__file__).parent / "data" / "openwebui-chats.json"


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def rated_store(uno_home):
    """Four answers from the Open WebUI fixture: one rated down with a correction, two rated up, one unrated."""
    assert run("import", str(CHATS)).exit_code == 0
    return uno_home


def export(tmp_path, kind: str) -> list[dict]:
    out = tmp_path / f"{kind}.jsonl"
    result = run("export", "--format", kind, str(out))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert f"Exported {len(rows)} {kind} examples" in result.stdout
    return rows


def test_dpo_sft_kto_shapes_and_counts(rated_store, tmp_path):
    (dpo,) = export(tmp_path, "dpo")
    assert dpo["prompt"] == [{"role": "user", "content": "What is the capital of France?"}]
    assert dpo["chosen"] == [{"role": "assistant", "content": "The capital of France is Paris."}]
    assert dpo["rejected"] == [{"role": "assistant", "content": "The capital of France is Lyon."}]
    sft = export(tmp_path, "sft")
    assert len(sft) == 3 and all(row["messages"][-1]["role"] == "assistant" for row in sft)
    assert "The capital of France is Lyon." not in json.dumps(sft)
    kto = export(tmp_path, "kto")
    assert sorted((row["completion"][0]["content"][:30], row["label"]) for row in kto) == [
        ("Soft rain on the roof\nwhispers", True),
        ("The capital of France is Lyon.", False),
        ("The capital of France is Paris", True),
        ("The capital of France is Paris", True),
    ]
    assert all(row["prompt"][-1]["role"] == "user" for row in kto)


def test_revisions_from_the_pair_stage_are_exported(rated_store, tmp_path):
    from uno_local.store.learning import put_artifact

    with Store(rated_store / "uno.db") as store:
        haiku = next(log for log in store.logs() if log.answer.startswith("Soft rain"))
        pair = {"chosen": "Rain on the tin roof", "rejected": haiku.answer, "kind": "revision"}
        put_artifact(store, "pair", str(haiku.message_id), "h", pair, {})
    dpo = export(tmp_path, "dpo")
    assert [row["chosen"][0]["content"] for row in dpo][-1] == "Rain on the tin roof"


def test_nothing_to_export_is_one_sentence(uno_home, tmp_path):
    result = run("export", "--format", "dpo", str(tmp_path / "x.jsonl"))
    assert result.exit_code == 1 and "No feedback gives dpo examples yet" in result.output
    assert not (tmp_path / "x.jsonl").exists()


@pytest.fixture(scope="module")
def tokenizer(model_path):
    """The embedded model's own tokenizer and chat template, read from its GGUF."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path.parent, gguf_file=model_path.name)


def test_mlx_lm_loader_reads_the_sft_export(rated_store, tmp_path, tokenizer):
    from mlx_lm.tuner.datasets import ChatDataset, load_dataset

    data = tmp_path / "mlx-data"
    data.mkdir()
    rows = export(tmp_path, "sft")
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (data / "valid.jsonl").write_text(json.dumps(rows[0]) + "\n")
    args = SimpleNamespace(data=str(data), train=True, test=False, mask_prompt=True)
    train, valid, _ = load_dataset(args, tokenizer)
    assert isinstance(train, ChatDataset) and len(train) == 3 and len(valid) == 1
    tokens, offset = train.process(train[0])
    assert 0 < offset < len(tokens)  # the prompt is masked, the answer is trained on


@pytest.mark.slow  # imports TRL and runs one optimiser step (about 30 s)
def test_one_trl_dpo_step_on_the_dpo_export(rated_store, tmp_path, tokenizer):
    from datasets import load_dataset
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import DPOConfig, DPOTrainer

    export(tmp_path, "dpo")
    dataset = load_dataset("json", data_files=str(tmp_path / "dpo.jsonl"), split="train")
    model = LlamaForCausalLM(LlamaConfig(**TINY_SIZES, vocab_size=len(tokenizer)))
    args = DPOConfig(
        output_dir=str(tmp_path / "dpo-out"),
        max_steps=1,
        per_device_train_batch_size=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        logging_steps=1,
    )
    trainer = DPOTrainer(
        model=model,
        ref_model=copy.deepcopy(model),  # a random model has no hub id to load a reference from
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    result = trainer.train()
    assert result.global_step == 1
    assert any("loss" in entry for entry in trainer.state.log_history)


def test_adapters_export_loads_in_llama_cpp(uno_home, model_path, tmp_path):
    import numpy as np

    from backends.gguf_export import read_base_meta, write_lora_gguf
    from backends.llama_runtime import prepare_llama_cpp
    from uno_local.registry import Registry

    meta = read_base_meta(model_path)
    rng = np.random.default_rng(0)
    layers = {}
    for stem, (out_dim, in_dim) in list(meta.shapes.items())[:2]:
        layer, module = int(stem.split(".")[1]), stem.split(".")[2]
        layers[(layer, module)] = (
            rng.standard_normal((2, in_dim)).astype(np.float32) * 0.01,
            rng.standard_normal((out_dim, 2)).astype(np.float32) * 0.01,
        )
    gguf = write_lora_gguf(layers, 4.0, meta, tmp_path / "made.gguf")
    with Store(uno_home / "uno.db") as store:
        Registry(store, uno_home / "adapters").deploy(
            name="c0-expert",
            kind="expert",
            gguf_file=gguf,
            peft_dir=None,
            base_model=model_path.name,
            sources=[],
            metrics={},
            config={},
        )
    out = tmp_path / "exported"
    result = run("adapters", "export", "c0-expert", str(out))
    assert result.exit_code == 0, result.output
    adapter = out / "c0-expert-v1.gguf"
    assert adapter.read_bytes() == gguf.read_bytes()
    assert (out / "Modelfile").read_text() == f"FROM {model_path}\nADAPTER ./c0-expert-v1.gguf\n"
    assert f"llama-server -m {model_path} --lora c0-expert-v1.gguf" in (out / "README.md").read_text()
    llm = prepare_llama_cpp().Llama(
        str(model_path), lora_path=str(adapter), n_ctx=256, n_threads=2, verbose=False
    )
    try:
        assert llm("Hello", max_tokens=2)["choices"][0]["text"] is not None
    finally:
        llm.close()
    missing = run("adapters", "export", "nope", str(out))
    assert missing.exit_code == 1 and "No adapter named 'nope'" in missing.output
