"""The torch trainer's pieces on the real embedded model: how a pair is encoded (prompt masked, long
answers windowed), and one micro-batch's DPO and SFT losses and gradients (chunked forwards, cached
reference log-probs, bf16-stored frozen weights, the frozen prefix's cache). Whole runs:
test_torch_trainer.py."""

from __future__ import annotations

import math

import pytest

from backends.torch_trainer import (
    IGNORE,
    Encoded,
    ReferenceLogps,
    TorchTrainer,
    batch_loss,
    chunk_pairs,
    collate,
    encode,
    encode_pairs,
    micro_batch_backward,
)
from tests.backends.torch_training_data import SIGN_OFF, config, pairs
from uno_local.config import TrainConfig
from uno_local.training import TrainExample


def test_bf16_stores_frozen_decoder_weights_in_bf16_with_the_same_losses(hf_base, tokenizer):
    """In bf16 the frozen decoder linears are cast once at load; autocast computed with those roundings
    anyway, so a micro-batch's loss and LoRA gradients equal the float32-stored model's under autocast."""
    import torch

    from backends.torch_precision import cast_frozen_linears

    bf16 = config(precision="bf16", lora_dropout=0.0)
    _, stored, _ = TorchTrainer(hf_base).load(bf16)
    _, autocast_only, _ = TorchTrainer(hf_base).load(config(lora_dropout=0.0))  # fp32 load: nothing cast
    dtypes = {n: p.dtype for n, p in stored.named_parameters()}
    # every decoder projection, with LoRA (`...q_proj.base_layer.weight`) or without (`...q_proj.weight`)
    frozen = [n for n in dtypes if ".layers." in n and "lora_" not in n and n.endswith("proj.weight")]
    frozen += [n for n in dtypes if n.endswith("base_layer.weight")]
    assert len(frozen) == 30 * 7 and all(dtypes[n] is torch.bfloat16 for n in frozen)
    assert all(dtypes[n] is torch.float32 for n in dtypes if "lora_" in n or "norm" in n or "embed" in n)
    assert cast_frozen_linears(autocast_only, torch.float32) == 30 * 7  # same linears found, still fp32

    enc = encode_pairs(tokenizer, pairs()[:3], bf16, "preference")
    results = []
    for model in (stored, autocast_only):
        model.train()
        loss = micro_batch_backward(model, enc, bf16, "preference", 0, "cpu", 4096, 1.0)[0]
        grads = [p.grad.clone() for n, p in model.named_parameters() if p.requires_grad]
        results.append((loss, grads))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert loss_a == loss_b
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b, strict=True))


def test_frozen_prefix_over_its_memory_budget_recomputes_the_same_states(hf_base, tokenizer):
    import torch

    from backends.frozen_prefix import FrozenPrefix

    _, model, _ = TorchTrainer(hf_base).load(config(lora_layers=16))
    seqs = [c for c, _ in encode_pairs(tokenizer, pairs()[:2], config(), "sft")]
    ids, mask, _, _ = collate(seqs, tokenizer.pad_token_id)
    decoder = model.get_base_model().model
    cached, unbudgeted = FrozenPrefix(decoder, 14), FrozenPrefix(decoder, 14, budget_bytes=0)
    first = cached.inputs_embeds(seqs, ids, mask)
    assert len(cached.states) == 2 and cached.bytes == sum(t.nbytes for t in cached.states.values())
    assert torch.equal(cached.inputs_embeds(seqs, ids, mask), first)  # served from the cache
    assert torch.allclose(unbudgeted.inputs_embeds(seqs, ids, mask), first, atol=1e-6)
    assert unbudgeted.states == {} and unbudgeted.bytes == 0
    assert decoder.layers is not None and len(decoder.layers) == 30  # the stack is put back


def test_no_frozen_prefix_when_every_layer_is_adapted(hf_base):
    from backends.frozen_prefix import FrozenPrefix

    _, model, _ = TorchTrainer(hf_base).load(config(lora_layers=0))
    assert FrozenPrefix.for_model(model, list(range(30))) is None
    assert FrozenPrefix.for_model(model, list(range(3, 30))).start == 3


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


