""" "An LSTM is a ResNet rotated 90°": the measurements behind the README section of that name.

1. Gradient flow through time: ||dL/de_t|| for every source position t (e_t the source
   embedding) for each recurrence and the Transformer encoder, at initialisation and after
   training on the same data and step budget.
2. Depth: LSTM encoder-decoders of several depths, with and without residual connections
   between stacked layers, trained on the same data and budget.
3. The cost of recurrence: training-step and decoding time against sequence length for an LSTM
   and a Transformer of about the same parameter count.

Each part writes `<part>.png`, `<part>.csv` and `<part>.json` into the output directory. Training
runs go through `seq2seq.train.train` (the `scripts/train.py` path) into `<out>/runs/<name>/` and
are reused when their `summary.json` exists, so a rerun only redraws. Configs are composed with
`hydra.compose`, so Hydra must be initialised on `conf/` (as `scripts/analyze.py` is).
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn

from seq2seq.checkpoint import load_checkpoint
from seq2seq.cli import model_config
from seq2seq.data.datamodule import build_datamodule
from seq2seq.errors import UserError, check_choice
from seq2seq.loss import token_losses
from seq2seq.models.lstm import LSTMSeq2Seq
from seq2seq.models.transformer import TransformerSeq2Seq
from seq2seq.precision import resolve_precision, uses_bf16
from seq2seq.report import pyplot, save_figure
from seq2seq.search import forced_length, greedy_search
from seq2seq.train import train

MIN_SENTENCES = 20  # a point of a gradient curve averages at least this many sentences


# ---- 1. gradient flow through time ------------------------------------------------------------


def source_gradients(model: nn.Module, batch: dict) -> list[Tensor]:
    """||dL/de_t|| for each source token (EOS excluded) of every sentence in the batch, in the
    order the encoder reads them; L is the summed target NLL, so each sentence's gradients come
    from its own loss only."""
    embedded: list[Tensor] = []

    def keep(module: nn.Module, inputs: tuple, output: Tensor) -> None:
        output.retain_grad()
        embedded.append(output)

    handle = model.src_embed.register_forward_hook(keep)
    try:
        model.zero_grad(set_to_none=True)
        logits = model(batch["src"], batch["src_lens"], batch["tgt_in"])
        nll, _ = token_losses(logits.float(), batch["tgt_out"])  # summed, no smoothing
        nll.backward()
    finally:
        handle.remove()
    norms = embedded[0].grad.norm(dim=-1)  # (B, S); the first call embeds the source
    return [norms[b, : n - 1] for b, n in enumerate(batch["src_lens"].tolist())]


def gradient_profiles(
    model: nn.Module, batches: Iterable[dict], sentences: int | None = None
) -> list[Tensor]:
    """Source gradient norms of every sentence with at least two tokens (or of the first
    `sentences`: batches may come sorted by length, so a prefix is biased to short ones)."""
    model.eval()  # no dropout: the gradients of the function itself
    grads: list[Tensor] = []
    for batch in batches:
        grads += [g for g in source_gradients(model, batch) if len(g) >= 2]
        if sentences is not None and len(grads) >= sentences:
            break
    return grads[:sentences]


def _geometric_mean(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(max(v, 1e-30)) for v in values))


def decay_curve(grads: list[Tensor], max_distance: int) -> list[float]:
    """Geometric mean over sentences of g(d) / g(1), d the distance from the end of the source
    as the encoder reads it (d = 1: the last token read, the one nearest the decoder)."""
    curve = []
    for d in range(1, max_distance + 1):
        ratios = [float(g[-d] / g[-1]) for g in grads if len(g) >= d]
        if len(ratios) < MIN_SENTENCES:
            break
        curve.append(_geometric_mean(ratios))
    return curve


def first_last_ratio(grads: list[Tensor]) -> float:
    """Median over sentences of ||dL/de|| at the first token read over that at the last."""
    return statistics.median(float(g[0] / g[-1]) for g in grads)


def by_source_position(
    grads: list[Tensor], reversed_source: bool, max_position: int
) -> list[float]:
    """Geometric mean over sentences of g(p) / mean(g), p the position in the original sentence
    (1 = its first token), whichever order the encoder read it in."""
    grads = [g.flip(0) if reversed_source else g for g in grads]  # back to sentence order
    curve = []
    for p in range(max_position):
        ratios = [float(g[p] / g.mean()) for g in grads if len(g) > p]
        if len(ratios) < MIN_SENTENCES:
            break
        curve.append(_geometric_mean(ratios))
    return curve


def gradient_flow(cfg: DictConfig, out: Path) -> dict:
    """Part 1 (conf/analyze.yaml `gradient_flow`): a decay curve per model, initial and trained."""
    part = cfg.gradient_flow
    runs = {cell: [*cfg.train.lstm, f"model.cell={cell}"] for cell in part.cells}
    runs["lstm_forward"] = [*cfg.train.lstm, "model.cell=lstm", "data.reverse_source=false"]
    runs["transformer"] = list(cfg.train.transformer)
    results, rows = {}, []
    for name, overrides in runs.items():
        train_cfg = _compose(cfg, overrides)
        summary = trained_run(train_cfg, out / "runs" / name)
        batches = _Batches(train_cfg)
        models = {
            "init": _initial_model(train_cfg, batches.tokenizer),
            "trained": load_checkpoint(out / "runs" / name / "last.ckpt").model,
        }
        result = {"train_seconds": summary["seconds"], "val_bleu": summary["best_val_bleu"],
                  "reverse_source": train_cfg.data.reverse_source}  # fmt: skip
        for stage, model in models.items():
            grads = gradient_profiles(model, batches, part.sentences)
            curve = decay_curve(grads, part.max_distance)
            result[stage] = {"first_last_ratio": first_last_ratio(grads), "decay": curve,
                             "by_position": by_source_position(grads, train_cfg.data.reverse_source,
                                                               part.max_distance)}  # fmt: skip
            rows += [
                {"model": name, "stage": stage, "distance": d, "relative_gradient": v}
                for d, v in enumerate(curve, start=1)
            ]
        results[name] = result
    _write(out, "gradient_flow", rows, results)
    _plot_gradient_flow(results, out / "gradient_flow.png")
    return results


def _plot_gradient_flow(results: dict, path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, stage in zip(axes, ("init", "trained")):
        for name, r in results.items():
            if name != "lstm_forward":
                curve = r[stage]["decay"]
                ax.semilogy(range(1, len(curve) + 1), curve, marker=".", label=name)
        ax.set(title=f"at {'initialisation' if stage == 'init' else 'end of training'}",
               xlabel="distance from the end of the source as read (tokens)",
               ylabel="||dL/de_t|| / ||dL/de_last||")  # fmt: skip
    for name in ("lstm", "lstm_forward"):
        if name in results:
            curve = results[name]["trained"]["by_position"]
            label = "lstm, reversed source" if name == "lstm" else "lstm, forward source"
            axes[2].semilogy(range(1, len(curve) + 1), curve, marker=".", label=label)
    axes[2].set(title="source reversal (trained)", xlabel="position in the source sentence",
                ylabel="||dL/de_t|| / sentence mean")  # fmt: skip
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, path)


# ---- 2. depth with and without residual connections -------------------------------------------


def depth(cfg: DictConfig, out: Path) -> list[dict]:
    """Part 2 (conf/analyze.yaml `depth`): validation loss and BLEU per depth, +/- residual."""
    rows = []
    for layers in cfg.depth.layers:
        for residual in (False, True):
            # One layer has nothing between layers to connect: both rows are the same run.
            name = f"depth{layers}" + ("_residual" if residual and layers > 1 else "")
            overrides = [*cfg.train.lstm, *cfg.depth.overrides, f"model.num_layers={layers}",
                         f"model.residual={str(residual and layers > 1).lower()}"]  # fmt: skip
            run_dir = out / "runs" / name
            summary = trained_run(_compose(cfg, overrides), run_dir)
            rows.append({"layers": layers, "residual": residual,
                         "val_loss": best_validation_loss(run_dir),
                         "val_bleu": summary["best_val_bleu"],
                         "train_seconds": summary["seconds"]})  # fmt: skip
    _write(out, "depth", rows, rows)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key in zip(axes, ("val_loss", "val_bleu")):
        for residual in (False, True):
            points = [(r["layers"], r[key]) for r in rows if r["residual"] == residual]
            ax.plot(*zip(*points), marker="o", label="residual" if residual else "plain stack")
        ax.set(
            xscale="log",
            xlabel="LSTM layers (encoder and decoder each)",
            ylabel="best validation " + ("loss (nats/token)" if key == "val_loss" else "BLEU"),
        )
        ax.set_xticks(list(cfg.depth.layers), [str(n) for n in cfg.depth.layers])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, out / "depth.png")
    return rows


def best_validation_loss(run_dir: Path) -> float | None:
    """The lowest `val/loss` in a run's metrics.csv (None if it never validated)."""
    losses = []
    for path in sorted(run_dir.glob("logs/**/metrics.csv")):
        with open(path, newline="") as f:
            losses += [float(r["val/loss"]) for r in csv.DictReader(f) if r.get("val/loss")]
    return min(losses, default=None)


