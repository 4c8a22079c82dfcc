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
    """(B,) longest allowed output per sentence, EOS included: int(a + b * length), in double
    precision as Python computes it (in float32, 10 + 1.3 * 90 came out as 126.99999), on the
    CPU (some devices have no float64)."""
    return (max_len_a + max_len_b * src_lens.cpu().double()).long().clamp(min=1)


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


def top_candidates(logp: Tensor, scores: Tensor, k: int, block: int = 64) -> tuple[Tensor, Tensor]:
    """The `k` best extensions of each sentence's beams: the top k of scores[i, b] + logp[i*K+b, v]
    over beams b and tokens v, for (n*K, V) log-probs and (n, K) beam scores. Returns values and
    flat indices b*V + v, each (n, k), as `(scores[..., None] + logp.view(n, K, V)).view(n, -1)
    .topk(k)` does (up to the order of ties).

    On a CPU it never builds that (n, K*V) sum, and sorts little: the k best candidates lie in
    the k vocabulary blocks (of `block` tokens) whose maxima plus their beam's score are highest,
    so only those k*block entries (and the last, partial block) go to `topk`. torch's CPU `topk`
    copies every row it is given; a block's maximum is a vectorised scan.
    """
    n, K = scores.shape
    V = logp.size(-1)
    nb = V // block
    if logp.device.type != "cpu" or nb * K < k or nb < 2:
        return (scores.reshape(-1, 1) + logp).view(n, K * V).topk(min(k, K * V), dim=-1)
    maxima = logp[:, : nb * block].unflatten(1, (nb, block)).amax(-1)  # (n*K, nb)
    _, best = (maxima.view(n, K, nb) + scores.unsqueeze(-1)).view(n, K * nb).topk(k, dim=-1)
    beam = best.div(nb, rounding_mode="floor")  # (n, k): the beam of each chosen block
    rows = torch.arange(n, device=logp.device).unsqueeze(1) * K + beam
    cols = (best % nb * block).unsqueeze(-1) + torch.arange(block, device=logp.device)
    values = (logp[rows.unsqueeze(-1), cols] + scores.gather(1, beam).unsqueeze(-1)).view(n, -1)
    flat = (beam * V).unsqueeze(-1).add(cols).view(n, -1)
    if nb * block < V:  # the last, partial block goes in whole
        tail = logp[:, nb * block :]
        values = torch.cat([values, (tail.view(n, K, -1) + scores.unsqueeze(-1)).view(n, -1)], 1)
        tail_cols = torch.arange(nb * block, V, device=logp.device)
        tail_flat = torch.arange(K, device=logp.device).unsqueeze(1) * V + tail_cols
        flat = torch.cat([flat, tail_flat.view(1, -1).expand(n, -1)], 1)
    top, where = values.topk(k, dim=-1)
    return top, flat.gather(1, where)


def best_tokens(logp: Tensor, block: int = 128) -> tuple[Tensor, Tensor]:
    """Each row's largest log-probability and its token, as `logp.max(-1)` (up to ties).

    On a CPU, torch's `max` with indices is not vectorised: for 150 x 8192 log-probs on one
    thread it took 3.1 ms, `top_candidates(logp, zeros, 1)` 0.8-0.9, and this 0.33-0.45. The
    maximum lies in the block (of `block` tokens) whose maximum is highest, so only that block
    is searched.
    """
    n, V = logp.shape
    nb = V // block
    if logp.device.type != "cpu" or nb < 2:
        return logp.max(-1)
    maxima = logp[:, : nb * block].unflatten(1, (nb, block)).amax(-1)  # (n, nb)
    cols = maxima.argmax(-1, keepdim=True) * block + torch.arange(block, device=logp.device)
    best, where = logp.gather(1, cols).max(-1)
    token = cols.gather(1, where.unsqueeze(1)).squeeze(1)
    if nb * block < V:  # the last, partial block
        tail_best, tail_where = logp[:, nb * block :].max(-1)
        better = tail_best > best
        best = torch.where(better, tail_best, best)
        token = torch.where(better, tail_where + nb * block, token)
    return best, token


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
        best, prev = best_tokens(logp)  # (B,)
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
    # All beams start identical, so the first step runs one row per sentence (width 1) and
    # its K best continuations fill the beams.
    state = model.encode(src, src_lens)
    limit = max_lengths(src_lens, max_len_a, max_len_b).to(device)
    scores = torch.zeros(B, 1, device=device)  # cumulative log-prob of live beams, (n, width)
    history = torch.full((B, 1), BOS, dtype=torch.long, device=device)
    active = torch.arange(B, device=device)  # original index of each sentence still searching
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    ended_count = torch.zeros(B, dtype=torch.long, device=device)  # len(finished[i])

    for t in range(int(limit.max())):
        n, width = scores.shape
        logp, state = model.decode_step(history[:, -1], state)  # (n*width, V)
        force = (limit[active] - 1 == t).repeat_interleave(width)
        logp = _mask_specials(logp.float(), force, t + 1 >= min_len)
        V = logp.size(-1)
        top, flat = top_candidates(logp, scores, min(2 * K, width * V))  # (n, 2K)
        beam, token = flat // V, flat % V
        ended = (token == EOS) & torch.isfinite(top)
        ended[:, K:] = False  # an EOS counts only if it is among the top K candidates

        if ended.any():
            where = ended.nonzero()  # (E, 2): sentence row, candidate
            rows = where[:, 0] * width + beam[where[:, 0], where[:, 1]]
            ended_count.index_add_(0, active[where[:, 0]], torch.ones_like(where[:, 0]))
            sents = active[where[:, 0]].tolist()
            logprobs = top[where[:, 0], where[:, 1]].tolist()
            for sent, tokens, lp in zip(sents, history[rows, 1:].tolist(), logprobs):
                score = length_normalise(lp, t + 1, length_penalty, alpha)
                finished[sent].append(Hypothesis(tokens, score, lp))

        # Continue with the K best candidates that did not end (stable sort puts them first;
        # where fewer than K did not end, as when the first step's vocabulary is smaller than
        # K + 1, an ended one fills the beam as dead, score -inf).
        ends = token == EOS
        keep = ends.long().argsort(dim=-1, stable=True)[:, :K]  # (n, K)
        scores = top.gather(1, keep).masked_fill(ends.gather(1, keep), NEG_INF)
        parent = torch.arange(n, device=device).unsqueeze(1) * width + beam.gather(1, keep)
        parent = parent.view(-1)
        history = torch.cat([history[parent], token.gather(1, keep).view(-1, 1)], dim=1)
        state = select(state, parent)

        still = (ended_count[active] < K) & (limit[active] - 1 > t)
        if not still.any():
            break
        if not still.all():  # drop finished sentences from the batch
            idx = still.nonzero().squeeze(1)
            width = scores.size(1)
            beam_rows = (idx.unsqueeze(1) * width + torch.arange(width, device=device)).view(-1)
            active, scores = active[idx], scores[idx]
            history, state = history[beam_rows], select(state, beam_rows, idx)

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