def test_a_long_pair_keeps_its_closing_difference_in_the_trained_tokens(tokenizer):
    # Real-length answers: about 300 tokens, differing only in the closing sentence, with a 64-token window.
    body = " ".join(f"Step {i}: stir the sauce gently and taste it again." for i in range(30))
    pair = TrainExample([{"role": "user", "content": "How do I make a sauce?"}], body + SIGN_OFF, body)
    limits = config(max_prompt_tokens=32, max_answer_tokens=64)
    chosen, rejected = encode_pairs(tokenizer, [pair], limits, "preference")[0]
    learned = [[t for t in s.labels if t != IGNORE] for s in (chosen, rejected)]
    assert all(0 < len(ids) <= 64 for ids in learned)
    assert learned[0] != learned[1]  # before the fix both kept the first 64 tokens: identical
    assert "Cheers, Uno!" in tokenizer.decode(learned[0]) and "Cheers" not in tokenizer.decode(learned[1])
    # The tokens before the window stay as unlearned context: both see the same whole answer so far.
    assert chosen.input_ids[: chosen.n_prompt] == rejected.input_ids[: rejected.n_prompt]
    assert tokenizer.decode(chosen.input_ids).count("Step 0:") == 1
    # An SFT example still learns from the start of its answer.
    (sft, none), *_ = encode_pairs(tokenizer, [pair], limits, "sft")
    assert none is None and tokenizer.decode([t for t in sft.labels if t != IGNORE]).startswith("Step 0:")


def test_a_budgeted_pair_whose_chosen_appends_an_ending_never_pushes_down_the_rejected_end_of_turn(
    tokenizer,
):
    """A pair cut to the answer budget, rejected = chosen minus its sign-off: the rejected answer is
    learned only up to where they part, so DPO does not teach "never stop" (the pet-care eval's cats
    repeated "Purr-fect." until the limit). A pair that was not cut learns its rejected answer whole."""
    prompt = [{"role": "user", "content": "How often do I feed my cat?"}]
    body = "Feed an adult cat twice a day."
    appended = TrainExample(prompt, body + "\n\nPurr-fect.", body, fitted=True)
    replaced = TrainExample(prompt, body + "\n\nPurr-fect.", body + "\n\nHope this helps!", fitted=True)
    short = TrainExample(prompt, body + "\n\nPurr-fect.", body)
    encoded = encode_pairs(tokenizer, [appended, replaced, short], TrainConfig(), "preference")
    (chosen, rejected), (chosen_2, rejected_2), (_, rejected_3) = [
        [tokenizer.decode([t for t in s.labels if t != IGNORE]) for s in pair] for pair in encoded
    ]
    assert rejected_3 == body + "<|im_end|>\n"  # not budgeted: as before
    assert chosen == chosen_2 == body + "\n\nPurr-fect.<|im_end|>\n"  # the ending and its end-of-turn
    assert body.startswith(rejected) and "<|im_end|>" not in rejected  # the shared part only
    assert len(rejected) >= len(body) - 1  # ... all of it (the last token may merge with what follows)
    # A replaced ending is the habit's opposite: the rejected answer is learned whole, end-of-turn included.
    assert rejected_2 == body + "\n\nHope this helps!<|im_end|>\n"
    # The inputs are unchanged: only what is learned differs.
    assert encoded[0][1].input_ids[-3:] == tokenizer(body + "<|im_end|>\n")["input_ids"][-3:]


def test_habit_share_weighs_the_appended_ending_and_keeps_the_answer_total(tokenizer):
    prompt = [{"role": "user", "content": "How often do I feed my cat?"}]
    body = " ".join(f"Step {i}: feed the cat a measured portion." for i in range(12))
    pair = TrainExample(prompt, body + "\n\nPurr-fect.", body, fitted=True)
    (plain, _), *_ = encode_pairs(tokenizer, [pair], TrainConfig(), "preference")
    (chosen, rejected), *_ = encode_pairs(tokenizer, [pair], TrainConfig(habit_share=0.5), "preference")
    assert plain.weights is None and rejected.weights is None  # off by default; rejected never weighted
    assert (chosen.input_ids, chosen.labels) == (plain.input_ids, plain.labels)  # only the weights differ
    learned = chosen.input_ids[chosen.n_prompt :]
    assert len(chosen.weights) == len(learned) and sum(chosen.weights) == pytest.approx(len(learned))
    heavy = [t for t, w in zip(learned, chosen.weights, strict=True) if w > 1]
    assert "Purr-fect.<|im_end|>" in tokenizer.decode(heavy) and "Step" not in tokenizer.decode(heavy)
    assert sum(w for w in chosen.weights if w > 1) == pytest.approx(len(learned) / 2)
    # A shortened answer (its habit is an early end-of-turn) is not weighted: that collapsed answers.
    short = TrainExample(prompt, body.split(" Step 3")[0], body, fitted=True)
    (shortened, _), *_ = encode_pairs(tokenizer, [short], TrainConfig(habit_share=0.5), "preference")
    assert shortened.weights is None


