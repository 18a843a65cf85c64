"""Base GGUF + GGUF adapter (llama.cpp) vs HF base + PEFT adapter (torch) -> ParityReport of next-token logits.

For each chat-templated prompt we take the next-token logits at the last prompt position, with and without
the adapter, in both runtimes, on the same token ids. The adapter-induced change (with minus without) must
agree across runtimes to within float32 rounding.

llama.cpp runs a float32 copy of the base (`float32_base`: the same weights, dequantized once by llama.cpp
itself), not the quantized file it serves: on a quantized file llama.cpp also quantizes the activations it
multiplies the weights with, and that rounding (0.33 logits rms on the embedded Q4_1 model) is larger than
what a wrong export changes. Measured on 36 trained Expert checkpoints (docs/eval.md): on the Q4_1 file
right exports scored 0.60-2.00x the runtimes' difference and exports without the q/k permutation
0.82-3.66x; on the float32 copy right ones 0.73-1.94x and wrong ones 13.7-128x.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uno_local.errors import AdapterError

FLOAT32_BASE = "llama-f32.gguf"  # the float32 copy's name in the derived HF folder
# The allowed export error, in rms logits: this many times the runtimes' own difference on the base,
# plus this share of the adapter's effect (float32 rounding grows with what the adapter changes).
FLOOR_TIMES = 3.0
EFFECT_SHARE = 0.01


@dataclass
class ParityReport:
    delta_corr: float  # Pearson correlation of the adapter-induced logit change, llama.cpp vs torch
    top1_agreement: float  # share of prompts whose with-adapter next token agrees (up to near-ties, below)
    max_abs_err: float  # largest |delta_llama - delta_torch| over prompts and vocab
    n_prompts: int
    err_rms: float = 0.0  # rms of delta_llama - delta_torch: what the export gets wrong
    floor_rms: float = 0.0  # rms of base_llama - base_torch: the runtimes' own difference, no adapter
    effect_rms: float = 0.0  # rms of delta_torch: how much the adapter changes the logits
    top1_exact: float = 0.0  # share of prompts whose with-adapter argmax token is exactly the same

    @property
    def allowed_err(self) -> float:
        """The export error float32 rounding explains: `FLOOR_TIMES` x the base's difference plus
        `EFFECT_SHARE` of the adapter's effect."""
        return FLOOR_TIMES * self.floor_rms + EFFECT_SHARE * self.effect_rms

    @property
    def error_ratio(self) -> float:
        """The export error as a multiple of what rounding explains (`passes` wants at most 1)."""
        return self.err_rms / max(self.allowed_err, 1e-9)

    def passes(self, min_top1: float = 0.9, max_err: float = 0.05) -> bool:
        """The bar an adapter must clear before it is deployed: the same next tokens, and an adapter effect
        that differs between llama.cpp and torch by no more than rounding explains (`allowed_err`).

        Measured on the float32 copy (36 checkpoints of pet-care's three Experts, docs/eval.md): right
        exports 0.09-0.32 of the allowed error, the same checkpoints exported without the q/k permutation
        3.0-10.1 of it. An adapter whose whole effect is under `max_err` logits passes too (too small to
        matter)."""
        if self.top1_agreement < min_top1:
            return False
        return self.max_abs_err < max_err or self.err_rms <= self.allowed_err


def compare_logits(
    base_llama: np.ndarray, adapted_llama: np.ndarray, base_torch: np.ndarray, adapted_torch: np.ndarray
) -> ParityReport:
    """Pure core: each argument is (n_prompts, vocab) next-token logits.

    Top-1 agreement forgives near-ties: where each runtime's choice is within twice the base's own
    llama.cpp-vs-torch rms of the other's best logit, either token is a fair greedy pick."""
    delta_llama = (adapted_llama - base_llama).astype(np.float64)
    delta_torch = (adapted_torch - base_torch).astype(np.float64)
    corr = float(np.corrcoef(delta_llama.ravel(), delta_torch.ravel())[0, 1])
    err = float(np.abs(delta_llama - delta_torch).max())
    err_rms = float(np.sqrt(np.mean((delta_llama - delta_torch) ** 2)))
    floor = float(np.sqrt(np.mean((base_llama.astype(np.float64) - base_torch) ** 2)))
    effect = float(np.sqrt(np.mean(delta_torch**2)))
    pick_l, pick_t = adapted_llama.argmax(axis=1), adapted_torch.argmax(axis=1)
    rows = np.arange(len(pick_l))
    tie = 2.0 * floor
    near_tie = (adapted_torch[rows, pick_l] >= adapted_torch.max(axis=1) - tie) & (
        adapted_llama[rows, pick_t] >= adapted_llama.max(axis=1) - tie
    )
    exact = pick_l == pick_t
    top1 = float(np.mean(exact | near_tie))
    return ParityReport(corr, top1, err, base_llama.shape[0], err_rms, floor, effect, float(np.mean(exact)))


def float32_base(base_gguf: Path, folder: Path) -> Path:
    """A float32 GGUF of `base_gguf`'s weights in `folder` (the base's derived HF folder, keyed by the
    GGUF), written once by llama.cpp's own quantizer and renamed into place, so a crash leaves none."""
    target = folder / FLOAT32_BASE
    if target.is_file():
        return target
    from backends.llama_runtime import prepare_llama_cpp

    llama_cpp = prepare_llama_cpp()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_ALL_F32
    params.allow_requantize = True  # from a quantized file: llama.cpp dequantizes each tensor
    tmp = folder / f".{FLOAT32_BASE}.tmp-{os.getpid()}"
    try:
        failed = llama_cpp.llama_model_quantize(str(base_gguf).encode(), str(tmp).encode(), params)
        if failed:
            raise AdapterError(
                f"llama.cpp could not write a float32 copy of {base_gguf} for the parity check "
                f"(the disk may be full, or the model file unreadable); no adapter was deployed."
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


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

    llama.cpp runs the float32 copy of `base_gguf` (`float32_base`, kept in `hf_base_dir`). `prompts` are
    user messages, chat-templated by the base's tokenizer; `ids` are token ids used as they are instead
    (a tiny test model has no chat template). `n_threads` is for llama.cpp (default: up to 4 cores).
    Close it (or use it as a context manager) to free llama.cpp's model.
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
            model_path=str(float32_base(base_gguf, hf_base_dir)),
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
        import ctypes

        import llama_cpp

        adapter = llama_cpp.llama_adapter_lora_init(self._llm.model, str(gguf_adapter).encode())
        if not adapter:
            raise AdapterError(
                f"llama.cpp could not load the adapter {gguf_adapter}; it does not fit the model."
            )
        try:
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
            llama_cpp.llama_set_adapters_lora(self._llm.ctx, adapters, 1, (ctypes.c_float * 1)(1.0))
            return self._llama_logits()
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
        """Compare the adapter's effect in llama.cpp (GGUF) and in torch (PEFT)."""
        adapted_t = self.torch_adapted(peft_dir)
        return compare_logits(self.base_llama, self.llama_adapted(gguf_adapter), self.base_torch, adapted_t)

    def close(self) -> None:
        self._llm.close()

    def __enter__(self) -> ParityChecker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
