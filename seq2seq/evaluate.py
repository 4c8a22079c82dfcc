"""`scripts/evaluate.py`'s logic: decode a split with a checkpoint and score it with sacreBLEU."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from seq2seq.checkpoint import Loaded, load_checkpoint
from seq2seq.data.sources import Source
from seq2seq.errors import UserError
from seq2seq.metrics import corpus_scores
from seq2seq.translate import translate_texts


def pick_device(device: str) -> str:
    """`auto` -> cuda when available, else cpu."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def decode_kwargs(decode: DictConfig) -> dict:
    return {k: decode[k] for k in ("beam_size", "max_len_a", "max_len_b", "length_norm")}


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
    """Translate `cfg.split`, write `<split>.hyp` and `<split>.json` into out_dir, return scores."""
    out_dir = Path(out_dir)
    loaded = load_checkpoint(cfg.ckpt, pick_device(cfg.device))
    pairs = eval_source(cfg, loaded).pairs(cfg.split)
    start = time.perf_counter()
    hyps = translate_texts(
        loaded.model,
        loaded.tokenizer,
        [s for s, _ in pairs],
        reverse_source=loaded.data["reverse_source"],
        max_tokens=cfg.max_tokens,
        **decode_kwargs(cfg.decode),
    )
    seconds = time.perf_counter() - start
    result = {
        "ckpt": str(loaded.path),
        "split": cfg.split,
        "sentences": len(pairs),
        "decode": OmegaConf.to_container(cfg.decode, resolve=True),
        **corpus_scores(hyps, [t for _, t in pairs]),
        "decode_seconds": round(seconds, 2),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{cfg.split}.hyp").write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    (out_dir / f"{cfg.split}.json").write_text(json.dumps(result, indent=2) + "\n")
    result["hyp_path"] = str(out_dir / f"{cfg.split}.hyp")
    return result
