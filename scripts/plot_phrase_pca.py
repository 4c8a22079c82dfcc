"""Figure 2 of Sutskever et al. 2014: `python scripts/plot_phrase_pca.py ckpt=PATH [out=F.png]`."""

import hydra
from omegaconf import DictConfig

from seq2seq.cli import check_number_overrides, run, user_errors
from seq2seq.phrases import plot_phrase_pca


@hydra.main(version_base="1.3", config_path="../conf", config_name="plot_phrase_pca")
def main(cfg: DictConfig) -> None:
    with user_errors():
        check_number_overrides(cfg)
        points = plot_phrase_pca(cfg.ckpt, cfg.phrases, cfg.out)
    print(f"{len(points)} phrases projected on 2 principal components -> {cfg.out}")


if __name__ == "__main__":
    run(main)
