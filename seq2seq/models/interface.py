"""The one interface between models and everything that decodes them (DESIGN.md).

Greedy search, beam search, ensembles and rescoring see a model only through `Seq2Seq`.
Decoder state is a dict of batch-first tensors returned to the caller, never kept on the
module, so reordering beams is `select(state, idx)` for every architecture.

Optionally a model also has `features(src, src_lens, tgt_in) -> (B, T, H)` and an `out`
`nn.Linear` with `forward == out(features(...))`: training and scoring then fuse the output
projection with the loss (`seq2seq.loss.linear_cross_entropy`) instead of building all logits.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

State = dict[str, Tensor]


@runtime_checkable
class Seq2Seq(Protocol):
    def forward(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing: (B, S) source, (B,) lengths, (B, T) decoder in -> (B, T, V) logits."""
        ...

    def encode(self, src: Tensor, src_lens: Tensor) -> State:
        """Encode a (B, S) source batch into the decoder's initial state."""
        ...

    def decode_step(self, prev: Tensor, state: State) -> tuple[Tensor, State]:
        """One step: (B,) previous tokens -> (B, V) log-probabilities and the next state."""
        ...


def select(state: State, idx: Tensor) -> State:
    """Reorder (or repeat, or drop) the batch rows of a state: beam search's only state op."""
    return {k: v.index_select(0, idx) for k, v in state.items()}


def output_log_probs(out: nn.Linear, features: Tensor) -> Tensor:
    """float32 log-probabilities of the output layer `out` on (B, H) decoder features.

    The matmul runs in the features' dtype; the bias is added, and the log-softmax taken in
    place, in float32 (on a CPU, `out(features).log_softmax(-1, dtype=float32)` on bf16 took
    1-2x longer in a quick timing: a broadcast bias copy and a second (B, V) buffer)."""
    logits = (features @ out.weight.t()).float()
    if out.bias is not None:
        logits.add_(out.bias.float())
    return torch.log_softmax(logits, -1, out=logits)
