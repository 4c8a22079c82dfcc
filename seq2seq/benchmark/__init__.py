"""Benchmarks behind `scripts/benchmark.py`: `data` (preprocessing at scale), `speed`
(training and decoding, and decoding alone), `parity` (bf16 against fp32) and `throughput`
(an experiment's model on random ids, any device). What they share: the training config, a
fresh process per measurement (peak memory is per process), its peak RSS, Markdown tables."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from omegaconf import DictConfig

from seq2seq.cli import CONF, compose_config

ROOT = CONF.parent
T = TypeVar("T")


def compose_train(overrides: list[str], check_numbers: bool = False) -> DictConfig:
    """`conf/train.yaml` with these overrides, as `scripts/train.py` would compose it."""
    return compose_config("train", overrides, check_numbers)


def markdown_table(header: list[str], rows: Iterable[list[object]]) -> str:
    """A Markdown table: the header's column names, then each row's cells as text."""
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(map(str, cells)) + " |" for cells in rows]
    return "\n".join(lines)


def peak_rss_mb() -> dict[str, float]:
    """Peak resident memory of this process and of its largest child, in MB (Linux: KB).
    This counts pages of memory-mapped files that were read, which the kernel can drop."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mb": round(own, 1), "peak_child_rss_mb": round(children, 1)}


def in_fresh_process(function: Callable[..., dict], *args: object) -> dict:
    """`function(*args)` (module-level, JSON in and out) in a new Python process, with
    memory set up as every script sets it (`seq2seq.cli.run`)."""
    code = ("import json, sys; from seq2seq.allocator import setup_memory; "
            "setup_memory(); "
            f"from {function.__module__} import {function.__name__} as f; "
            "print(json.dumps(f(*json.loads(sys.argv[1]))))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True,
                          text=True, check=False)  # fmt: skip
    if proc.returncode:
        raise RuntimeError(f"{function.__name__} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rounds(items: Sequence[T], repeats: int) -> Iterator[T]:
    """`repeats` rounds over `items`, every other round in reverse order (A B, B A, A B, ...):
    each is measured beside the others, none always first, and a steady drift of the
    machine's speed cancels over each pair of rounds."""
    for r in range(repeats):
        yield from (items if r % 2 == 0 else items[::-1])
