"""Corpus scores with sacreBLEU on detokenised text against untouched references; BLEU by
sentence length and by word rarity (Sutskever et al. 2014, Figure 3)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable

from sacrebleu.metrics import BLEU, CHRF, TER

# Figure 3 (left): sentences grouped by length in words; the last bucket is open-ended.
LENGTH_BUCKETS = (0, 8, 12, 17, 22, 28, 35)


def corpus_scores(hyps: list[str], refs: list[str]) -> dict[str, float | str]:
    """BLEU, chrF and TER with their sacreBLEU signatures (the strings to quote beside a score)."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    bleu, bleu_signature = corpus_bleu(hyps, refs)
    chrf, ter = CHRF(), TER()
    return {
        "bleu": bleu,
        "bleu_signature": bleu_signature,
        "chrf": chrf.corpus_score(hyps, [refs]).score,
        "chrf_signature": str(chrf.get_signature()),
        "ter": ter.corpus_score(hyps, [refs]).score,
        "ter_signature": str(ter.get_signature()),
    }


def corpus_bleu(hyps: list[str], refs: list[str]) -> tuple[float, str]:
    """sacreBLEU corpus BLEU and its signature."""
    bleu = BLEU()
    return bleu.corpus_score(hyps, [refs]).score, str(bleu.get_signature())


def tokenised_bleu(hyps: list[str], refs: list[str], lang: str) -> float:
    """BLEU on Moses-tokenised text (aggressive hyphen splitting), as multi-bleu.perl scored
    the papers: not comparable with sacreBLEU, and labelled so wherever it is shown."""
    from sacremoses import MosesTokenizer

    tok = MosesTokenizer(lang=lang)

    def tokenise(lines: list[str]) -> list[str]:
        return [tok.tokenize(line, aggressive_dash_splits=True, escape=False, return_str=True)
                for line in lines]  # fmt: skip

    sacrebleu_log = logging.getLogger("sacrebleu")
    level = sacrebleu_log.level
    sacrebleu_log.setLevel(logging.ERROR)  # it warns about tokenised input: here that is the point
    try:
        return BLEU(tokenize="none").corpus_score(tokenise(hyps), [tokenise(refs)]).score
    finally:
        sacrebleu_log.setLevel(level)


def _bucketed_bleu(
    keys: list[float], edges: Iterable[float], hyps: list[str], refs: list[str]
) -> list[dict]:
    edges = list(edges)
    rows = []
    for i, low in enumerate(edges):
        high = edges[i + 1] if i + 1 < len(edges) else None
        idx = [j for j, k in enumerate(keys) if k >= low and (high is None or k < high)]
        if not idx:
            continue
        bleu = BLEU().corpus_score([hyps[j] for j in idx], [[refs[j] for j in idx]]).score
        rows.append({"from": low, "to": high, "sentences": len(idx), "bleu": bleu})
    return rows


def bleu_by_length(
    srcs: list[str], hyps: list[str], refs: list[str], edges: Iterable[int] = LENGTH_BUCKETS
) -> list[dict]:
    """Corpus BLEU of the sentences whose source has [from, to) words, per bucket."""
    return _bucketed_bleu([len(s.split()) for s in srcs], edges, hyps, refs)


def word_ranks(sentences: Iterable[str]) -> dict[str, int]:
    """Frequency rank of every word (1 = most frequent) in a stream of sentences."""
    counts = Counter(w for s in sentences for w in s.split())
    return {w: r for r, (w, _) in enumerate(counts.most_common(), start=1)}


def bleu_by_rarity(
    srcs: list[str], hyps: list[str], refs: list[str], ranks: dict[str, int], buckets: int = 6
) -> list[dict]:
    """Figure 3 (right): sentences sorted by the average frequency rank of their source words
    (unseen words rank last), cut into `buckets` groups of equal size; BLEU per group."""
    unseen = len(ranks) + 1
    avg = [sum(ranks.get(w, unseen) for w in s.split()) / max(len(s.split()), 1) for s in srcs]
    order = sorted(avg)
    size = max(1, -(-len(order) // buckets))  # ceil
    edges = sorted({order[i] for i in range(0, len(order), size)})
    return _bucketed_bleu(avg, edges, hyps, refs)
