"""Framework overhead: Trainer.fit vs a plain PyTorch loop on the same model and batches.

python scripts/overhead.py [train.py overrides ...] [+steps=200] [+warmup=20] [+repeats=2]
Runs plain, Lightning, plain, Lightning, ... and prints target tokens/s (medians) and the ratio.
"""

import statistics

import hydra
from omegaconf import DictConfig

from seq2seq.cli import check_number_overrides, run, user_errors
from seq2seq.overhead import lightning_tokens_per_second, plain_tokens_per_second


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    with user_errors():
        check_number_overrides(cfg)
        steps, warmup, repeats = cfg.get("steps", 200), cfg.get("warmup", 20), cfg.get("repeats", 2)
        plain, framework = [], []
        for _ in range(repeats):
            plain.append(plain_tokens_per_second(cfg, steps, warmup))
            framework.append(lightning_tokens_per_second(cfg, steps, warmup))
            print(f"plain {plain[-1]:.0f} tok/s | seq2seq {framework[-1]:.0f} tok/s", flush=True)
    p, f = statistics.median(plain), statistics.median(framework)
    print(f"target tokens/s over {steps} steps, medians of {repeats}: plain PyTorch loop {p:.0f}, "
          f"seq2seq (Lightning) {f:.0f}; overhead {100 * (1 - f / p):.1f}%")  # fmt: skip


if __name__ == "__main__":
    run(main)
