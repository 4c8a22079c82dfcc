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

from torch import Tensor

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
