"""`scripts/train.py`'s logic: compose data, model, module and trainer from the config; fit."""

from __future__ import annotations

import logging
import math
import signal
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.plugins import TorchCheckpointIO

from seq2seq.checkpoint import read_checkpoint, save_checkpoint
from seq2seq.cli import model_config
from seq2seq.data.datamodule import build_datamodule
from seq2seq.errors import UserError
from seq2seq.models.compiled import compile_backend
from seq2seq.module import TranslationModule
from seq2seq.optim import factories
from seq2seq.precision import resolve_precision

log = logging.getLogger(__name__)


class CheckpointWriter(TorchCheckpointIO):
    """Lightning's checkpoint I/O, writing through `save_checkpoint`. (Lightning's own stages
    the file in the system temp directory, and moving it onto another filesystem copies it
    over the old checkpoint: a full disk there would truncate both.)"""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        if storage_options is not None:  # unsupported: Lightning's error says so
            return super().save_checkpoint(checkpoint, path, storage_options)
        save_checkpoint(checkpoint, path)


def validation_decode(decode: DictConfig) -> dict:
    """The search options validation BLEU uses: the `decode` group without the output and
    batching options of evaluate/translate (validation batches follow data.valid_max_tokens)."""
    options = OmegaConf.to_container(decode, resolve=True)
    for key in ("nbest", "max_tokens", "inter_threads"):
        options.pop(key, None)
    return options


def optimizer_stepped(trainer: pl.Trainer, batch_idx: int) -> bool:
    """Whether the optimizer stepped at the end of batch `batch_idx` of the epoch. Gradients
    accumulated over earlier batches (`trainer.accumulate_grad_batches`) are not saved, so a
    checkpoint written between two steps would resume with them lost."""
    done = batch_idx + 1
    return done % trainer.accumulate_grad_batches == 0 or done == trainer.num_training_batches


class PeriodicCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that writes its every-N-steps or every-N-minutes checkpoints only where
    the optimizer has just stepped (`optimizer_stepped`): the time check alone lands anywhere."""

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        if optimizer_stepped(trainer, batch_idx):
            super().on_train_batch_end(trainer, module, outputs, batch, batch_idx)


class ValidateAfterStep(pl.Callback):
    """With gradient accumulation, validation (and the `best.ckpt` and `last.ckpt` written
    there) waits for a batch where the optimizer has just stepped (`optimizer_stepped`):
    Lightning's batch interval (`trainer.val_check_interval`, an int or a fraction of the
    epoch) is rounded up to a multiple of `accumulate_grad_batches`, at most the epoch's last
    batch (which always steps). A checkpoint written between two steps would resume with the
    gradients accumulated since the last step lost.

    Set at the start of training (a resumed run too) and of each epoch, after Lightning has
    computed the interval for the epoch's batches."""

    def __init__(self) -> None:
        self.warned = False

    def on_train_start(self, trainer: pl.Trainer, *args: object) -> None:
        self.align(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: object) -> None:
        self.align(trainer)

    def align(self, trainer: pl.Trainer) -> None:
        k, every = trainer.accumulate_grad_batches, trainer.val_check_batch
        if k == 1 or not isinstance(every, int):
            return  # no accumulation, or validation by time or at the epoch's end only
        batches = trainer.num_training_batches
        aligned = -(-every // k) * k
        if trainer.check_val_every_n_epoch is not None:  # counted within the epoch
            aligned = min(aligned, batches)
        elif batches % k and not self.warned:  # counted over all epochs, which step at their end
            self.warned = True
            log.warning(
                "trainer.check_val_every_n_epoch=null with %d batches an epoch, not a multiple "
                "of accumulate_grad_batches=%d: validations may fall between optimizer steps",
                batches, k,
            )  # fmt: skip
        if aligned != every:
            log.info("validating every %d batches (a multiple of accumulate_grad_batches=%d), "
                     "not %d", aligned, k, every)  # fmt: skip
            trainer.val_check_batch = aligned


def periodic_checkpoints(cfg: DictConfig, run_dir: Path) -> list[ModelCheckpoint]:
    """Keep the `keep_last` latest checkpoints, written every N steps or minutes (for averaging)."""
    if not cfg.keep_last:
        return []
    if cfg.every_n_steps and cfg.every_minutes:
        raise UserError("set checkpoint.every_n_steps or checkpoint.every_minutes, not both")
    minutes = cfg.every_minutes
    return [
        PeriodicCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename="step={step:08d}",
            monitor="step",  # the highest steps are the latest: save_top_k keeps the last N
            mode="max",
            save_top_k=cfg.keep_last,
            every_n_train_steps=cfg.every_n_steps,
            train_time_interval=timedelta(minutes=minutes) if minutes else None,
            auto_insert_metric_name=False,
        )
    ]


