"""The one interface between models and everything that decodes them (DESIGN.md).

Greedy search, beam search, ensembles and rescoring see a model only through `Seq2Seq`.
Decoder state is a dict of batch-first tensors returned to the caller, never kept on the
module, so reordering beams is `select(state, rows)` for every architecture.

A state entry holds one row per hypothesis, or, if its name starts with `src` (`per_sentence`),
one row per source sentence, shared by all of that sentence's hypotheses: a search keeps each
sentence's hypotheses in consecutive rows, as many for every sentence (`hypotheses_per_sentence`),
so a Transformer attends over its encoder output once per sentence instead of copying it to
every beam and reordering the copies at every step.

An entry whose name starts with `past` (`lazy`) is a cache that grows by one position per step,
like a Transformer's self-attention keys and values. `select` leaves it as it is and reorders
only the state's `rows`, an ordinary per-hypothesis entry: hypothesis i's cache is row
`rows[i]` of the stored one. The model gathers those rows when it next extends the cache
(`extend`), so the cache is copied once per step instead of twice (reordered, then grown).

Optionally a model also has `features(src, src_lens, tgt_in) -> (B, T, H)` and an `out`
`nn.Linear` with `forward == out(features(...))`: training and scoring then fuse the output
projection with the loss (`seq2seq.loss.linear_cross_entropy`) instead of building all logits.

And optionally `prepare_for_inference()`, as fairseq's `prepare_for_inference_`: called once
on a trained model that will only decode from then on (`prepare_for_inference` below; loading a
checkpoint for decoding and `precision=int8` call it), it may precompute what decoding steps
need, such as weights laid out for speed. Training after it is not supported.
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


def prepare_for_inference(model: nn.Module) -> nn.Module:
    """Call `prepare_for_inference()` of every module of `model` that has one (an ensemble's
    members too), after its weights are final and cast; returns `model`."""
    for module in list(model.modules()):  # a list: preparing may add modules
        prepare = getattr(module, "prepare_for_inference", None)
        if callable(prepare):
            prepare()
    return model


def per_sentence(key: str) -> bool:
    """Whether a state entry holds one row per source sentence: its name, after an ensemble
    member's `i.` prefix, starts with `src`."""
    return key.rpartition(".")[2].startswith("src")


def lazy(key: str) -> bool:
    """Whether a state entry is a growing cache that `select` leaves to the model (`extend`)."""
    return key.rpartition(".")[2].startswith("past")


def hypotheses_per_sentence(rows: int, sentences: int) -> int:
    """How many consecutive hypothesis rows each source sentence has."""
    if sentences == 0 or rows % sentences:
        raise ValueError(f"{rows} hypothesis rows do not divide among {sentences} sentences")
    return rows // sentences


def select(state: State, rows: Tensor, sentences: Tensor | None = None) -> State:
    """Keep (reorder, repeat or drop) the hypothesis rows `rows` of a state, and the sentence
    rows `sentences` (None: the same sentences): beam search's only state op. Each sentence's
    new hypotheses must be consecutive rows, in the order of its sentence row. `lazy` entries
    stay as they are; the state's `rows` says which of their rows each hypothesis now has."""

    def keep(key: str, value: Tensor) -> Tensor:
        if lazy(key):
            return value
        if per_sentence(key):
            return value if sentences is None else value.index_select(0, sentences)
        return value.index_select(0, rows)

    return {k: keep(k, v) for k, v in state.items()}


def extend(past: Tensor, rows: Tensor, new: Tensor) -> Tensor:
    """A `lazy` cache's rows `rows` (past: (N, H, t, D)) followed by one new position
    (new: (R, H, 1, D)), in one copy: the rows are gathered straight into the result. Under
    autocast the first step's empty cache has the memory's dtype (float32) and `new` the
    projections' (bf16): the cache takes `new`'s."""
    R, H, t, D = new.size(0), past.size(1), past.size(2), past.size(3)
    if past.dtype != new.dtype:
        past = past.to(new.dtype)
    if torch.is_grad_enabled() and (past.requires_grad or new.requires_grad):
        return torch.cat([past.index_select(0, rows), new], 2)  # autograd: no out=
    out = new.new_empty(R, H, t + 1, D)
    torch.index_select(past, 0, rows, out=out[:, :, :t])
    out[:, :, t:] = new
    return out


def output_log_probs(out: nn.Module, features: Tensor) -> Tensor:
    """float32 log-probabilities of the output layer `out` on (B, H) decoder features.

    The matmul runs in the features' dtype; the bias is added (by the matmul itself in
    float32), and the log-softmax taken in place, in float32 (on a CPU,
    `out(features).log_softmax(-1, dtype=float32)` on bf16 took 1-2x longer in a quick timing:
    a broadcast bias copy and a second (B, V) buffer); with autograd on, out of place. An
    int8 layer (`precision=int8`, not an `nn.Linear`) returns float32 logits itself."""
    if not isinstance(out, nn.Linear):
        logits = out(features).float()
    elif out.bias is not None and features.dtype == torch.float32:
        logits = torch.addmm(out.bias, features, out.weight.t())
    else:
        logits = (features @ out.weight.t()).float()
        if out.bias is not None:
            logits.add_(out.bias.float())
    if logits.requires_grad:  # autograd has no derivative for the in-place (out=) form
        return logits.log_softmax(-1)
    return torch.log_softmax(logits, -1, out=logits)
