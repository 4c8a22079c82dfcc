"""Average checkpoints: `python scripts/average_checkpoints.py run=RUN_DIR last=5` (or ckpts=)."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from seq2seq.checkpoint import average_checkpoints, last_checkpoints, save_checkpoint
from seq2seq.cli import check_number_overrides, run, user_errors
from seq2seq.errors import UserError


def paths_and_out(cfg: DictConfig) -> tuple[list[Path], Path]:
    if (cfg.ckpts is None) == (cfg.run is None):
        raise UserError("give either ckpts=[a.ckpt,b.ckpt] or run=RUN_DIR (with last=N)")
    if cfg.ckpts is not None:
        if cfg.out is None:
            raise UserError("ckpts=[...] needs out=PATH for the averaged checkpoint")
        return [Path(p) for p in cfg.ckpts], Path(cfg.out)
    out = cfg.out or Path(cfg.run) / f"averaged_last{cfg.last}.ckpt"
    return last_checkpoints(cfg.run, cfg.last), Path(out)


@hydra.main(version_base="1.3", config_path="../conf", config_name="average")
def main(cfg: DictConfig) -> None:
    with user_errors():
        check_number_overrides(cfg)
        paths, out = paths_and_out(cfg)
        save_checkpoint(average_checkpoints(paths), out)
    print(f"averaged {len(paths)} checkpoints ({paths[0].name} .. {paths[-1].name}) -> {out}")


if __name__ == "__main__":
    run(main)