# ---- 3. the cost of recurrence ----------------------------------------------------------------


def recurrence_cost(cfg: DictConfig, out: Path) -> dict:
    """Part 3 (conf/analyze.yaml `recurrence`): seconds per training step (forward + backward)
    and per decoded sentence against length, for an LSTM and a Transformer."""
    part = cfg.recurrence
    check_choice("recurrence.device", part.device, ("cpu", "cuda"))
    check_choice("recurrence.precision", part.precision, ("auto", "bf16-mixed", "32-true"))
    if part.device == "cuda" and not torch.cuda.is_available():
        raise UserError("recurrence.device=cuda: no CUDA GPU here; use recurrence.device=cpu")
    device = torch.device(part.device)
    torch.manual_seed(0)
    V = part.vocab_size
    precision = resolve_precision(part.precision, device.type)
    bf16 = uses_bf16(precision)
    models = {
        "lstm": LSTMSeq2Seq(V, V, **part.lstm),
        "transformer": TransformerSeq2Seq(V, V, **part.transformer),
    }
    results: dict = {"device": str(device), "precision": precision, "models": {}}
    rows = []
    for name, model in models.items():
        model.to(device)
        params = sum(p.numel() for p in model.parameters())
        results["models"][name] = {"parameters": params, "train": {}, "decode": {}}
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            for n in part.lengths:
                seconds = _median_seconds(part.repeats, _train_step, model, part.batch_size, n, V)
                results["models"][name]["train"][n] = seconds
                rows.append({"model": name, "what": "train step", "length": n, "seconds": seconds})
            model.eval()
            for n in part.decode_lengths:
                with torch.inference_mode():
                    seconds = _median_seconds(part.repeats, _decode, model, n, V)
                results["models"][name]["decode"][n] = seconds
                rows.append({"model": name, "what": "decode sentence", "length": n,
                             "seconds": seconds})  # fmt: skip
        model.cpu()
    # The price of each recurrence (the fused kernels against the Python loop of lstm_no_forget
    # and the per-layer calls of a residual stack), at one length, on the LSTM's sizes.
    variants = {cell: {"cell": cell} for cell in part.cells}
    variants["lstm+residual"] = {"cell": "lstm", "residual": True}
    results["cells"] = {"length": part.cell_length, "seconds": {}}
    for name, options in variants.items():
        model = LSTMSeq2Seq(V, V, **{**part.lstm, **options}).to(device)
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            seconds = _median_seconds(part.repeats, _train_step, model, part.batch_size,
                                      part.cell_length, V)  # fmt: skip
        results["cells"]["seconds"][name] = seconds
        rows.append({"model": f"lstm cell={name}", "what": "train step",
                     "length": part.cell_length, "seconds": seconds})  # fmt: skip
    _write(out, "recurrence", rows, results)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, what in zip(axes, ("train", "decode")):
        for name, r in results["models"].items():
            lengths = list(r[what])
            ax.loglog(lengths, [r[what][n] for n in lengths], marker="o",
                      label=f"{name} ({r['parameters'] / 1e6:.1f}M)")  # fmt: skip
        ax.set_xticks(lengths, [str(n) for n in lengths])
        ax.minorticks_off()
        ax.set(xlabel="sequence length (source = target, tokens)", ylabel="seconds",
               title=f"training step, batch {part.batch_size}" if what == "train"
               else "greedy decoding, one sentence")  # fmt: skip
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(f"{device.type}, {precision}", fontsize=9)
    save_figure(fig, out / "recurrence.png")
    return results


