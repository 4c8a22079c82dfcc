"""Reproduce a paper table: `python scripts/reproduce.py table=sutskever2014_table1 scale=small`."""

import logging

import hydra
from omegaconf import DictConfig

from seq2seq.cli import check_number_overrides, run, user_errors
from seq2seq.reproduce import reproduce


@hydra.main(version_base="1.3", config_path="../conf", config_name="reproduce")
def main(cfg: DictConfig) -> None:
    with user_errors():
        check_number_overrides(cfg)
        md = reproduce(cfg)
    logging.getLogger("seq2seq").info("wrote %s", md)
    print(md.read_text())
    print(f"written to {md} (and .csv, .json)")


if __name__ == "__main__":
    run(main)
