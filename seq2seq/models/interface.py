"""The one interface between models and everything that decodes them (DESIGN.md).

Greedy search, beam search, ensembles and rescoring see a model only through `Seq2Seq`.
Decoder state is a dict of batch-first tensors returned to the caller, never kept on the
module, so reordering beams is `select(state, rows)` for every architecture.

A state entry holds one row per hypothesis, or, if its name starts with `src` (`per_sentence`),
one row per source sentence, shared by all of that sentence's hypotheses: a search keeps each
sentence's hypotheses in consecutive rows, as many for every sentence (`hypotheses_per_sentence`),
so a Transformer attends over its encoder output once per sentence instead of copying it to
every beam and reordering the copies at every step.

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


def per_sentence(key: str) -> bool:
    """Whether a state entry holds one row per source sentence: its name, after an ensemble
    member's `i.` prefix, starts with `src`."""
    return key.rpartition(".")[2].startswith("src")


def hypotheses_per_sentence(rows: int, sentences: int) -> int:
    """How many consecutive hypothesis rows each source sentence has."""
    if sentences == 0 or rows % sentences:
        raise ValueError(f"{rows} hypothesis rows do not divide among {sentences} sentences")
    return rows // sentences


def select(state: State, rows: Tensor, sentences: Tensor | None = None) -> State:
    """Keep (reorder, repeat or drop) the hypothesis rows `rows` of a state, and the sentence
    rows `sentences` (None: the same sentences): beam search's only state op. Each sentence's
    new hypotheses must be consecutive rows, in the order of its sentence row."""

    def keep(key: str, value: Tensor) -> Tensor:
        if per_sentence(key):
            return value if sentences is None else value.index_select(0, sentences)
        return value.index_select(0, rows)

    return {k: keep(k, v) for k, v in state.items()}


def output_log_probs(out: nn.Linear, features: Tensor) -> Tensor:
    """float32 log-probabilities of the output layer `out` on (B, H) decoder features.

    The matmul runs in the features' dtype; the bias is added, and the log-softmax taken in
    place, in float32 (on a CPU, `out(features).log_softmax(-1, dtype=float32)` on bf16 took
    1-2x longer in a quick timing: a broadcast bias copy and a second (B, V) buffer)."""
    logits = (features @ out.weight.t()).float()
    if out.bias is not None:
        logits.add_(out.bias.float())
    return torch.log_softmax(logits, -1, out=logits)
