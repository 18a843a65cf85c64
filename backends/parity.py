"""Base GGUF + GGUF adapter (llama.cpp) vs HF base + PEFT adapter (torch) -> ParityReport of next-token logits.

For each chat-templated prompt we take the next-token logits at the last prompt position, with and without
the adapter, in both runtimes, on the same token ids. The adapter-induced change (with minus without) must
agree across runtimes: its Pearson correlation, pooled over prompts and vocab, is the number that catches a
wrong export (a missing q/k permutation still loads and can still pass a behaviour smoke test).
"""

from __future__ import annotations

import ctypes
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uno_local.errors import AdapterError

NUDGE = 0.01  # the adapter scale's step either way for llama.cpp's jitter (`compare_logits`)


@dataclass
class ParityReport:
    delta_corr: float  # Pearson correlation of the adapter-induced logit change, llama.cpp vs torch
    top1_agreement: float  # share of prompts whose with-adapter next token agrees (up to near-ties, below)
    max_abs_err: float  # largest |delta_llama - delta_torch| over prompts and vocab
    n_prompts: int
    err_rms: float = 0.0  # rms of delta_llama - delta_torch: what the export gets wrong
    floor_rms: float = 0.0  # rms of base_llama - base_torch: the runtimes' own difference, no adapter
    top1_exact: float = 0.0  # share of prompts whose with-adapter argmax token is exactly the same
    jitter_rms: float = 0.0  # llama.cpp's own noise where the adapter acts (`compare_logits`)

    def passes(self, min_top1: float = 0.9, max_floor_ratio: float = 2.0, max_err: float = 0.05) -> bool:
        """The bar an adapter must clear before it is deployed: the same next tokens, and an adapter
        effect that differs between llama.cpp and torch by no more than twice what the runtimes
        themselves differ: the base model's difference, or llama.cpp's jitter with the adapter on,
        whichever is larger (llama.cpp's quantized paths quantize activations, so any change to them
        draws new rounding; Gemma 3 270M's Q4_K_M draws more of it than its base difference shows).

        Measured on a trained habit adapter: correct export 1.27x the floor (delta correlation 0.991),
        the same adapter without the q/k permutation 2.92x (0.981). A fixed correlation bar of 0.99 sat
        on the noise floor: it refused correct strong adapters and passed weak wrong ones. An adapter
        whose whole effect is under `max_err` logits passes too (too small to matter)."""
        if self.top1_agreement < min_top1:
            return False
        return self.max_abs_err < max_err or self.noise_ratio <= max_floor_ratio

    @property
    def noise_ratio(self) -> float:
        """The export error as a multiple of the runtimes' own difference (what `passes` bounds)."""
        return self.err_rms / max(self.floor_rms, self.jitter_rms, 1e-6)


def compare_logits(
    base_llama: np.ndarray,
    adapted_llama: np.ndarray,
    base_torch: np.ndarray,
    adapted_torch: np.ndarray,
    nudged_llama: tuple[np.ndarray, np.ndarray] | None = None,
) -> ParityReport:
    """Pure core: each argument is (n_prompts, vocab) next-token logits.

    `nudged_llama` are llama.cpp's logits with the adapter scaled by 1 - d and 1 + d (d small): their
    mean differs from `adapted_llama` only by rounding, as the adapter's own change cancels to first
    order, so its rms is llama.cpp's jitter where the adapter acts (`jitter_rms`).

    Top-1 agreement forgives near-ties: where each runtime's choice is within twice the base's own
    llama.cpp-vs-torch rms of the other's best logit, either token is a fair greedy pick (measured on
    a strong habit adapter: "Making" 24.62 vs "To" 24.57 in llama.cpp, 24.37 vs 24.49 in torch)."""
    delta_llama = (adapted_llama - base_llama).astype(np.float64)
    delta_torch = (adapted_torch - base_torch).astype(np.float64)
    corr = float(np.corrcoef(delta_llama.ravel(), delta_torch.ravel())[0, 1])
    err = float(np.abs(delta_llama - delta_torch).max())
    err_rms = float(np.sqrt(np.mean((delta_llama - delta_torch) ** 2)))
    floor = float(np.sqrt(np.mean((base_llama.astype(np.float64) - base_torch) ** 2)))
    pick_l, pick_t = adapted_llama.argmax(axis=1), adapted_torch.argmax(axis=1)
    rows = np.arange(len(pick_l))
    tie = 2.0 * floor
    near_tie = (adapted_torch[rows, pick_l] >= adapted_torch.max(axis=1) - tie) & (
        adapted_llama[rows, pick_t] >= adapted_llama.max(axis=1) - tie
    )
    exact = pick_l == pick_t
    top1 = float(np.mean(exact | near_tie))
    jitter = 0.0
    if nudged_llama is not None:
        mean = (nudged_llama[0].astype(np.float64) + nudged_llama[1]) / 2.0
        jitter = float(np.sqrt(np.mean((adapted_llama - mean) ** 2)))
    return ParityReport(corr, top1, err, base_llama.shape[0], err_rms, floor, float(np.mean(exact)), jitter)


