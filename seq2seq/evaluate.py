"""`scripts/evaluate.py`'s logic: decode a split with a checkpoint and score it with sacreBLEU."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from seq2seq.checkpoint import Loaded, load_models
from seq2seq.data.sources import Source
from seq2seq.errors import UserError
from seq2seq.metrics import (
    bleu_by_length,
    bleu_by_rarity,
    corpus_scores,
    tokenised_bleu,
    word_ranks,
)
from seq2seq.report import bucket_table, plot_buckets, write_nbest
from seq2seq.translate import translate_nbest

log = logging.getLogger(__name__)


def checkpoint_names(ckpt: object) -> str | list[str]:
    """`ckpt=` as given: one path, or the list of an ensemble's members."""
    return str(ckpt) if isinstance(ckpt, str) else [str(p) for p in ckpt]


def decode_kwargs(decode: DictConfig) -> dict:
    """The `decode` config group as keyword arguments of `search.generate`."""
    return OmegaConf.to_container(decode, resolve=True)


def eval_source(cfg: DictConfig, loaded: Loaded) -> Source:
    """The checkpoint's own data source, or `data=...` given on the command line."""
    trained = loaded.data
    if cfg.get("data") is None:
        return instantiate(trained["source"])
    for key in ("src", "tgt"):
        if cfg.data[key] != trained[key]:
            raise UserError(
                f"data.{key}={cfg.data[key]} but {loaded.path} translates "
                f"{trained['src']}->{trained['tgt']}; set data.src/data.tgt to match"
            )
    return instantiate(cfg.data.source)


def evaluate(cfg: DictConfig, out_dir: str | Path) -> dict:
    """Translate `cfg.split` and score it; writes into out_dir `<split>.hyp`, `<split>.json`
    and, as configured, `<split>.nbest`, `<split>.buckets.md` and `<split>.png`."""
    out_dir = Path(out_dir)
    loaded = load_models(cfg.ckpt, cfg.device, cfg.precision)
    source = eval_source(cfg, loaded)
    pairs = source.pairs(cfg.split)
    srcs, refs = [s for s, _ in pairs], [t for _, t in pairs]
    start = time.perf_counter()
    nbest = translate_nbest(
        loaded.model,
        loaded.tokenizer,
        srcs,
        reverse_source=loaded.data["reverse_source"],
        **decode_kwargs(cfg.decode),
    )
    seconds = time.perf_counter() - start
    hyps = [t[0].text if t else "" for t in nbest]
    result = {
        "ckpt": checkpoint_names(cfg.ckpt),
        "split": cfg.split,
        "sentences": len(pairs),
        "decode": OmegaConf.to_container(cfg.decode, resolve=True),
        **corpus_scores(hyps, refs),
        "decode_seconds": round(seconds, 2),
    }
    out_dir.mkdir(parents=True, exist_ok=True)

    def out(ext: str) -> Path:
        return out_dir / f"{cfg.split}.{ext}"

    if cfg.decode.get("nbest", 1) > 1:
        write_nbest(out("nbest"), nbest)
    report = cfg.get("report") or {}
    if report.get("tokenised_bleu"):
        result["tokenised_bleu"] = tokenised_bleu(hyps, refs, loaded.data["tgt"])
        result["tokenised_bleu_note"] = "multi-bleu style: Moses tokenizer -a, not sacreBLEU"
    if report.get("by_length"):
        result["by_length"] = bleu_by_length(srcs, hyps, refs)
        result["by_rarity"] = _by_rarity(source, loaded.data, srcs, hyps, refs,
                                         report.get("rank_sentences"))  # fmt: skip
        tables = bucket_table(result["by_length"], "source words")
        if result["by_rarity"]:
            tables += "\n" + bucket_table(result["by_rarity"], "avg. word rank", "{:.0f}")
        out("buckets.md").write_text(tables)
        title = f"{cfg.split}: BLEU {result['bleu']:.2f} ({len(pairs)} sentences)"
        plot_buckets(result["by_length"], result["by_rarity"], out("png"), title)
    out("hyp").write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    out("json").write_text(json.dumps(result, indent=2) + "\n")
    result["hyp_path"] = str(out("hyp"))
    return result


def _by_rarity(
    source: Source, data: dict, srcs: list[str], hyps: list[str], refs: list[str],
    limit: int | None,
) -> list[dict] | None:  # fmt: skip
    """BLEU by average word rank, ranks counted on the training split's sources."""
    try:
        train = source.dataset(data.get("train_split", "train"))
    except UserError as e:
        log.warning("no BLEU by word rarity: %s", e)
        return None
    if limit is not None and limit < len(train):
        train = train.select(range(limit))  # the first `limit` sentences, read from Arrow
    ranks = word_ranks(train["src"])
    return bleu_by_rarity(srcs, hyps, refs, ranks)
