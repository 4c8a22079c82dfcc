"""Score translations or rescore n-best lists: `python scripts/score.py ckpt=PATH src=F tgt=F`."""

import hydra
from omegaconf import DictConfig

from seq2seq.checkpoint import load_models
from seq2seq.cli import check_number_overrides, run, user_errors
from seq2seq.score import score_lines


@hydra.main(version_base="1.3", config_path="../conf", config_name="score")
def main(cfg: DictConfig) -> None:
    with user_errors():
        check_number_overrides(cfg)
        loaded = load_models(cfg.ckpt, cfg.device, cfg.precision)
        lines = score_lines(
            loaded.model,
            loaded.tokenizer,
            loaded.data["reverse_source"],
            src=cfg.src,
            tgt=cfg.tgt,
            nbest=cfg.nbest,
            rescore_weight=cfg.weight if cfg.rescore else None,
            max_tokens=cfg.max_tokens,
        )
    for line in lines:
        print(line)


if __name__ == "__main__":
    run(main)