def prompt_ids(tokenizer, prompts: list[str]) -> list[list[int]]:
    """Token ids of each prompt as a single user turn, chat-templated up to the assistant's turn."""
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
        )
        for p in prompts
    ]
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def last_logits(model, ids: list[list[int]]) -> np.ndarray:
    """Next-token logits at each prompt's last token, all prompts in one right-padded float32 batch."""
    import torch

    width = max(map(len, ids))
    x = torch.zeros((len(ids), width), dtype=torch.long)
    mask = torch.zeros_like(x)
    for i, seq in enumerate(ids):
        x[i, : len(seq)], mask[i, : len(seq)] = torch.tensor(seq), 1
    last = torch.tensor([len(seq) - 1 for seq in ids])
    with torch.no_grad():
        return model(input_ids=x, attention_mask=mask).logits[torch.arange(len(ids)), last].numpy()


class ParityChecker:
    """Both runtimes with the base model loaded once, and their adapter-free logits computed once; each
    `check` then costs only that adapter's own load and forwards (a retrain deploys a dozen adapters).

    `prompts` are user messages, chat-templated by the base's tokenizer; `ids` are token ids used as
    they are instead (a tiny test model has no chat template). `n_threads` is for llama.cpp (default: up
    to 4 cores). Close it (or use it as a context manager) to free llama.cpp's model.
    """

    def __init__(
        self,
        base_gguf: Path,
        hf_base_dir: Path,
        prompts: list[str] | None = None,
        *,
        ids: list[list[int]] | None = None,
        n_threads: int | None = None,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from backends.hf_base import quiet_transformers
        from backends.llama_runtime import prepare_llama_cpp

        quiet_transformers()
        Llama = prepare_llama_cpp().Llama  # quiet: llama.cpp notes every adapter tensor it cannot repack
        if not prompts and not ids:
            raise AdapterError("The parity check needs at least one prompt.")
        self.ids = ids or prompt_ids(AutoTokenizer.from_pretrained(hf_base_dir), prompts)
        self._torch = AutoModelForCausalLM.from_pretrained(hf_base_dir, dtype=torch.float32).eval()
        threads = n_threads or max(1, min(4, os.cpu_count() or 1))
        self._llm = Llama(
            model_path=str(base_gguf),
            n_ctx=max(map(len, self.ids)) + 8,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
        self.base_torch = last_logits(self._torch, self.ids)
        self.base_llama = self._llama_logits()

    def torch_adapted(self, peft_dir: Path) -> np.ndarray:
        """Logits from transformers + the PEFT adapter in `peft_dir`; the base model is left as it was."""
        from peft import PeftModel

        with warnings.catch_warnings():  # PEFT reads a transformers property deprecated in v5 (FutureWarning)
            warnings.simplefilter("ignore", FutureWarning)
            model = PeftModel.from_pretrained(self._torch, peft_dir).eval()
        try:
            return last_logits(model, self.ids)
        finally:
            self._torch = model.unload()  # removes the LoRA layers without merging them

    def llama_adapted(self, gguf_adapter: Path) -> np.ndarray:
        """Logits from llama.cpp with the GGUF adapter selected on the loaded base, then freed."""
        return self._llama_scaled(gguf_adapter, (1.0,))[0]

    def _llama_scaled(self, gguf_adapter: Path, scales: tuple[float, ...]) -> list[np.ndarray]:
        """llama.cpp's logits with the GGUF adapter at each scale, loaded once and then freed."""
        import llama_cpp

        adapter = llama_cpp.llama_adapter_lora_init(self._llm.model, str(gguf_adapter).encode())
        if not adapter:
            raise AdapterError(
                f"llama.cpp could not load the adapter {gguf_adapter}; it does not fit the model."
            )
        try:
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
            out = []
            for scale in scales:
                llama_cpp.llama_set_adapters_lora(self._llm.ctx, adapters, 1, (ctypes.c_float * 1)(scale))
                out.append(self._llama_logits())
            return out
        finally:
            llama_cpp.llama_set_adapters_lora(self._llm.ctx, None, 0, None)  # detach before freeing
            llama_cpp.llama_adapter_lora_free(adapter)

    def _llama_logits(self) -> np.ndarray:
        import llama_cpp

        rows = []
        for seq in self.ids:
            self._llm.reset()  # the KV cache was computed under another adapter setting
            self._llm.eval(seq)
            row = llama_cpp.llama_get_logits_ith(self._llm.ctx, -1)
            rows.append(np.ctypeslib.as_array(row, shape=(self._llm.n_vocab(),)).copy())
        return np.stack(rows)

    def check(self, peft_dir: Path, gguf_adapter: Path) -> ParityReport:
        """Compare the adapter's effect in llama.cpp (GGUF) and in torch (PEFT); llama.cpp also runs it
        nudged by NUDGE either way, for its own jitter."""
        adapted_l, lower, upper = self._llama_scaled(gguf_adapter, (1.0, 1.0 - NUDGE, 1.0 + NUDGE))
        adapted_t = self.torch_adapted(peft_dir)
        return compare_logits(self.base_llama, adapted_l, self.base_torch, adapted_t, (lower, upper))

    def close(self) -> None:
        self._llm.close()

    def __enter__(self) -> ParityChecker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
