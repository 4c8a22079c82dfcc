"""Forced decoding: a model's log-probability of given translations, and n-best rescoring.

Sutskever et al. 2014, §3.6 / Table 2: "we used the LSTM to rescore the publicly available
1000-best lists of the SMT baseline ... by taking an even average of their log probability and
the LSTM's score". N-best files use the Moses format `id ||| hypothesis ||| features ||| score`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from seq2seq.data.batching import BucketBatchSampler, EncodedPairs, collate, encode_sources
from seq2seq.data.sources import iter_lines, read_lines
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.errors import UserError
from seq2seq.loss import teacher_forced_losses


@dataclass
class NBestEntry:
    id: int
    hyp: str
    features: str
    score: float


@torch.no_grad()
def score_pairs(
    model: nn.Module,
    tokenizer: Tokenizer,
    srcs: list[str],
    tgts: list[str],
    reverse_source: bool,
    max_tokens: int = 8000,
) -> list[float]:
    """log p(tgt | src) for every pair: teacher-forced log-probabilities summed over the target
    tokens, EOS included (the quantity beam search ranks by with length_penalty=none)."""
    if len(srcs) != len(tgts):
        raise UserError(f"{len(srcs)} sources but {len(tgts)} targets to score")
    data = EncodedPairs(encode_sources(tokenizer, srcs, reverse_source).src,
                        tokenizer.encode_tgt(tgts))  # fmt: skip
    lengths = data.lengths()
    budget = max(max_tokens, max(lengths, default=1))
    device = next(model.parameters()).device
    out = [0.0] * len(srcs)
    for batch_idx in BucketBatchSampler(lengths, max_tokens=budget, shuffle=False):
        batch = {k: v.to(device) for k, v in collate([data[i] for i in batch_idx]).items()
                 if isinstance(v, torch.Tensor)}  # fmt: skip
        _, nll = teacher_forced_losses(model, batch)  # (B, T), 0 at padding
        for i, s in zip(batch_idx, nll.sum(1).tolist()):
            out[i] = -s
    return out


def read_nbest(path: str | Path) -> list[NBestEntry]:
    """Entries of a Moses n-best file, in file order."""
    entries = []
    for n, line in enumerate(iter_lines(Path(path)), start=1):  # UTF-8 errors name the line
        fields = [x.strip() for x in line.split("|||")]
        if len(fields) < 4:
            raise UserError(f"{path}:{n}: expected 'id ||| hypothesis ||| features ||| score'")
        try:
            entries.append(NBestEntry(int(fields[0]), fields[1], fields[2], float(fields[3])))
        except ValueError:
            raise UserError(
                f"{path}:{n}: the id must be an integer and the score a number"
            ) from None
    return entries


def rescore(entries: list[NBestEntry], model_scores: list[float], weight: float = 0.5) -> dict:
    """{id: best entry} by (1 - weight) * given score + weight * model log-probability
    (weight 0.5: the paper's even average)."""
    best: dict[int, tuple[float, NBestEntry]] = {}
    for entry, model_score in zip(entries, model_scores):
        combined = (1 - weight) * entry.score + weight * model_score
        if entry.id not in best or combined > best[entry.id][0]:
            best[entry.id] = (combined, entry)
    return {i: e for i, (_, e) in best.items()}


def score_lines(
    model: nn.Module,
    tokenizer: Tokenizer,
    reverse: bool,
    src: str,
    tgt: str | None = None,
    nbest: str | None = None,
    rescore_weight: float | None = None,
    max_tokens: int = 8000,
) -> list[str]:
    """What `scripts/score.py` prints: one log-probability per (src, tgt) line; or the n-best
    entries with a `seq2seq=` feature added; or, rescoring, the best hypothesis per source."""
    if (tgt is None) == (nbest is None):
        raise UserError("give tgt=FILE (a translation per source line) or nbest=FILE")
    srcs = read_lines(Path(src))
    if tgt is not None:
        tgts = read_lines(Path(tgt))
        if len(tgts) != len(srcs):
            raise UserError(f"{tgt} has {len(tgts)} lines but {src} has {len(srcs)}")
        return [f"{s:.6f}" for s in score_pairs(model, tokenizer, srcs, tgts, reverse, max_tokens)]
    entries = read_nbest(nbest)
    check_ids(entries, len(srcs), f"{nbest}", f"{src}")
    scores = score_nbest(model, tokenizer, reverse, srcs, entries, max_tokens)
    if rescore_weight is None:
        return [f"{e.id} ||| {e.hyp} ||| {e.features} seq2seq= {s:.6f} ||| {e.score:.6f}"
                for e, s in zip(entries, scores)]  # fmt: skip
    return best_per_source(entries, scores, len(srcs), rescore_weight)


def check_ids(entries: list[NBestEntry], n_sources: int, nbest: str, src: str) -> None:
    """Every n-best id must name a source line."""
    bad = next((e.id for e in entries if not 0 <= e.id < n_sources), None)
    if bad is not None:
        raise UserError(f"{nbest}: id {bad} but {src} has {n_sources} lines (ids count from 0)")


def score_nbest(
    model: nn.Module, tokenizer: Tokenizer, reverse: bool, srcs: list[str],
    entries: list[NBestEntry], max_tokens: int = 8000,
) -> list[float]:  # fmt: skip
    """The model's log-probability of every n-best hypothesis given its source."""
    return score_pairs(model, tokenizer, [srcs[e.id] for e in entries], [e.hyp for e in entries],
                       reverse, max_tokens)  # fmt: skip


def best_per_source(
    entries: list[NBestEntry], model_scores: list[float], n_sources: int, weight: float = 0.5
) -> list[str]:
    """The rescored 1-best hypothesis of every source line ("" where the list has none)."""
    best = rescore(entries, model_scores, weight)
    return [best[i].hyp if i in best else "" for i in range(n_sources)]
