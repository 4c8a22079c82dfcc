"""bf16 vs fp32 on one model and corpus: the same training run in each precision (same seed,
batches and epochs), each in its own process; the end of both validation-BLEU curves and the
test BLEU of each final model. bf16 only counts as faster if its BLEU stays within 0.5."""

from __future__ import annotations

import csv
import time
from pathlib import Path

from seq2seq.benchmark import compose_train, in_fresh_process, markdown_table
from seq2seq.benchmark.speed import model_overrides
from seq2seq.precision import refuse_emulated


def train_and_test(overrides: list[str], run_dir: str, split: str) -> dict:
    """Train in this process, then score the last checkpoint on `split` (greedy)."""
    from seq2seq.cli import compose_config
    from seq2seq.evaluate import evaluate
    from seq2seq.train import train

    start = time.perf_counter()
    summary = train(compose_train(overrides), run_dir)
    seconds = time.perf_counter() - start
    cfg = compose_config("evaluate", [f"ckpt={summary['last_ckpt']}", f"split={split}",
                                      "device=cpu", "report.by_length=false"])  # fmt: skip
    test = evaluate(cfg, Path(run_dir) / "eval")
    curve = [(int(r["step"]), float(r["val/bleu"]))
             for r in csv.DictReader((Path(run_dir) / "logs" / "metrics.csv").open())
             if r.get("val/bleu")]  # fmt: skip
    return {"train_seconds": round(seconds, 1), "steps": summary["steps"],
            "val_curve_end": curve[-3:], "best_val_bleu": round(max(b for _, b in curve), 2),
            "test_bleu": round(test["bleu"], 2)}  # fmt: skip


def parity_benchmark(
    data_dir: str, model: str, epochs: int, workdir: Path,
    precisions: tuple[str, ...] = ("32-true", "bf16-mixed"), split: str = "test_2016_flickr",
) -> list[dict]:  # fmt: skip
    refuse_emulated(precisions)  # before training anything
    rows = []
    for precision in precisions:
        overrides = [*model_overrides(model, data_dir, precision, None),
                     "trainer.max_time=null", f"trainer.max_epochs={epochs}"]  # fmt: skip
        run_dir = str(workdir / f"{model}-{precision}")
        result = in_fresh_process(train_and_test, overrides, run_dir, split)
        rows.append({"model": model, "precision": precision, "epochs": epochs, **result})
    return rows


def markdown(rows: list[dict]) -> str:
    header = ["model", "precision", "epochs", "train time",
              "validation BLEU, last 3 (step: BLEU)", "best val", "test BLEU (greedy)"]  # fmt: skip
    return markdown_table(header, (
        [r["model"], r["precision"], r["epochs"], f"{r['train_seconds'] / 60:.1f} min",
         ", ".join(f"{s}: {b:.2f}" for s, b in r["val_curve_end"]), f"{r['best_val_bleu']:.2f}",
         f"{r['test_bleu']:.2f}"] for r in rows
    ))  # fmt: skip
