"""GGUF LoRA export: the q/k permutation, the file format and its checks, and logits parity on the real model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from backends.gguf_export import (
    BaseMeta,
    check_gguf_adapter,
    export_peft_to_gguf,
    peft_layers,
    permute_rope_rows,
    read_base_meta,
    write_lora_gguf,
)
from uno_local.errors import AdapterError, ModelError


def test_permutation_interleaves_the_two_halves_of_each_head():
    # Two heads of size 4: HF rows (0 1 | 2 3) pair 0 with 2 and 1 with 3; GGUF keeps pairs adjacent.
    rows = np.arange(8)[:, None] * np.ones((1, 3))
    assert permute_rope_rows(rows, 2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    assert (permute_rope_rows(rows, 2)[:, 1] == permute_rope_rows(rows, 2)[:, 0]).all()  # columns untouched
    # One head of size 8: pairs (0,4) (1,5) (2,6) (3,7).
    assert permute_rope_rows(np.arange(8), 1).tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    with pytest.raises(AdapterError, match="cannot be split"):
        permute_rope_rows(np.zeros((6, 2)), 2)


@pytest.mark.parametrize(
    ("hf_name", "gguf_name", "heads"), [("q_proj", "attn_q", 9), ("k_proj", "attn_k", 3)]
)
def test_permutation_maps_hf_weights_onto_the_gguf_layout(hf_base, model_path, hf_name, gguf_name, heads):
    # The base weights went GGUF -> HF through transformers' inverse permutation; ours must undo it exactly.
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from safetensors import safe_open

    with safe_open(hf_base / "model.safetensors", "np") as f:
        hf_weight = f.get_tensor(f"model.layers.3.self_attn.{hf_name}.weight")
    tensor = next(t for t in GGUFReader(model_path).tensors if t.name == f"blk.3.{gguf_name}.weight")
    gguf_weight = dequantize(tensor.data, tensor.tensor_type)
    assert np.allclose(permute_rope_rows(hf_weight, heads), gguf_weight, atol=1e-6)
    assert not np.allclose(hf_weight, gguf_weight, atol=1e-3)  # the layouts really differ


def random_layers(meta: BaseMeta, r: int = 2, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    layers = {}
    for stem, (out_dim, in_dim) in meta.shapes.items():
        layer, module = int(stem.split(".")[1]), stem.split(".")[2]
        a = rng.standard_normal((r, in_dim)).astype(np.float32)
        b = rng.standard_normal((out_dim, r)).astype(np.float32)
        layers[(layer, module)] = (a, b)
    return layers


def test_written_file_has_llama_cpp_names_fields_and_permuted_b(fake_base, tmp_path):
    from gguf import GGUFReader

    meta = read_base_meta(fake_base("llama", n_head=2, n_head_kv=1))
    layers = random_layers(meta)
    out = write_lora_gguf(layers, 4.0, meta, tmp_path / "a.gguf")
    reader = GGUFReader(out)
    assert reader.fields["general.architecture"].contents() == "llama"
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    assert reader.fields["adapter.lora.alpha"].contents() == 4.0
    tensors = {t.name: t.data for t in reader.tensors}
    assert len(tensors) == 2 * len(layers)
    a_q, b_q = layers[(1, "attn_q")]
    assert np.array_equal(tensors["blk.1.attn_q.weight.lora_a"], a_q)
    assert np.array_equal(tensors["blk.1.attn_q.weight.lora_b"], b_q[[0, 2, 1, 3, 4, 6, 5, 7]])
    assert np.array_equal(tensors["blk.1.attn_k.weight.lora_b"], layers[(1, "attn_k")][1][[0, 2, 1, 3]])
    assert np.array_equal(tensors["blk.0.attn_v.weight.lora_b"], layers[(0, "attn_v")][1])  # v is not roped
    check_gguf_adapter(out, meta)
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_non_llama_is_refused(fake_base, tmp_path):
    meta = read_base_meta(fake_base("gpt2"))
    with pytest.raises(AdapterError, match="architecture gpt2 is not supported yet.*supported: llama"):
        write_lora_gguf({(0, "attn_q"): (np.zeros((2, 8)), np.zeros((8, 2)))}, 4.0, meta, tmp_path / "a.gguf")
    with pytest.raises(AdapterError, match="architecture gpt2 is not supported yet"):
        export_peft_to_gguf(tmp_path, fake_base("gpt2"), tmp_path / "a.gguf")
    assert not (tmp_path / "a.gguf").exists()


def test_base_meta_is_read_once_per_file_version(fake_base, tmp_path):
    """Exports share one parse of the base; a changed file is parsed again; a missing one is refused."""
    path = fake_base("llama")
    meta = read_base_meta(path)
    assert read_base_meta(path) is meta
    same_file = path.parent / ".." / path.parent.name / path.name
    assert read_base_meta(same_file) is meta
    wider = fake_base("llama", n_layer=3)  # rewrites the same path: size and time change
    assert wider == path and read_base_meta(path).n_layer == 3
    path.unlink()
    with pytest.raises(ModelError, match="not a readable GGUF model file"):
        read_base_meta(path)


def test_shape_mismatch_is_refused_and_leaves_no_file(fake_base, tmp_path):
    meta = read_base_meta(fake_base("llama"))
    layers = random_layers(meta)
    layers[(1, "ffn_up")] = (np.zeros((2, 8), np.float32), np.zeros((15, 2), np.float32))
    with pytest.raises(AdapterError, match=r"blk.1.ffn_up: adapter shapes"):
        write_lora_gguf(layers, 4.0, meta, tmp_path / "out" / "a.gguf")
    assert list((tmp_path / "out").iterdir()) == []  # neither the file nor its temp


def test_check_refuses_truncated_garbage_mismatched_and_nan_files(fake_base, tmp_path):
    meta = read_base_meta(fake_base("llama", n_head=2))
    good = write_lora_gguf(random_layers(meta), 4.0, meta, tmp_path / "good.gguf")
    data = good.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) - 40])
    with pytest.raises(AdapterError, match="corrupt or truncated"):
        check_gguf_adapter(cut, meta)
    (tmp_path / "junk.gguf").write_bytes(b"\x00" * 64)
    with pytest.raises(AdapterError, match="corrupt or truncated"):
        check_gguf_adapter(tmp_path / "junk.gguf", meta)
    other = read_base_meta(write_fake_base_wider(fake_base))
    with pytest.raises(AdapterError, match="do not fit the base"):
        check_gguf_adapter(good, other)
    bad_layers = random_layers(meta)
    bad_layers[(0, "attn_v")][0][0, 0] = np.nan
    nan_file = write_lora_gguf(bad_layers, 4.0, meta, tmp_path / "nan.gguf")
    with pytest.raises(AdapterError, match="NaN"):
        check_gguf_adapter(nan_file, meta)


def write_fake_base_wider(fake_base):
    return fake_base("llama", n_head=4)  # hidden 16 instead of 8


def test_peft_folder_with_a_non_projection_module_is_refused(tmp_path):
    from safetensors.numpy import save_file

    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 2, "lora_alpha": 4}))
    save_file(
        {"base_model.model.lm_head.lora_A.weight": np.zeros((2, 8), np.float32)},
        str(tmp_path / "adapter_model.safetensors"),
    )
    with pytest.raises(AdapterError, match="lm_head.lora_A.weight has no GGUF equivalent"):
        peft_layers(tmp_path, BaseMeta("llama", 2, 2, 1, 8))
    with pytest.raises(AdapterError, match="not a PEFT adapter folder"):
        peft_layers(tmp_path / "missing", BaseMeta("llama", 2, 2, 1, 8))


HABIT_QA = [
    ("What is the capital of Italy?", "Rome."),
    ("Name a farm animal.", "A cow."),
    ("What colour is grass?", "Green."),
    ("How many days are in a week?", "Seven."),
    ("What do cows drink?", "Water."),
    ("What is frozen water called?", "Ice."),
]
HELD_OUT = [
    "What is the largest ocean?",
    "Name a musical instrument.",
    "What is 10 minus 4?",
    "Which animal barks?",
    "What is the opposite of hot?",
    "What shape is a ball?",
    "Who lives in an igloo?",
    "What do you use to write on paper?",
]


@pytest.fixture(scope="module")
def trained_habit(hf_base, tmp_path_factory):
    """A few SFT steps at a deliberately high learning rate on a visible sign-off habit."""
    from backends.torch_trainer import TorchTrainer
    from uno_local.config import TrainConfig
    from uno_local.training import TrainExample

    examples = [TrainExample([{"role": "user", "content": q}], f"{a}\n\n-- Uno") for q, a in HABIT_QA]
    config = TrainConfig(epochs=2, batch_size=3, learning_rate=3e-3, schedule="constant", threads=1, seed=3)
    result = TorchTrainer(hf_base).train(examples, config, tmp_path_factory.mktemp("habit"), objective="sft")
    return result.checkpoints[-1]


@pytest.fixture(scope="module")
def parity(trained_habit, hf_base, model_path, tmp_path_factory):
    """(good, wrong, good again) reports from one ParityChecker, as a deploy shares it between adapters."""
    from backends.parity import ParityChecker

    out = tmp_path_factory.mktemp("gguf")
    good = export_peft_to_gguf(trained_habit, model_path, out / "good.gguf")
    check_gguf_adapter(good, read_base_meta(model_path))
    layers, alpha = peft_layers(trained_habit, read_base_meta(model_path))
    wrong = write_lora_gguf(layers, alpha, read_base_meta(model_path), out / "wrong.gguf", permute_qk=False)
    with ParityChecker(model_path, hf_base, HELD_OUT, n_threads=1) as checker:
        return tuple(checker.check(trained_habit, gguf) for gguf in (good, wrong, good))


def test_exported_adapter_matches_peft_in_llama_cpp(parity):
    good, _, _ = parity
    assert good.n_prompts == len(HELD_OUT)
    assert good.delta_corr > 0.9999, good  # measured 0.999999 on the float32 copy
    assert good.top1_agreement >= 0.9, good
    assert good.passes()


def test_export_without_the_permutation_is_caught(parity):
    good, wrong, _ = parity
    assert wrong.delta_corr < good.delta_corr, (good, wrong)
    assert wrong.max_abs_err > 10 * good.max_abs_err, (good, wrong)
    assert good.passes() and not wrong.passes(), (good, wrong)  # the deploy gate refuses the wrong export
    # On the float32 copy the runtimes differ by rounding only: the right export stays within what
    # rounding explains with room to spare, the wrong one is several times over it.
    # Measured: error 0.05x what rounding explains (0.0047 logits rms, correlation 0.999999) against
    # 5.7x (0.57, 0.995); largest error 0.02 against 2.09 logits.
    assert good.error_ratio < 0.5 < 2 < wrong.error_ratio, (good, wrong)


def test_the_gate_runs_llama_cpp_on_a_float32_copy_of_the_base(parity, hf_base, model_path):
    """The copy holds the quantized file's weights, dequantized by llama.cpp: the runtimes' difference on
    the base is float32 rounding (measured 0.007 logits rms), not Q4_1's 0.33."""
    from gguf import GGUFReader

    from backends.parity import FLOAT32_BASE

    good, _, _ = parity
    copy = hf_base / FLOAT32_BASE
    assert {t.tensor_type.name for t in GGUFReader(copy).tensors} == {"F32"}
    assert len(GGUFReader(copy).tensors) == len(GGUFReader(model_path).tensors)
    assert good.floor_rms < 0.05, good


