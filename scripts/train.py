"""Train a model: `python scripts/train.py [experiment=...] [group=option] [key=value]`."""

import logging

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from seq2seq.cli import check_number_overrides, run, user_errors


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    with user_errors():
        check_number_overrides(cfg)
        from seq2seq.train import train  # Lightning: ~10 s to import; a typo fails before it

        summary = train(cfg, HydraConfig.get().runtime.output_dir)
    if summary["rank"] != 0:
        return  # under DDP one summary is enough
    bleu = summary["best_val_bleu"]
    logging.getLogger("seq2seq").info("summary: %s", summary)
    print(
        f"best val BLEU {bleu:.2f} | best.ckpt: {summary['best_ckpt']}"
        if bleu is not None
        else f"no validation ran | last.ckpt: {summary['last_ckpt']}"
    )


if __name__ == "__main__":
    run(main)