def _tokens(batch_size: int, length: int, vocab: int, device: torch.device) -> Tensor:
    return torch.randint(4, vocab, (batch_size, length), device=device)


def _train_step(model: nn.Module, batch_size: int, length: int, vocab: int) -> None:
    device = next(model.parameters()).device
    model.train()
    model.zero_grad(set_to_none=True)
    src, tgt = (
        _tokens(batch_size, length, vocab, device),
        _tokens(batch_size, length, vocab, device),
    )
    lens = torch.full((batch_size,), length, device=device)
    logits = model(src, lens, tgt)  # (B, T, V)
    F.cross_entropy(logits.float().flatten(0, 1), tgt.flatten()).backward()


def _decode(model: nn.Module, length: int, vocab: int) -> None:
    """Greedy search for one sentence, forced to exactly `length` tokens (+ EOS)."""
    device = next(model.parameters()).device
    src = _tokens(1, length, vocab, device)
    greedy_search(model, src, torch.tensor([length], device=device), **forced_length(length))


def _median_seconds(repeats: int, fn: Callable, model: nn.Module, *args: int) -> float:
    """Median wall time of `fn(model, *args)` over `repeats` calls after one warm-up call."""
    cuda = next(model.parameters()).is_cuda
    seconds = []
    for i in range(repeats + 1):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn(model, *args)
        if cuda:
            torch.cuda.synchronize()
        if i:
            seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


