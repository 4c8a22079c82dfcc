"""Greedy and beam search over the `Seq2Seq` protocol, batched, knowing nothing of the model.

A hypothesis's length counts its EOS. Its score is its log-probability divided by a length
penalty: `none` (raw log-probability, as Sutskever et al. 2014 ranked), `average` (per token), or
`gnmt` (Wu et al. 2016: ((5 + length) / 6) ** alpha; Vaswani et al. 2017 used alpha 0.6). A
sentence's output has at least `min_len` and at most `max_len_a + max_len_b * src_len` tokens;
at that length EOS is forced.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from seq2seq.data.tokenizer import BOS, EOS, PAD
from seq2seq.errors import UserError
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


def forced_length(tokens: int) -> dict[str, int | float]:
    """Decoding options that make every output exactly `tokens` tokens long (+ EOS): the same
    work for every sentence, for speed measurements."""
    return {"min_len": tokens + 1, "max_len_a": tokens + 1, "max_len_b": 0.0}


LENGTH_PENALTIES = ("none", "average", "gnmt")


def _mask_specials(logp: Tensor, force_eos: Tensor, allow_eos: bool = True) -> Tensor:
    """Never emit PAD or BOS, nor EOS before the minimum length; at the maximum only EOS
    (the maximum wins over the minimum)."""
    eos = logp[force_eos, EOS] if force_eos.any() else None
    logp[:, PAD] = NEG_INF
    logp[:, BOS] = NEG_INF
    if not allow_eos:
        logp[:, EOS] = NEG_INF
    if eos is not None:
        logp[force_eos] = NEG_INF
        logp[force_eos, EOS] = eos
    return logp


def length_normalise(logprob: float, length: int, length_penalty: str, alpha: float) -> float:
    """A hypothesis's score from its log-probability and its length (EOS included)."""
    if length_penalty == "none":
        return logprob
    if length_penalty == "average":
        return logprob / length
    if length_penalty == "gnmt":
        return logprob / ((5 + length) / 6) ** alpha
    raise UserError(f"decode.length_penalty={length_penalty!r}: use one of {LENGTH_PENALTIES}")


@torch.no_grad()
def greedy_search(
    model: Seq2Seq,
    src: Tensor,
    src_lens: Tensor,
    max_len_a: int = 10,
    max_len_b: float = 2.0,
    length_penalty: str = "none",
    alpha: float = 0.6,
    min_len: int = 1,
) -> list[Hypothesis]:
    """The most probable next token at every step, for a (B, S) batch."""
    length_normalise(0.0, 1, length_penalty, alpha)  # reject an unknown penalty before decoding
    B = src.size(0)
    state = model.encode(src, src_lens)
    limit = max_lengths(src_lens, max_len_a, max_len_b).to(src.device)
    prev = torch.full((B,), BOS, dtype=torch.long, device=src.device)
    logprob = torch.zeros(B, device=src.device)
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    steps = []
    for t in range(int(limit.max())):
        logp, state = model.decode_step(prev, state)
        logp = _mask_specials(logp.float(), limit - 1 == t, t + 1 >= min_len)
        best, prev = logp.max(-1)  # (B,)
        logprob += best.masked_fill(done, 0.0)
        prev = prev.masked_fill(done, PAD)
        steps.append(prev)
        done |= prev == EOS
        if done.all():
            break
    out = []
    for row, lp in zip(torch.stack(steps, 1).tolist(), logprob.tolist()):
        tokens = row[: row.index(EOS)]
        score = length_normalise(lp, len(tokens) + 1, length_penalty, alpha)
        out.append(Hypothesis(tokens, score, lp))
    return out


@torch.no_grad()
def beam_search(
    model: Seq2Seq,
    src: Tensor,
    src_lens: Tensor,
    beam_size: int = 5,
    max_len_a: int = 10,
    max_len_b: float = 2.0,
    length_penalty: str = "none",
    alpha: float = 0.6,
    min_len: int = 1,
    nbest: int = 1,
) -> list[list[Hypothesis]]:
    """Beam search over sentences x beams in one batch; per sentence the `nbest` best, sorted.

    A sentence stops when `beam_size` hypotheses have ended (an EOS among the top `beam_size`
    candidates of a step) and is then dropped from the batch.
    """
    length_normalise(0.0, 1, length_penalty, alpha)  # reject an unknown penalty before decoding
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
        logp = _mask_specials(logp.float(), force, t + 1 >= min_len)
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
                score = length_normalise(lp, t + 1, length_penalty, alpha)
                finished[sent].append(Hypothesis(tokens, score, lp))

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
    length_penalty: str = "none",
    alpha: float = 0.6,
    min_len: int = 1,
) -> list[Hypothesis]:
    """The best hypothesis per sentence: greedy for beam_size 1, beam search otherwise."""
    if beam_size < 1:
        raise UserError(f"decode.beam_size={beam_size}: must be at least 1")
    rules = dict(max_len_a=max_len_a, max_len_b=max_len_b, length_penalty=length_penalty,
                 alpha=alpha, min_len=min_len)  # fmt: skip
    if beam_size == 1:
        return greedy_search(model, src, src_lens, **rules)
    return [h[0] for h in beam_search(model, src, src_lens, beam_size, **rules)]
