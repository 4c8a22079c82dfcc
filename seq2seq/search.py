"""Greedy and beam search over the `Seq2Seq` protocol, batched, knowing nothing of the model.

A hypothesis's length counts its EOS; its score is sum(log p) / length**length_norm
(0 = raw log-probability, 1 = per-token average). A sentence's output may be at most
`max_len_a + max_len_b * src_len` tokens; at that length EOS is forced.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from seq2seq.data.tokenizer import BOS, EOS, PAD
from seq2seq.models.interface import Seq2Seq, select

NEG_INF = float("-inf")


@dataclass
class Hypothesis:
    tokens: list[int]  # without BOS and EOS
    score: float  # normalised log-probability (see module docstring)
    logprob: float  # raw sum of log-probabilities, EOS included


def max_lengths(src_lens: Tensor, max_len_a: int, max_len_b: float) -> Tensor:
    """(B,) longest allowed output per sentence, EOS included."""
    return (max_len_a + max_len_b * src_lens.float()).long().clamp(min=1)


def _mask_specials(logp: Tensor, force_eos: Tensor) -> Tensor:
    """Never emit PAD or BOS; rows at their maximum length may only emit EOS."""
    logp[:, PAD] = NEG_INF
    logp[:, BOS] = NEG_INF
    if force_eos.any():
        eos = logp[force_eos, EOS]
        logp[force_eos] = NEG_INF
        logp[force_eos, EOS] = eos
    return logp


def _norm(logprob: float, length: int, length_norm: float) -> float:
    return logprob / length**length_norm if length_norm else logprob


@torch.no_grad()
def greedy_search(
    model: Seq2Seq,
    src: Tensor,
    src_lens: Tensor,
    max_len_a: int = 10,
    max_len_b: float = 2.0,
    length_norm: float = 0.0,
) -> list[Hypothesis]:
    """The most probable next token at every step, for a (B, S) batch."""
    B = src.size(0)
    state = model.encode(src, src_lens)
    limit = max_lengths(src_lens, max_len_a, max_len_b).to(src.device)
    prev = torch.full((B,), BOS, dtype=torch.long, device=src.device)
    logprob = torch.zeros(B, device=src.device)
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    steps = []
    for t in range(int(limit.max())):
        logp, state = model.decode_step(prev, state)
        best, prev = _mask_specials(logp.float(), limit - 1 == t).max(-1)  # (B,)
        logprob += best.masked_fill(done, 0.0)
        prev = prev.masked_fill(done, PAD)
        steps.append(prev)
        done |= prev == EOS
        if done.all():
            break
    out = []
    for row, lp in zip(torch.stack(steps, 1).tolist(), logprob.tolist()):
        tokens = row[: row.index(EOS)]
        out.append(Hypothesis(tokens, _norm(lp, len(tokens) + 1, length_norm), lp))
    return out


@torch.no_grad()
def beam_search(
    model: Seq2Seq,
    src: Tensor,
    src_lens: Tensor,
    beam_size: int = 5,
    max_len_a: int = 10,
    max_len_b: float = 2.0,
    length_norm: float = 0.0,
    nbest: int = 1,
) -> list[list[Hypothesis]]:
    """Beam search over sentences x beams in one batch; per sentence the `nbest` best, sorted.

    A sentence stops when `beam_size` hypotheses have ended (an EOS among the top `beam_size`
    candidates of a step) and is then dropped from the batch.
    """
    B, K, device = src.size(0), beam_size, src.device
    rows = torch.arange(B, device=device).repeat_interleave(K)  # sentence of each beam row
    state = select(model.encode(src, src_lens), rows)
    limit = max_lengths(src_lens, max_len_a, max_len_b).to(device)
    scores = torch.full((B, K), NEG_INF, device=device)  # cumulative log-prob of live beams
    scores[:, 0] = 0.0  # all beams start identical: keep one
    history = torch.full((B * K, 1), BOS, dtype=torch.long, device=device)
    active = torch.arange(B, device=device)  # original index of each sentence still searching
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]

    for t in range(int(limit.max())):
        n = active.numel()
        logp, state = model.decode_step(history[:, -1], state)  # (n*K, V)
        force = (limit[active] - 1 == t).repeat_interleave(K)
        logp = _mask_specials(logp.float(), force)
        V = logp.size(-1)
        cand = (scores.view(-1, 1) + logp).view(n, K * V)
        top, flat = cand.topk(min(2 * K, K * V), dim=-1)  # (n, 2K)
        beam, token = flat // V, flat % V
        ended = (token == EOS) & torch.isfinite(top)
        ended[:, K:] = False  # an EOS counts only if it is among the top K candidates

        if ended.any():
            where = ended.nonzero()  # (E, 2): sentence row, candidate
            rows = where[:, 0] * K + beam[where[:, 0], where[:, 1]]
            sents = active[where[:, 0]].tolist()
            logprobs = top[where[:, 0], where[:, 1]].tolist()
            for sent, tokens, lp in zip(sents, history[rows, 1:].tolist(), logprobs):
                finished[sent].append(Hypothesis(tokens, _norm(lp, t + 1, length_norm), lp))

        # Continue with the K best candidates that did not end (stable sort puts them first).
        keep = (token == EOS).long().argsort(dim=-1, stable=True)[:, :K]  # (n, K)
        scores = top.gather(1, keep)
        parent = (torch.arange(n, device=device).unsqueeze(1) * K + beam.gather(1, keep)).view(-1)
        history = torch.cat([history[parent], token.gather(1, keep).view(-1, 1)], dim=1)
        state = select(state, parent)

        counts = torch.tensor([len(finished[int(s)]) for s in active], device=device)
        still = (counts < K) & (limit[active] - 1 > t)
        if not still.any():
            break
        if not still.all():  # drop finished sentences from the batch
            idx = still.nonzero().squeeze(1)
            beam_rows = (idx.unsqueeze(1) * K + torch.arange(K, device=device)).view(-1)
            active, scores = active[idx], scores[idx]
            history, state = history[beam_rows], select(state, beam_rows)

    return [sorted(h, key=lambda h: h.score, reverse=True)[:nbest] for h in finished]


def generate(
    model: Seq2Seq,
    src: Tensor,
    src_lens: Tensor,
    beam_size: int = 1,
    max_len_a: int = 10,
    max_len_b: float = 2.0,
    length_norm: float = 0.0,
) -> list[Hypothesis]:
    """The best hypothesis per sentence: greedy for beam_size 1, beam search otherwise."""
    if beam_size == 1:
        return greedy_search(model, src, src_lens, max_len_a, max_len_b, length_norm)
    hyps = beam_search(model, src, src_lens, beam_size, max_len_a, max_len_b, length_norm)
    return [h[0] for h in hyps]
