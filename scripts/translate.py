"""Translate stdin to stdout, one sentence a line: `... | python scripts/translate.py ckpt=PATH`."""

import sys

import hydra
from omegaconf import DictConfig

from seq2seq.checkpoint import load_models
from seq2seq.cli import check_number_overrides, run, user_errors
from seq2seq.data.sources import decoded_lines
from seq2seq.evaluate import decode_kwargs
from seq2seq.translate import translate_stream


@hydra.main(version_base="1.3", config_path="../conf", config_name="translate")
def main(cfg: DictConfig) -> None:
    with user_errors():
        check_number_overrides(cfg)
        loaded = load_models(cfg.ckpt, cfg.device, cfg.precision)
        # read as bytes: a line that is not UTF-8 is a one-line error naming it
        raw = getattr(sys.stdin, "buffer", None)
        for line in translate_stream(
            sys.stdin if raw is None else decoded_lines(raw, "stdin"),
            chunk=cfg.chunk,
            model=loaded.model,
            tokenizer=loaded.tokenizer,
            reverse_source=loaded.data["reverse_source"],
            **decode_kwargs(cfg.decode),
        ):
            print(line, flush=True)


if __name__ == "__main__":
    run(main)
