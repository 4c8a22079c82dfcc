"""Decoding speed: batched vs one sentence at a time vs no cache (`decode_speed.py ckpt=...`)."""

import hydra
import torch
from omegaconf import DictConfig

from seq2seq.cli import check_number_overrides, run, user_errors
from seq2seq.decode_speed import decode_speed

VARIANTS = ("batched", "per_sentence", "recompute")


@hydra.main(version_base="1.3", config_path="../conf", config_name="decode_speed")
def main(cfg: DictConfig) -> None:
    with user_errors():
        check_number_overrides(cfg)
        rows = decode_speed(cfg)
    print(f"{cfg.split}, {torch.get_num_threads()} threads: sentences/s (same output as batched)")
    print(f"{'beam':>4}  {'output':<10}" + "".join(f"{v:>22}" for v in VARIANTS))
    for r in rows:
        cells = [
            f"{r[v]:>10.1f} ({100 * r[v + '_same']:5.1f}%)" if v in r else "-" for v in VARIANTS
        ]
        print(f"{r['beam']:>4}  {r['output']:<10}" + "".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    run(main)
