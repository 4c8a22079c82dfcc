"""Framework overhead: the same model and batches through `Trainer.fit` and a plain PyTorch loop.

Both sides get the batches of the configured datamodule (same sampler, same seed), the model
built from the same config and seed, the configured optimiser and gradient clipping. Throughput
is counted in non-padding target tokens per second over the steps after `warmup`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from itertools import islice

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from seq2seq.benchmark.throughput import plain_step
from seq2seq.cli import model_config
from seq2seq.data.datamodule import TranslationDataModule, build_datamodule
from seq2seq.models.compiled import compile_features
from seq2seq.module import TranslationModule
from seq2seq.precision import resolve_precision, uses_bf16


class _Clock(pl.Callback):
    """Target tokens and wall time between the end of step `warmup` and the last step."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.tokens, self.start, self.end = warmup, 0, 0.0, 0.0

    def on_train_batch_end(self, trainer: pl.Trainer, module: object, out: object,
                           batch: dict, batch_idx: int) -> None:  # fmt: skip
        now = time.perf_counter()
        if trainer.global_step == self.warmup:
            self.start = now
        elif trainer.global_step > self.warmup:
            self.tokens += batch["ntokens"]
            self.end = now


def datamodule_and_model(cfg: DictConfig) -> tuple[TranslationDataModule, dict]:
    """The configured data, set up, and the model config with its vocabulary sizes."""
    datamodule = build_datamodule(cfg.data)
    tokenizer = datamodule.prepare_tokenizer()
    datamodule.setup("fit")
    return datamodule, model_config(cfg, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)


def lightning_tokens_per_second(cfg: DictConfig, steps: int, warmup: int) -> float:
    """`Trainer.fit` as `scripts/train.py` runs it (progress bar and loggers on, no validation)."""
    pl.seed_everything(cfg.seed, workers=True)
    datamodule, model_cfg = datamodule_and_model(cfg)
    module = TranslationModule(
        model_config=model_cfg,
        tokenizer=datamodule.tokenizer,
        data_config={},
        optimizer=instantiate(cfg.optim.optimizer),
        scheduler=instantiate(cfg.optim.scheduler) if cfg.optim.scheduler else None,
        label_smoothing=cfg.optim.label_smoothing,
        loss_per=cfg.optim.loss_per,
        loss_chunk=cfg.loss_chunk,
        compile=cfg.compile,
    )
    clock = _Clock(warmup)
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_cfg["precision"] = resolve_precision(
        trainer_cfg["precision"], trainer_cfg["accelerator"]
    )
    trainer_cfg.update(max_steps=warmup + steps, max_epochs=-1, max_time=None,
                       limit_val_batches=0, enable_checkpointing=False)  # fmt: skip
    with tempfile.TemporaryDirectory() as logs:
        trainer = instantiate(trainer_cfg, callbacks=[clock], logger=pl.loggers.CSVLogger(logs))
        trainer.fit(module, datamodule=datamodule)
    return clock.tokens / (clock.end - clock.start)


def plain_tokens_per_second(cfg: DictConfig, steps: int, warmup: int) -> float:
    """The loop a PyTorch user would write by hand, on the same batches."""
    pl.seed_everything(cfg.seed, workers=True)
    datamodule, model_cfg = datamodule_and_model(cfg)
    model = compile_features(instantiate(model_cfg).train(), cfg.compile)
    optimizer = instantiate(cfg.optim.optimizer)(model.parameters())
    tokens, start = 0, 0.0
    batches = islice(_forever(datamodule), warmup + steps)
    bf16 = uses_bf16(resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator))
    for step, batch in enumerate(batches):
        plain_step(model, optimizer, batch, cfg.optim, cfg.loss_chunk, bf16)
        if step + 1 == warmup:
            start = time.perf_counter()
        elif step + 1 > warmup:
            tokens += batch["ntokens"]
    return tokens / (time.perf_counter() - start)


def _forever(datamodule: TranslationDataModule) -> Iterator[dict]:
    epoch = 0
    while True:
        loader = datamodule.train_dataloader()
        loader.batch_sampler.set_epoch(epoch)
        yield from loader
        epoch += 1