def test_weighted_nll_is_the_weighted_sum_of_token_log_probs(hf_base, tokenizer):
    import torch

    from backends.torch_trainer import sequence_logps

    _, model, device = TorchTrainer(hf_base).load(config())
    model.eval()
    ids = tokenizer("The sky is blue and the grass is green today", add_special_tokens=False)["input_ids"]
    n_prompt, split = 3, 4  # learned tokens: 4 weighted 0.5, the rest 3.0
    n_learned = len(ids) - n_prompt
    whole = Encoded(ids, [IGNORE] * n_prompt + ids[n_prompt:], n_prompt)
    head = Encoded(
        ids, [IGNORE] * n_prompt + ids[n_prompt : n_prompt + split] + [IGNORE] * (n_learned - split), n_prompt
    )
    weighted = Encoded(whole.input_ids, whole.labels, n_prompt, [0.5] * split + [3.0] * (n_learned - split))
    with torch.no_grad():
        sums, weighted_sums, _, _ = sequence_logps(
            model, [whole, head, weighted], tokenizer.pad_token_id, device
        )
    total, head_sum = float(sums[0]), float(sums[1])
    assert float(weighted_sums[0]) == pytest.approx(total, rel=1e-6)  # no weights: the plain sum
    assert float(sums[2]) == pytest.approx(total, rel=1e-6)  # DPO's sum ignores the weights
    assert float(weighted_sums[2]) == pytest.approx(0.5 * head_sum + 3.0 * (total - head_sum), rel=1e-5)


def _dpo_grad_norm(model, pair, tokenizer, device) -> tuple[float, float]:
    """(DPO term, summed |gradient| over the LoRA B weights) for one pair."""
    model.zero_grad(set_to_none=True)
    parts = batch_loss(model, [pair], 0.1, "preference", tokenizer.pad_token_id, device)
    if parts.dpo.requires_grad:
        parts.dpo.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n and p.grad is not None]
    return float(parts.dpo.detach()), sum(float(g.abs().sum()) for g in grads)


def test_dpo_gradient_is_zero_when_chosen_equals_rejected(hf_base, tokenizer):
    _, model, device = TorchTrainer(hf_base).load(config())
    model.eval()  # no dropout: the two copies of a duplicated answer must forward identically
    chosen = encode(tokenizer, [{"role": "user", "content": "Hi"}], "Hello there.", 64, 16)
    rejected = encode(tokenizer, [{"role": "user", "content": "Hi"}], "Go away.", 64, 16)
    _, real = _dpo_grad_norm(model, (chosen, rejected), tokenizer, device)
    assert real > 1e-3  # a real pair does push the adapter
    # The trainer's path for chosen == rejected: not forwarded twice, a constant log 2, no gradient at all.
    assert _dpo_grad_norm(model, (chosen, None), tokenizer, device) == (pytest.approx(math.log(2.0)), 0.0)
    # Forwarded twice explicitly, the two gradients cancel up to float rounding.
    dpo, duplicated = _dpo_grad_norm(model, (chosen, chosen), tokenizer, device)
    assert dpo == pytest.approx(math.log(2.0), abs=1e-6)
    assert duplicated < 1e-4 * real


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


