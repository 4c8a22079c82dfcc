"""The "LSTM = ResNet rotated 90°" analysis: `python scripts/analyze.py data_dir=... [part=...]`."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from seq2seq.cli import check_number_overrides, run, user_errors
from seq2seq.errors import UserError


def report_gradient_flow(results: dict) -> None:
    print("\ngradient flow: ||dL/de|| first source token read / last (median over sentences)")
    print(f"{'model':<16}{'at init':>12}{'trained':>12}{'val BLEU':>10}{'train s':>9}")
    for name, r in results.items():
        print(f"{name:<16}{r['init']['first_last_ratio']:>12.3g}{r['trained']['first_last_ratio']:>12.3g}"
              f"{r['val_bleu'] or 0:>10.2f}{r['train_seconds']:>9.0f}")  # fmt: skip


def report_depth(rows: list[dict]) -> None:
    print("\ndepth: best validation loss / BLEU")
    print(f"{'layers':>6}  {'residual':<9}{'val loss':>9}{'val BLEU':>10}{'train s':>9}")
    for r in rows:
        loss = f"{r['val_loss']:.3f}" if r["val_loss"] is not None else "-"
        print(f"{r['layers']:>6}  {str(r['residual']).lower():<9}{loss:>9}"
              f"{r['val_bleu'] or 0:>10.2f}{r['train_seconds']:>9.0f}")  # fmt: skip


def report_recurrence(results: dict) -> None:
    lstm, transformer = results["models"]["lstm"], results["models"]["transformer"]
    print(f"\ncost of recurrence ({results['device']}, {results['precision']}): seconds, "
          f"LSTM {lstm['parameters'] / 1e6:.1f}M vs Transformer "
          f"{transformer['parameters'] / 1e6:.1f}M parameters")  # fmt: skip
    for what in ("train", "decode"):
        print(f"{what + ' length':<14}{'lstm':>10}{'transformer':>13}{'ratio':>8}")
        for n, seconds in lstm[what].items():
            other = transformer[what][n]
            print(f"{n:<14}{seconds:>10.4f}{other:>13.4f}{seconds / other:>8.2f}")
    cells = results["cells"]
    print(f"training step at length {cells['length']}, per recurrence:")
    for name, seconds in cells["seconds"].items():
        print(f"{name:<16}{seconds:>10.4f} s  {seconds / cells['seconds']['lstm']:>6.2f}x lstm")


@hydra.main(version_base="1.3", config_path="../conf", config_name="analyze")
def main(cfg: DictConfig) -> None:
    out = Path(cfg.out)
    known = ("gradient_flow", "depth", "recurrence")
    parts = known if cfg.part == "all" else (cfg.part,)
    with user_errors():
        check_number_overrides(cfg)
        if parts[0] not in known:
            raise UserError(f"part={cfg.part!r}: expected all, gradient_flow, depth or recurrence")
        # Lightning: ~10 s to import; bad input fails before it
        from seq2seq.analysis import depth, gradient_flow, recurrence_cost

        for part in parts:
            if part == "gradient_flow":
                report_gradient_flow(gradient_flow(cfg, out))
            elif part == "depth":
                report_depth(depth(cfg, out))
            else:
                report_recurrence(recurrence_cost(cfg, out))
            print(f"wrote {out / part}.png, .csv, .json")


if __name__ == "__main__":
    run(main)
