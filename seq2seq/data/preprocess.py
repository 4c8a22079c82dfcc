"""Tokenise a split once, in parallel, into an on-disk Arrow cache that later runs and every
DDP rank memory-map instead of tokenising again.

An entry is `tokens/<key>/` with the Arrow shard(s) `ids*.arrow` (columns `src`, `tgt`: int32
token ids without specials) and `meta.json`. It is read back with pyarrow alone, so a run whose
cache is built never imports `datasets` or pandas for it: 447 instead of 504 MB resident in
every process after `import seq2seq.train` (an ad-hoc check). The key covers the split's
content (its source key), the tokenizer (sha256 of its state) and the subsample. It is built
in a temporary directory and renamed into place, under a file lock, so a crash or a
concurrent run never leaves half an entry. Filtering by length is not part of the key: it is
cheap (numpy on the length columns) and changing `data.max_len` reuses the cache.
"""

from __future__ import annotations

import ctypes
import gc
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from filelock import FileLock

from seq2seq.data.sources import digest
from seq2seq.data.tokenizer import Tokenizer, sample_rows, tokenizer_digest

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)


def _encode_batch(batch: dict, tokenizer: Tokenizer) -> dict:
    return {"src": tokenizer.encode_src(batch["src"]), "tgt": tokenizer.encode_tgt(batch["tgt"])}


def subsample(ds: datasets.Dataset, max_pairs: int | None, seed: int = 0) -> datasets.Dataset:
    """A deterministic random subset of `max_pairs` pairs, in corpus order (all when fewer)."""
    rows = sample_rows(len(ds), max_pairs, seed) if max_pairs else None
    return ds if rows is None else ds.select(rows)


def encoded_split(
    raw: Callable[[], datasets.Dataset],
    source_key: str,
    tokenizer: Tokenizer,
    cache_dir: Path,
    name: str,
    num_proc: int = 1,
    max_pairs: int | None = None,
) -> CachedIds:
    """Token ids of a split, from the cache or tokenised now from `raw()`.

    `max_pairs` keeps a deterministic subsample (the paper's 12M of WMT'14's 36M pairs).
    """
    key = digest("tokens", source_key, tokenizer_digest(tokenizer), max_pairs, 1)
    entry = cache_dir / "tokens" / f"{name}-{key[:16]}"
    entry.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(entry) + ".lock"):
        if not (entry / "meta.json").is_file():
            _build(raw, tokenizer, entry, key, name, num_proc, max_pairs)
    return CachedIds(sorted(str(f) for f in entry.glob("ids*.arrow")))  # map's shards, in order


class CachedIds:
    """A cache entry's token ids: `table` (list<int32> columns src, tgt), memory-mapped from
    its Arrow files. It pickles as their paths, so a DataLoader worker that is spawned rather
    than forked maps the files again instead of receiving a copy of the corpus."""

    def __init__(self, files: list[str]) -> None:
        self.files = files
        streams = [pa.ipc.open_stream(pa.memory_map(f)).read_all() for f in files]
        self.table = pa.concat_tables(streams)

    def __len__(self) -> int:
        return self.table.num_rows

    def __getstate__(self) -> dict:
        return {"files": self.files}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["files"])


def _build(
    raw: Callable[[], datasets.Dataset],
    tokenizer: Tokenizer,
    entry: Path,
    key: str,
    name: str,
    num_proc: int,
    max_pairs: int | None,
) -> None:
    import datasets

    ids = datasets.Sequence(datasets.Value("int32"))
    start = time.perf_counter()
    ds = subsample(raw(), max_pairs)
    tmp = entry.with_name(f"{entry.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    num_proc = max(1, min(num_proc, len(ds) // 1000 or 1))  # small splits: no process pool
    if num_proc > 1:
        _release_memory()
    ds.map(
        _encode_batch,
        batched=True,
        batch_size=1000,
        fn_kwargs={"tokenizer": tokenizer},
        remove_columns=ds.column_names,
        features=datasets.Features({"src": ids, "tgt": ids}),
        num_proc=num_proc if num_proc > 1 else None,
        cache_file_name=str(tmp / "ids.arrow"),
        new_fingerprint=key[:32],
        writer_batch_size=10_000,
        desc=f"tokenising {name}",
    )
    meta = {"key": key, "pairs": len(ds), "max_pairs": max_pairs, "tokenizer": tokenizer.kind,
            "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    shutil.rmtree(entry, ignore_errors=True)
    tmp.replace(entry)
    log.info("%s: tokenised %d pairs in %.1f s into %s", name, len(ds), meta["seconds"], entry)


def _release_memory() -> None:
    """Hand freed heap back to the OS before forking the tokenising workers, which would
    otherwise inherit it (after training a tokenizer it can be gigabytes)."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def lengths(ids: CachedIds, column: str) -> np.ndarray:
    """Token counts of a list column of a cached split, read from Arrow (no loop over rows)."""
    counts = pc.list_value_length(ids.table.column(column)).cast(pa.int32()).chunks
    # each chunk's values buffer as it is: pyarrow's to_numpy would import pandas
    return np.concatenate([np.zeros(0, np.int32)] + [
        np.frombuffer(c.buffers()[1], np.int32, len(c), c.offset * 4) for c in counts
    ])  # fmt: skip
