"""Export parity per architecture, against llama.cpp's own tools.

For each architecture: a tiny random-weight model built with transformers, converted to a float32 GGUF by
llama.cpp's `convert_hf_to_gguf.py`; a random LoRA on every projection made with PEFT; exported by our
exporter and by llama.cpp's `convert_lora_to_gguf.py`. The two GGUFs must hold the same tensors, bit for
bit, and the adapter's logit change in llama.cpp must match PEFT's in torch within the parity gate.
The converters come from the installed llama-cpp-python's source archive (tests/backends/llama_cpp_source.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.backends.llama_cpp_source import run_converter
from tests.tiny_models import TINY_SIZES

pytestmark = pytest.mark.slow

VOCAB = 320
SIZES = dict(**TINY_SIZES, vocab_size=VOCAB, bos_token_id=1, eos_token_id=2, pad_token_id=0)
ATTN_MLP = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# architecture -> (transformers config class, model class, extra config, PEFT target modules)
ARCHS = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}, ATTN_MLP),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}, ATTN_MLP),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 16}, ATTN_MLP),
    "gemma2": (
        "Gemma2Config",
        "Gemma2ForCausalLM",
        {"head_dim": 16, "sliding_window": 64, "query_pre_attn_scalar": 16},
        ATTN_MLP,
    ),
    "gemma3": (
        "Gemma3TextConfig",
        "Gemma3ForCausalLM",
        # a head size other than hidden / heads (64 / 4), as Gemma 3 270M has (256 against 640 / 4)
        {"head_dim": 32, "sliding_window": 64, "query_pre_attn_scalar": 32},
        ATTN_MLP,
    ),
    "phi3": (
        "Phi3Config",
        "Phi3ForCausalLM",
        {"original_max_position_embeddings": 128},
        ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    ),
}
# Token ids fed to both runtimes as they are (the tiny models have no chat template).
IDS = [
    [1, 17, 93, 200, 41, 5, 77],
    [1, 250, 12, 12, 300, 8, 64, 9, 130],
    [1, 3, 4, 5],
    [1, 310, 150, 42, 42, 7],
]


@pytest.fixture(scope="module")
def spm_tokenizer(tmp_path_factory):
    """A tiny SentencePiece tokenizer.model: every converter reads this vocabulary format."""
    import io

    import sentencepiece as spm

    words = [
        "the",
        "a",
        "cat",
        "dog",
        "sat",
        "on",
        "mat",
        "ran",
        "fast",
        "slow",
        "red",
        "blue",
        "green",
        "one",
        "two",
        "three",
        "sun",
        "moon",
        "day",
        "night",
    ]
    lines = [" ".join(words[(i * 7 + j) % len(words)] for j in range(9)) for i in range(200)]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        vocab_size=VOCAB,
        model_type="bpe",
        byte_fallback=True,
        minloglevel=2,
    )
    path = tmp_path_factory.mktemp("spm") / "tokenizer.model"
    path.write_bytes(model.getvalue())
    return path


def build_tiny(arch: str, folder, tokenizer_model):
    """A random-weight float32 HF model of `arch` in `folder`, with the SentencePiece tokenizer beside it."""
    import shutil

    import torch
    import transformers

    config_cls, model_cls, extra, _ = ARCHS[arch]
    torch.manual_seed(0)
    config = getattr(transformers, config_cls)(**SIZES, **extra, tie_word_embeddings=arch.startswith("gemma"))
    model = getattr(transformers, model_cls)(config).to(torch.float32)
    with torch.no_grad():  # norms at random scales too, so a norm handled wrongly would show
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.add_(torch.rand_like(param) * 0.5)
    model.save_pretrained(folder)
    shutil.copy(tokenizer_model, folder / "tokenizer.model")
    return model


def random_peft(model, arch: str, folder):
    """A LoRA with random A and B on every projection of every layer, saved as a PEFT folder."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=ARCHS[arch][3], init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.3)
    peft_model.save_pretrained(folder)
    return json.loads((folder / "adapter_config.json").read_text())


def gguf_tensors(path) -> dict[str, np.ndarray]:
    from gguf import GGUFReader

    return {t.name: np.array(t.data) for t in GGUFReader(path).tensors}


@pytest.fixture(scope="module")
def build(spm_tokenizer, tmp_path_factory):
    """build(arch) -> (arch, hf dir, base GGUF, PEFT dir, our adapter GGUF, llama.cpp's adapter GGUF),
    made once per architecture for the whole module."""
    from backends.gguf_export import export_peft_to_gguf

    built = {}

    def get(arch: str):
        if arch not in built:
            root = tmp_path_factory.mktemp(arch)
            hf, peft_dir, base, theirs = root / "hf", root / "peft", root / "base.gguf", root / "theirs.gguf"
            model = build_tiny(arch, hf, spm_tokenizer)
            run_converter("convert_hf_to_gguf.py", str(hf), "--outtype", "f32", "--outfile", str(base))
            random_peft(model, arch, peft_dir)
            run_converter(
                "convert_lora_to_gguf.py", str(peft_dir), "--base", str(hf), "--outtype", "f32",
                "--outfile", str(theirs),
            )  # fmt: skip
            ours = export_peft_to_gguf(peft_dir, base, root / "ours.gguf")
            built[arch] = (arch, hf, base, peft_dir, ours, theirs)
        return built[arch]

    return get


