"""Corpus scores with sacreBLEU on detokenised text against untouched references."""

from __future__ import annotations

from sacrebleu.metrics import BLEU, CHRF


def corpus_scores(hyps: list[str], refs: list[str]) -> dict[str, float | str]:
    """BLEU and chrF with their sacreBLEU signatures (the strings to quote beside a score)."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    bleu, bleu_signature = corpus_bleu(hyps, refs)
    chrf = CHRF()
    return {
        "bleu": bleu,
        "bleu_signature": bleu_signature,
        "chrf": chrf.corpus_score(hyps, [refs]).score,
        "chrf_signature": str(chrf.get_signature()),
    }


def corpus_bleu(hyps: list[str], refs: list[str]) -> tuple[float, str]:
    """sacreBLEU corpus BLEU and its signature."""
    bleu = BLEU()
    return bleu.corpus_score(hyps, [refs]).score, str(bleu.get_signature())