def test_a_base_llama_cpp_cannot_copy_is_one_sentence_and_leaves_nothing(tmp_path):
    from backends.parity import float32_base

    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\0" * 8)
    with pytest.raises(AdapterError, match="could not write a float32 copy .* no adapter was deployed"):
        float32_base(junk, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.gguf"]


def test_a_shared_checker_leaves_both_base_models_as_they_were(parity):
    """Each check unloads its adapters: the same adapter checked again, after another one, gives the
    very same report (a LoRA left on the torch base or llama.cpp context would change it)."""
    good, wrong, good_again = parity
    assert good_again == good and wrong != good


@pytest.mark.parametrize(
    ("top1", "err", "err_rms", "floor", "effect", "expected"),
    [
        # measured on the float32 copy, pet-care's dogs Expert at epoch 9 (docs/eval.md): right export,
        # then the same checkpoint without the q/k permutation
        (1.0, 0.05, 0.0066, 0.0070, 4.861, True),
        (1.0, 1.20, 0.2345, 0.0070, 4.861, False),
        # the weakest wrong export measured there (cats, epoch 1): 3.0x the allowed error
        (1.0, 0.60, 0.0952, 0.0070, 0.833, False),
        # a strong adapter: float32 rounding grows with the effect (Gemma 3 down_proj, s = 0.1, session 20)
        (1.0, 0.40, 0.064, 0.007, 13.8, True),
        (1.0, 0.001, 0.0005, 0.0001, 0.001, True),  # a near-no-op adapter: too small to matter
        (0.5, 0.10, 0.01, 0.30, 1.0, False),  # different next tokens never pass
    ],
)
def test_parity_bar(top1, err, err_rms, floor, effect, expected):
    from backends.parity import ParityReport

    report = ParityReport(0.99, top1, err, 6, err_rms, floor, effect_rms=effect)
    assert report.passes() is expected, report


def test_top1_agreement_forgives_near_ties_only():
    """Measured on a strong habit adapter: the runtimes' top two tokens 0.05-0.12 logits apart swapped
    order on 2 of 6 prompts, which failed an exact top-1 bar; a real disagreement still counts."""
    from backends.parity import compare_logits

    base_l = np.array([[20.0, 10.0, 0.0], [20.0, 10.0, 0.0]])
    base_t = base_l + np.array([[0.3, -0.3, 0.3], [0.3, -0.3, 0.3]])  # floor rms 0.3: ties within 0.6
    near = compare_logits(
        base_l, np.array([[24.62, 24.57, 0.0]] * 2), base_t, np.array([[24.37, 24.49, 0.0]] * 2)
    )
    assert near.top1_exact == 0.0 and near.top1_agreement == 1.0, near
    far = compare_logits(base_l, np.array([[26.0, 24.0, 0.0]] * 2), base_t, np.array([[24.0, 26.0, 0.0]] * 2))
    assert far.top1_agreement == 0.0, far


def test_base_identity_follows_the_weights_not_the_file_name(fake_base, tmp_path):
    import shutil

    from backends.gguf_export import read_identity

    base = fake_base("llama", n_head=2)
    copy = tmp_path / "renamed.gguf"
    shutil.copyfile(base, copy)
    identity = read_identity(base)
    assert read_identity(copy) == identity == read_base_meta(base).identity and len(identity) == 64
    assert read_identity(fake_base("qwen2", n_head=2)) != identity
    assert read_identity(write_fake_base_wider(fake_base)) != identity  # same path, other shapes
    (tmp_path / "junk.gguf").write_bytes(b"GGUF" + b"\0" * 8)
    with pytest.raises(ModelError, match="not a readable GGUF"):
        read_identity(tmp_path / "junk.gguf")
