"""Several models behind the one `Seq2Seq` interface, so every search decodes an ensemble unchanged.

Sutskever et al. 2014 (Table 1) ensembled 5 reversed LSTMs differing only in initialisation and
batch order. The ensemble's next-token distribution is the average of its members'
probabilities, computed in log space: log(1/N * sum_i p_i) = logsumexp_i(log p_i) - log N.
Members may differ in architecture (an LSTM with a Transformer) and in source reversal; they
must share one vocabulary (the checkpoints' tokenizers are compared when loading).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from seq2seq.models.interface import State


def flip_sources(src: Tensor, src_lens: Tensor) -> Tensor:
    """Reverse every sentence's tokens before its final EOS; padding stays at the end."""
    S = src.size(1)
    pos = torch.arange(S, device=src.device).unsqueeze(0)  # (1, S)
    body = (src_lens - 1).unsqueeze(1)  # (B, 1) tokens before EOS
    idx = torch.where(pos < body, body - 1 - pos, pos)  # (B, S)
    return src.gather(1, idx)


class Ensemble(nn.Module):
    """Average the next-token probabilities of `models`; `flip[i]`: member i reads the source
    in the opposite direction to the one given (e.g. a reversed LSTM beside a Transformer)."""

    def __init__(self, models: Sequence[nn.Module], flip: Sequence[bool] | None = None) -> None:
        super().__init__()
        if not models:
            raise ValueError("an ensemble needs at least one model")
        self.members = nn.ModuleList(models)
        self.flip = list(flip) if flip is not None else [False] * len(models)
        if len(self.flip) != len(models):
            raise ValueError(f"{len(models)} models but {len(self.flip)} flip flags")

    def _source(self, i: int, src: Tensor, src_lens: Tensor) -> Tensor:
        return flip_sources(src, src_lens) if self.flip[i] else src

    def forward(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing: (B, T, V) log-probabilities of the averaged distribution."""
        lps = [m(self._source(i, src, src_lens), src_lens, tgt_in).float().log_softmax(-1)
               for i, m in enumerate(self.members)]  # fmt: skip
        return torch.stack(lps).logsumexp(0) - math.log(len(lps))

    def encode(self, src: Tensor, src_lens: Tensor) -> State:
        state = {}
        for i, m in enumerate(self.members):  # member i's state keys, prefixed "i."
            member = m.encode(self._source(i, src, src_lens), src_lens)
            state.update({f"{i}.{k}": v for k, v in member.items()})
        return state

    def decode_step(self, prev: Tensor, state: State) -> tuple[Tensor, State]:
        lps, new_state = [], {}
        for i, m in enumerate(self.members):
            prefix = f"{i}."
            member = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            lp, member = m.decode_step(prev, member)
            lps.append(lp.float())
            new_state.update({prefix + k: v for k, v in member.items()})
        return torch.stack(lps).logsumexp(0) - math.log(len(lps)), new_state