# ---- shared ----------------------------------------------------------------------------------


def _compose(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """The training config of one run: `train.common` + the run's own overrides."""
    return compose("train", overrides=[*cfg.train.common, *overrides])


def trained_run(train_cfg: DictConfig, run_dir: Path) -> dict:
    """Train once into `run_dir` (reused when its summary.json exists); the training summary
    with the wall-clock `seconds` it took."""
    done = run_dir / "summary.json"
    if done.is_file():
        return json.loads(done.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    summary = train(train_cfg, run_dir)
    summary["seconds"] = time.perf_counter() - start
    done.write_text(json.dumps(summary, indent=1))
    return summary


class _Batches:
    """The validation batches of a run's data (its tokenizer comes from the shared cache)."""

    def __init__(self, train_cfg: DictConfig) -> None:
        self.datamodule = build_datamodule(train_cfg.data)
        self.tokenizer = self.datamodule.prepare_tokenizer()
        self.datamodule.setup("fit")

    def __iter__(self) -> Iterator[dict]:
        return iter(self.datamodule.val_dataloader())


def _initial_model(train_cfg: DictConfig, tokenizer: object) -> nn.Module:
    """The run's model at initialisation (same config and seed)."""
    pl.seed_everything(train_cfg.seed)
    return instantiate(model_config(train_cfg, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size))


def _write(out: Path, part: str, rows: list[dict], summary: object) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{part}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / f"{part}.json").write_text(json.dumps(summary, indent=1))
