"""The frozen layers below the first LoRA layer, run once per sequence for a whole training run.

With LoRA on the last N decoder layers only (`TrainConfig.lora_layers`), everything below them is frozen
and deterministic (no LoRA, no dropout): the hidden state a sequence reaches after those layers never
changes during a run. So it is computed once, the first time a sequence is seen, and every later forward
(the policy's in each epoch, and the DPO reference's) starts from it and runs only the adapted layers.
Autograd never went below the first LoRA layer anyway; this saves the repeated forwards there.

How: the decoder's `layers` list is swapped, for the length of a call, for the frozen part (with the
final norm swapped for an identity, so the raw hidden state comes out) or for the adapted part (fed
through `inputs_embeds`); positions, the causal mask and RoPE are built by the model's own forward
exactly as for the whole stack. Padding is right-sided, so a cached state is exact whatever batch it
joins later. Decoders without that layout (`model.layers` and `model.norm`) run whole, as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

CACHE_BUDGET_BYTES = 512 * 2**20  # beyond this a run recomputes the states of sequences not yet cached


class FrozenPrefix:
    """Hidden states after the decoder layers below `start`, cached per token sequence."""

    def __init__(self, decoder, start: int, budget_bytes: int = CACHE_BUDGET_BYTES) -> None:
        self.decoder = decoder  # the HF decoder stack: .layers, .norm, forward(input_ids, inputs_embeds, ...)
        self.start = start
        self.budget = budget_bytes
        self.states: dict[tuple[int, ...], torch.Tensor] = {}
        self.bytes = 0

    @classmethod
    def for_model(cls, peft_model, adapted_layers: list[int]) -> FrozenPrefix | None:
        """A prefix for a PEFT causal LM whose LoRA starts above layer 0; None when there is nothing to
        skip or the decoder is not laid out as `model.layers` + `model.norm`."""
        decoder = getattr(peft_model.get_base_model(), "model", None)
        start = min(adapted_layers, default=0)
        if start == 0 or not hasattr(decoder, "layers") or not hasattr(decoder, "norm"):
            return None
        return cls(decoder, start)

    @contextmanager
    def _layers(self, part: slice, final_norm: bool) -> Iterator[None]:
        import torch

        layers, norm = self.decoder.layers, self.decoder.norm
        self.decoder.layers = torch.nn.ModuleList(layers[part])
        if not final_norm:
            self.decoder.norm = torch.nn.Identity()
        try:
            yield
        finally:
            self.decoder.layers, self.decoder.norm = layers, norm

    def adapted_only(self) -> AbstractContextManager[None]:
        """Run the model from `inputs_embeds` = these states through the adapted layers only."""
        return self._layers(slice(self.start, None), final_norm=True)

    def inputs_embeds(self, seqs: list, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The states of `seqs` (Encoded, collated as `ids`/`mask`), right-padded with zeros."""
        import torch

        keys = [tuple(s.input_ids) for s in seqs]
        missing = [i for i, k in enumerate(keys) if k not in self.states]
        fresh = {}
        if missing:
            with torch.no_grad(), self._layers(slice(0, self.start), final_norm=False):
                width = max(len(keys[i]) for i in missing)
                out = self.decoder(
                    input_ids=ids[missing, :width], attention_mask=mask[missing, :width], use_cache=False
                ).last_hidden_state
            for row, i in enumerate(missing):
                state = out[row, : len(keys[i])].clone()
                fresh[keys[i]] = state
                if self.bytes + state.nbytes <= self.budget:
                    self.states[keys[i]] = state
                    self.bytes += state.nbytes
        first = fresh.get(keys[0], self.states.get(keys[0]))
        embeds = torch.zeros((len(seqs), ids.shape[1], first.shape[-1]), dtype=first.dtype, device=ids.device)
        for row, key in enumerate(keys):
            state = fresh[key] if key in fresh else self.states[key]
            embeds[row, : len(key)] = state
        return embeds