@pytest.fixture(scope="module", params=list(ARCHS))
def exported(request, build):
    return build(request.param)


def test_our_gguf_equals_llama_cpps_converter_tensor_for_tensor(exported):
    from gguf import GGUFReader

    arch, _, base, _, ours, theirs = exported
    mine, reference = gguf_tensors(ours), gguf_tensors(theirs)
    assert sorted(mine) == sorted(reference)
    n_projections = 4 if arch == "phi3" else 7
    assert len(mine) == 2 * 2 * n_projections  # lora_a and lora_b, 2 layers
    for name, value in reference.items():
        assert mine[name].shape == value.shape, name
        assert np.array_equal(mine[name], value), name
    fields = GGUFReader(theirs).fields
    assert GGUFReader(ours).fields["general.architecture"].contents() == arch
    assert fields["general.architecture"].contents() == arch
    assert GGUFReader(ours).fields["adapter.lora.alpha"].contents() == fields["adapter.lora.alpha"].contents()


def test_the_adapters_logit_change_in_llama_cpp_matches_peft(exported):
    from backends.parity import ParityChecker

    _, hf, base, peft_dir, ours, theirs = exported
    with ParityChecker(base, hf, ids=IDS, n_threads=1) as checker:
        report = checker.check(peft_dir, ours)
        with_ours, with_theirs = checker.llama_adapted(ours), checker.llama_adapted(theirs)
        base_logits = checker.base_llama
    assert report.passes(), report
    assert np.abs(with_ours - base_logits).max() > 0.5, "the random adapter must visibly change the logits"
    assert np.array_equal(with_ours, with_theirs)


@pytest.mark.parametrize("exported", ["llama"], indirect=True)
def test_a_llama_export_without_the_rope_permutation_fails_the_gate(exported):
    from backends.gguf_export import peft_layers, read_base_meta, write_lora_gguf
    from backends.parity import ParityChecker

    _, hf, base, peft_dir, _, _ = exported
    meta = read_base_meta(base)
    layers, alpha = peft_layers(peft_dir, meta)
    wrong = write_lora_gguf(layers, alpha, meta, base.parent / "wrong.gguf", permute_qk=False)
    with ParityChecker(base, hf, ids=IDS, n_threads=1) as checker:
        assert not checker.check(peft_dir, wrong).passes()


def test_the_trainer_base_derived_from_the_gguf_computes_what_the_original_does(exported, tmp_path):
    """GGUF -> HF folder (backends/hf_base.py) gives back the model llama.cpp's converter was given."""
    import torch
    from transformers import AutoModelForCausalLM

    from backends.hf_base import ensure_hf_base

    _, hf, base, _, _, _ = exported
    derived = ensure_hf_base(base, tmp_path / "cache")
    x = torch.tensor([IDS[1]])
    with torch.no_grad():
        want = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32).eval()(x).logits
        got = AutoModelForCausalLM.from_pretrained(derived, dtype=torch.float32).eval()(x).logits
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()


@pytest.mark.parametrize("exported", ["gemma3"], indirect=True)
def test_a_gguf_without_a_template_chats_in_its_architectures_format_quietly(exported, capfd):
    from backends.llama_runtime import LlamaRuntime
    from uno_local.runtime import GenerationSettings

    _, _, base, _, _, _ = exported
    capfd.readouterr()
    runtime = LlamaRuntime(base, n_ctx=256, n_threads=1, system_prompt="Be brief.")
    try:
        assert runtime.llm.chat_format == "gemma"  # llama-cpp-python alone would pick llama-2
        assert "has no chat template; using the gemma template" in runtime.template_note
        events = list(runtime.stream([{"role": "user", "content": "the cat"}], GenerationSettings.greedy(4)))
    finally:
        runtime.close()
    assert events[-1].stats.finish_reason == "length" and "".join(e.delta for e in events)
    _, err = capfd.readouterr()
    assert err == ""  # llama.cpp logs (e.g. "llama_kv_cache_iswa: using full-size SWA cache") are dropped


def test_models_without_a_system_role_get_it_in_the_first_user_turn():
    from backends.llama_runtime import fold_system

    system, user = {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}
    assert fold_system([system, user]) == [{"role": "user", "content": "Be brief.\n\nHi"}]
    assert fold_system([user]) == [user]
    assistant = {"role": "assistant", "content": "Hello"}
    assert fold_system([system, assistant]) == [{"role": "user", "content": "Be brief."}, assistant]
