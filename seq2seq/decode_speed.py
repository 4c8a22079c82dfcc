"""Decoding speed: sentences/s for each beam size, batched over sentences x beams, one sentence at
a time (a naive decoder), and, for a Transformer, recomputing the prefix at every step instead of
using the key/value cache.

All variants run the same search and produce the same outputs (the share is reported); only
the batching or the cache differ. Optionally every output is forced to a fixed length
(`min_len` = maximum length), so every variant does exactly the same number of steps.
"""

from __future__ import annotations

import statistics
import time

import torch
from omegaconf import DictConfig

from seq2seq.checkpoint import load_models
from seq2seq.evaluate import decode_kwargs, eval_source
from seq2seq.models.transformer import RecomputePrefix, TransformerSeq2Seq
from seq2seq.search import forced_length
from seq2seq.translate import translate_texts


def sentences_per_second(
    repeats: int, model: torch.nn.Module, groups: list[list[str]], **kwargs: object
) -> tuple[float, list[str]]:
    """Sentences/s translating each group of texts in one call (median of `repeats`)."""
    seconds, out = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        out = [t for group in groups for t in translate_texts(model, texts=group, **kwargs)]
        seconds.append(time.perf_counter() - start)
    return sum(len(g) for g in groups) / statistics.median(seconds), out


def decode_speed(cfg: DictConfig) -> list[dict]:
    """A row per (beam size, output length): sentences/s per variant (conf/decode_speed.yaml)."""
    loaded = load_models(cfg.ckpt, cfg.device, cfg.precision)
    texts = [s for s, _ in eval_source(cfg, loaded).pairs(cfg.split)]
    texts = texts[: cfg.limit] if cfg.limit else texts
    alone = texts[: cfg.per_sentence_limit] if cfg.per_sentence_limit else []
    models = {"batched": loaded.model}
    if isinstance(loaded.model, TransformerSeq2Seq) and cfg.recompute:
        models["recompute"] = RecomputePrefix(loaded.model)
    common = dict(tokenizer=loaded.tokenizer, reverse_source=loaded.data["reverse_source"])
    rows = []
    with torch.inference_mode():
        for beam in cfg.beams:
            decode = {**decode_kwargs(cfg.decode), "beam_size": beam}
            outputs = {"natural": decode}
            if cfg.forced_length:  # tokens + EOS, no earlier and no later
                forced = forced_length(cfg.forced_length)
                outputs[f"forced {cfg.forced_length}"] = {**decode, **forced}
            for output, kw in outputs.items():
                row, reference = {"beam": beam, "output": output}, None
                for name, model in models.items():
                    rate, out = sentences_per_second(cfg.repeats, model, [texts], **common, **kw)
                    reference = reference or out
                    row[name] = rate
                    row[f"{name}_same"] = sum(a == b for a, b in zip(out, reference)) / len(out)
                if alone:
                    groups = [[t] for t in alone]
                    rate, out = sentences_per_second(cfg.repeats, loaded.model, groups, **common,
                                                     **kw)  # fmt: skip
                    same = sum(a == b for a, b in zip(out, reference))
                    row["per_sentence"], row["per_sentence_same"] = rate, same / len(alone)
                rows.append(row)
    return rows
