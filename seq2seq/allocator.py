"""Process memory set up for training and decoding on a CPU (`setup_memory`, which every script
and benchmark child calls first).

oneDNN, which runs bf16 matmuls and LSTMs on a CPU, caches a compiled primitive, with its
buffers, for each shape it sees, up to 1024 of them; batches of varying length keep adding
shapes. Capped at 16, `scripts/benchmark.py speed` measured bf16 training peaks of 1.35 GB
instead of 1.76 (model A) and 1.72 instead of 2.50 GB (B) (README, Speed), with no slowdown
beyond this machine's noise.

PyTorch keeps a second such cache, ideep's, for the matmuls it runs through oneDNN (bf16
linear layers among them), also of 1024 shapes, capped by `LRU_CACHE_CAPACITY` (PyTorch issues
27971 and 29893). At 16, in a plain bf16 training loop of the speed benchmark's models (an
ad-hoc check counting glibc's allocated bytes), the memory in use after 120 steps stayed at
348 MB instead of growing to 550 (model B) and at 355 instead of 418 (A), and the process
held 1.34 instead of 1.93 GB (B) and 1.03 instead of 1.12 GB (A), at the same speed.

glibc's allocator: memory a step frees stays in the process for the next.

By default glibc maps every allocation above a threshold (128 KiB, raised on the fly up to the
largest block freed so far) straight from the kernel and gives it back when freed, and returns
the top of its heap once more than twice that is free. A training or decoding step frees and
reallocates tens of MB of activations and logits, so it pays a page fault and a zeroed page for
every 4 KiB, every step. In a quick check (a bare bf16 training loop counting minor faults,
not a script in this repository) that was about 38,000 faults a step for the speed benchmark's
LSTM (model A) and 25,000 for its Transformer (B) on a 2-core CPU; with blocks up to 32 MiB
kept on the heap (glibc's maximum) and the heap trimmed only above 1 GiB free, 2,700 to 4,800,
and the peak resident memory did not grow.

Gradients freed every step grew the heap all the same, so training keeps them on a CPU
(`TranslationModule.optimizer_zero_grad`).
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit systems
TRIM_THRESHOLD = 1 << 30
CACHE_CAPACITY = 16  # shapes in each of oneDNN's and ideep's caches
CACHES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")


def setup_memory() -> None:
    """The settings above: glibc's (`keep_freed_memory`) and the two caches' capacities, each
    unless the user set its variable. Call before the first tensor operation."""
    keep_freed_memory()
    for variable in CACHES:
        os.environ.setdefault(variable, str(CACHE_CAPACITY))


def keep_freed_memory() -> bool:
    """Apply the settings above (Linux with glibc); False where they were not applied: other
    systems, or a user who tuned glibc's allocator (`MALLOC_*` variables or `glibc.malloc`
    tunables), whose settings are left to rule."""
    if not sys.platform.startswith("linux"):
        return False
    tuned = "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", "")
    if tuned or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