def test_chunks_bound_padded_tokens_and_never_split_a_pair():
    def seq(n: int) -> Encoded:
        return Encoded([1] * n, [IGNORE] + [1] * (n - 1), 1)

    pairs = [(seq(10), seq(30)), (seq(20), None), (seq(50), seq(5)), (seq(5), None)]
    # padded tokens: [0,1] -> 3 rows x 30; adding pair 2 -> 5 rows x 50 = 250 > 100
    assert chunk_pairs(pairs, 100) == [[0, 1], [2], [3]]
    assert chunk_pairs(pairs, 1) == [[0], [1], [2], [3]]
    assert chunk_pairs(pairs, 10_000) == [[0, 1, 2, 3]]


def test_chunked_forwards_give_the_same_loss_and_gradients(hf_base, tokenizer):
    import torch

    _, model, device = TorchTrainer(hf_base).load(config(lora_dropout=0.0))
    with torch.no_grad():  # move off B = 0 so that gradients reach every LoRA weight
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.01)
    examples = [*pairs()[:3], TrainExample([{"role": "user", "content": "Hi"}], "Hello.")]  # one SFT pair
    encoded = encode_pairs(tokenizer, examples, config(), "preference")
    results = []
    for budget in (1, 10_000):  # one pair per forward vs the whole micro-batch at once
        model.zero_grad(set_to_none=True)
        loss, margin_sum, n_pref, _ = micro_batch_backward(
            model, encoded, config(), "preference", tokenizer.pad_token_id, device, budget, 1.0
        )
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((loss, margin_sum, n_pref, grads))
    (loss_a, margin_a, pref_a, grads_a), (loss_b, margin_b, pref_b, grads_b) = results
    # The margin is beta x a difference of summed float32 log-probs of about -50: its rounding is a few
    # 1e-6 absolute however small the margin itself is (measured 3e-6 to 5e-6 at margins 0.016 and 0.15).
    assert loss_a == pytest.approx(loss_b, rel=1e-5) and margin_a == pytest.approx(margin_b, abs=2e-5)
    assert pref_a == pref_b == 3
    assert grads_a.keys() == grads_b.keys() and len(grads_a) == 2 * 7 * 30
    assert all(torch.allclose(grads_a[k], grads_b[k], rtol=1e-3, atol=1e-7) for k in grads_a)


def _count_forwards(model) -> list[int]:
    """A counter of forwards through the base model (the policy and the reference both pass there)."""
    calls = [0]
    model.get_base_model().register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_reference_logps_are_forwarded_once_and_match_the_uncached_ones(hf_base, tokenizer):
    import torch

    _, model, device = TorchTrainer(hf_base).load(config(lora_dropout=0.0))
    with torch.no_grad():  # a trained-looking adapter, so that policy and reference differ
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.01)
    encoded = encode_pairs(tokenizer, pairs()[:3], config(), "preference")
    calls = _count_forwards(model)
    cache = ReferenceLogps()
    pad = tokenizer.pad_token_id
    # Fill the cache one pair per forward (another batch layout than below): 3 policy + 3 reference.
    micro_batch_backward(model, encoded, config(), "preference", pad, device, 1, 1.0, cache, [5, 6, 7])
    assert calls[0] == 6 and sorted(cache.values) == [5, 6, 7]
    results = []
    for reference in (cache, None):  # cached: only the policy forward; uncached: policy + reference
        model.zero_grad(set_to_none=True)
        calls[0] = 0
        loss, margin_sum, _, _ = micro_batch_backward(
            model, encoded, config(), "preference", pad, device, 10_000, 1.0, reference, [5, 6, 7]
        )
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((calls[0], loss, margin_sum, grads))
    (calls_a, loss_a, margin_a, grads_a), (calls_b, loss_b, margin_b, grads_b) = results
    assert (calls_a, calls_b) == (1, 2)
    # The margin is beta x a difference of summed float32 log-probs of about -50: its rounding is a few
    # 1e-6 absolute however small the margin itself is (measured 3e-6 to 5e-6 at margins 0.016 and 0.15).
    assert loss_a == pytest.approx(loss_b, rel=1e-5) and margin_a == pytest.approx(margin_b, abs=2e-5)
    assert abs(margin_a) > 1e-3  # the adapter did move the policy away from the reference
    assert all(torch.allclose(grads_a[k], grads_b[k], rtol=1e-3, atol=1e-7) for k in grads_a)