class SaveOnSigterm(pl.Callback):
    """SLURM sends SIGTERM before pre-empting a job: finish the batch, write `last.ckpt`
    (Lightning then stops the run); the resubmitted job continues with `resume=auto`.

    Lightning's handler marks the run as stopping whenever the signal arrives, and its loop
    stops at the end of the batch. A signal arriving after this callback's `on_train_batch_end`
    but before that check (while the other callbacks write their checkpoints) would stop the
    run with no `last.ckpt` of its own. So the signal is held until the next batch's end,
    then handed to Lightning's handler; with gradient accumulation, until the next batch at
    whose end the optimizer steps (`optimizer_stepped`), so no accumulated gradient is lost.

    Under DDP every rank hands it over at the same batch's end, as soon as any rank holds one
    (one all-reduce of a flag per step, on GPUs a host sync, as Lightning's own per-step SIGTERM
    broadcast under DDP already is): Lightning's handler runs a collective, and ranks that
    stopped at different batches would wait on each other's mismatched collectives."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lightning: Callable[..., Any] | None = None
        self.held: tuple[int, Any] | None = None

    def on_train_start(self, trainer: pl.Trainer, *args: object) -> None:
        handler = signal.getsignal(signal.SIGTERM)  # Lightning's, registered before this hook
        if callable(handler) and threading.current_thread() is threading.main_thread():
            self.lightning = handler
            signal.signal(signal.SIGTERM, self.hold)

    def hold(self, signum: int, frame: Any) -> None:
        self.held = (signum, frame)

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        # any rank's signal (`hold` sets it; a bare bool without DDP), handed over where the
        # optimizer has just stepped (the same batch on every rank)
        if optimizer_stepped(trainer, batch_idx) and trainer.strategy.reduce_boolean_decision(
            self.held is not None, all=False
        ):
            if self.lightning is not None:  # now the loop stops after this batch
                self.lightning(*(self.held or (signal.SIGTERM, None)))
            self.held = None
        if trainer.received_sigterm:  # also from Lightning's own handler, if it was not replaced
            trainer.save_checkpoint(self.path)
            log.warning("SIGTERM: saved %s; rerun with resume=auto to continue", self.path)


class StopAtEpoch(pl.Callback):
    """Stop after a fractional number of epochs (`trainer.max_epochs=7.5`, Sutskever et al.
    2014, §3.4), counted in optimizer steps as the learning-rate schedules count them."""

    def __init__(self, epochs: float) -> None:
        self.epochs = epochs

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        steps_per_epoch = math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches)
        if trainer.global_step >= round(self.epochs * steps_per_epoch):
            trainer.should_stop = True


def fractional_epochs(trainer_cfg: dict) -> list[pl.Callback]:
    """Lightning counts whole epochs: `max_epochs=7.5` runs into epoch 8 and stops halfway."""
    epochs = trainer_cfg.get("max_epochs")
    if not isinstance(epochs, float) or epochs.is_integer():
        return []
    trainer_cfg["max_epochs"] = math.ceil(epochs)
    return [StopAtEpoch(epochs)]


def resume_from(resume: str | None, run_dir: Path) -> str | None:
    """The checkpoint to continue from: `resume=auto` takes the newest readable one of the run
    (last.ckpt or a periodic one), skipping truncated or corrupt files; a path is checked."""
    if not resume:
        return None
    if resume != "auto":
        read_checkpoint(resume, key="resume")  # a clear error for a missing or corrupt file
        return str(resume)
    found = [run_dir / "last.ckpt", *(run_dir / "checkpoints").glob("step=*.ckpt")]
    for path in sorted((p for p in found if p.is_file()), key=lambda p: p.stat().st_mtime,
                       reverse=True):  # fmt: skip
        try:
            read_checkpoint(path)
        except UserError as e:
            log.warning("resume=auto: skipping %s (%s)", path, e)
            continue
        log.info("resume=auto: continuing from %s", path)
        return str(path)
    log.info("resume=auto: no checkpoint in %s yet, starting afresh", run_dir)
    return None


def train(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Train as configured; tokenizer, checkpoints and logs go to `run_dir`. Returns a summary."""
    run_dir = Path(run_dir)
    compile_backend(cfg.compile)  # bad values fail before the data is prepared
    optimizer, scheduler = factories(cfg.optim)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # the seed is in config.yaml
    datamodule = build_datamodule(cfg.data)
    tokenizer = datamodule.prepare_tokenizer()
    tokenizer.save(run_dir / "tokenizer")
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

    optim = cfg.optim
    module = TranslationModule(
        model_config=model_config(cfg, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size),
        tokenizer=tokenizer,
        data_config=OmegaConf.to_container(cfg.data, resolve=True),
        optimizer=optimizer,
        scheduler=scheduler,
        label_smoothing=optim.label_smoothing,
        loss_per=optim.loss_per,
        nonfinite=optim.nonfinite,
        loss_chunk=cfg.loss_chunk,
        compile=cfg.compile,
        val_decode=validation_decode(cfg.decode),
    )
    n_params = sum(p.numel() for p in module.model.parameters())
    log.info("model: %s, %.2fM parameters", cfg.model._target_, n_params / 1e6)

    checkpoints = ModelCheckpoint(
        dirpath=run_dir,
        filename="best",
        monitor="val/bleu",
        mode="max",
        save_top_k=1,
        save_last=True,
        auto_insert_metric_name=False,
    )
    callbacks = [checkpoints, *periodic_checkpoints(cfg.checkpoint, run_dir),
                 SaveOnSigterm(run_dir / "last.ckpt"), ValidateAfterStep(),
                 *(instantiate(c) for c in cfg.get("callbacks", {}).values())]  # fmt: skip
    ckpt_path = resume_from(cfg.get("resume"), run_dir)
    # A resumed run logs to logs/resume<N>/ so the interrupted run's metrics.csv is kept.
    log_version = f"resume{len(list(run_dir.glob('logs/resume*'))) + 1}" if ckpt_path else ""
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_cfg["precision"] = resolve_precision(
        trainer_cfg["precision"], trainer_cfg["accelerator"]
    )
    callbacks += fractional_epochs(trainer_cfg)
    trainer: pl.Trainer = instantiate(
        trainer_cfg,
        callbacks=callbacks,
        logger=[
            CSVLogger(run_dir, name="logs", version=log_version),
            TensorBoardLogger(run_dir, name="tb", version=""),
        ],
        default_root_dir=str(run_dir),
        plugins=[CheckpointWriter()],  # temp file + rename; a full disk: one line, old file kept
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    # Lightning writes last.ckpt when it validates; a run stopped between validations (max_steps,
    # max_time, Ctrl-C) would lose its final steps. Every rank takes part (DDP).
    trainer.save_checkpoint(run_dir / "last.ckpt")

    best = checkpoints.best_model_score
    summary = {
        "best_val_bleu": float(best) if best is not None else None,
        "best_ckpt": checkpoints.best_model_path,
        "last_ckpt": str(run_dir / "last.ckpt"),
        "bleu_signature": module.bleu_signature,
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "parameters": n_params,
        "rank": trainer.global_rank,
    }
    return summary
