"""Data pipeline benchmark: preprocessing throughput and peak memory on a large synthetic
corpus, and the start-up time of a run that finds it cached.

A corpus of N pairs is made by repeating a base corpus (Multi30k's training text files, or the
demo corpus when none is given) with every repetition perturbed: in round r the source drops
word r - 1 (none in round 0) and the target word r, so lines differ from round to round and
the tokenizer meets realistic text. Each measurement runs in a fresh process (peak RSS is per
process and its children) with the settings of `scripts/train.py data=text_files`, so what is
measured is what a run does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytorch_lightning as pl

from seq2seq.benchmark import ROOT, compose_train, in_fresh_process, markdown_table, peak_rss_mb
from seq2seq.data.sources import Demo, iter_lines


def _perturb(line: str, round_: int) -> str:
    """Round 0 is the line itself; round r drops word (r - 1) mod len (when it has several)."""
    if round_ == 0:
        return line
    words = line.split()
    if len(words) > 1:
        del words[(round_ - 1) % len(words)]
    return " ".join(words)


def make_corpus(
    out: Path, pairs: int, base: Path | None = None, src: str = "en", tgt: str = "fr"
) -> Path:
    """Write `train.{src,tgt}` with `pairs` lines (and the base's `val` split) into `out`."""
    if base is None:
        base = Demo(src, tgt).dir
        Demo(src, tgt).splits()  # generates the demo text files on first use
    base_src, base_tgt = (
        list(iter_lines(base / f"train.{src}")),
        list(iter_lines(base / f"train.{tgt}")),
    )
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"train.{src}", "w") as fs, open(out / f"train.{tgt}", "w") as ft:
        for i in range(pairs):
            round_, j = divmod(i, len(base_src))
            fs.write(_perturb(base_src[j], round_) + "\n")
            ft.write(_perturb(base_tgt[j], round_ + 1) + "\n")
    for lang in (src, tgt):
        shutil.copy(base / f"val.{lang}", out / f"val.{lang}")
    return out


def _anon_mb(pid: int) -> float:
    """Anonymous resident memory (heap, not file pages) of a process, in MB; 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


class AnonSampler(threading.Thread):
    """Samples the anonymous memory of this process and its children every 50 ms: the peak of
    this process, of one child, and of all together (Linux /proc)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peaks = {"main": 0.0, "worker": 0.0, "total": 0.0}
        self.done = threading.Event()

    def run(self) -> None:
        pid = os.getpid()
        while not self.done.wait(0.05):
            main = _anon_mb(pid)
            workers = [_anon_mb(c) for c in _children(pid)]
            for key, value in (("main", main), ("worker", max(workers, default=0.0)),
                               ("total", main + sum(workers))):  # fmt: skip
                self.peaks[key] = max(self.peaks[key], value)

    def stop(self) -> dict[str, float]:
        self.done.set()
        self.join()
        return {f"peak_anon_{k}_mb": round(v, 1) for k, v in self.peaks.items()}


def preprocess_child(overrides: list[str]) -> dict:
    """In a fresh process: read, train the tokenizer, tokenise and load, timing each phase."""
    from seq2seq.data.datamodule import build_datamodule

    dm = build_datamodule(compose_train(overrides).data)
    sampler = AnonSampler()
    sampler.start()
    times = {}
    start = time.perf_counter()
    raw = dm.source.dataset(dm.train_split)
    times["read_s"] = time.perf_counter() - start
    dm.prepare_tokenizer()
    times["tokenizer_s"] = time.perf_counter() - start - times["read_s"]
    dm.prepare_data()
    times["tokenise_s"] = time.perf_counter() - start - times["read_s"] - times["tokenizer_s"]
    dm.setup("fit")
    batches = len(dm.train_dataloader())
    times["total_s"] = time.perf_counter() - start
    return {"pairs": len(raw), "kept": len(dm.train_data), "batches": batches,
            **{k: round(v, 2) for k, v in times.items()}, **peak_rss_mb(),
            **sampler.stop()}  # fmt: skip


class FirstStep(pl.Callback):
    """Writes the wall-clock time (`time.time()`) at the end of the first training step."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_end(self, *args: object, **kwargs: object) -> None:
        if not os.path.exists(self.path):
            Path(self.path).write_text(repr(time.time()))


def _train_overrides(corpus: Path, cache: Path, num_proc: int) -> list[str]:
    return [
        "data=text_files",
        f"data.dir={corpus}",
        f"data.cache_dir={cache}",
        f"data.num_proc={num_proc}",
        "data.batch_size=null",
        "data.max_tokens=4096",
        "model.num_layers=1",
        "model.hidden_size=64",
        "model.embed_dim=64",
    ]


def startup_seconds(overrides: list[str], run_dir: Path) -> float:
    """Wall time from launching `scripts/train.py` to the end of its first training step."""
    marker = run_dir / "first_step"
    marker.unlink(missing_ok=True)
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), *overrides,
               "trainer.max_steps=1", "trainer.num_sanity_val_steps=0",
               "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}",
               "+callbacks.first={_target_: seq2seq.benchmark.data.FirstStep, "
               f"path: '{marker}'}}"]  # fmt: skip
    start = time.time()
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if not marker.exists():
        raise RuntimeError(f"training did not reach its first step:\n{proc.stderr[-3000:]}")
    return float(marker.read_text()) - start


def data_benchmark(
    sizes: list[int], workdir: Path, base: Path | None = None, num_proc: int = 2,
    startup_repeats: int = 3, extra: tuple[str, ...] | list[str] = (),
) -> list[dict]:  # fmt: skip
    """For each corpus size: a cold preprocessing run (fresh cache), then `startup_repeats`
    cached starts of training (`extra`: more train.py overrides). One result row per size."""
    rows = []
    for n in sizes:
        corpus = make_corpus(workdir / f"corpus-{n}", n, base)
        cache = workdir / f"cache-{n}"
        shutil.rmtree(cache, ignore_errors=True)
        overrides = [*_train_overrides(corpus, cache, num_proc), *extra]
        row = {"size": n, "num_proc": num_proc, **in_fresh_process(preprocess_child, overrides)}
        row["pairs_per_s"] = round(n / row["total_s"])
        row["tokenise_pairs_per_s"] = round(n / row["tokenise_s"])
        starts = [startup_seconds(overrides, workdir / f"run-{n}") for _ in range(startup_repeats)]
        row["cached_startup_s"] = round(sorted(starts)[len(starts) // 2], 2)
        row["cached_startup_all_s"] = [round(s, 2) for s in starts]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    header = ["pairs", "read", "tokenizer", "tokenise", "total", "pairs/s", "tokenise pairs/s",
              "peak RSS main / worker", "peak heap main / worker / all",
              "cached start to 1st step (median)"]  # fmt: skip
    return markdown_table(header, (
        [f"{r['size']:,}", f"{r['read_s']} s", f"{r['tokenizer_s']} s", f"{r['tokenise_s']} s",
         f"{r['total_s']} s", f"{r['pairs_per_s']:,}", f"{r['tokenise_pairs_per_s']:,}",
         f"{r['peak_rss_mb']:.0f} / {r['peak_child_rss_mb']:.0f} MB",
         f"{r['peak_anon_main_mb']:.0f} / {r['peak_anon_worker_mb']:.0f} / "
         f"{r['peak_anon_total_mb']:.0f} MB", f"{r['cached_startup_s']} s"] for r in rows
    ))  # fmt: skip
