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
from pytorch_lightning.callbacks import Checkpoint, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.plugins import TorchCheckpointIO

from seq2seq.checkpoint import read_checkpoint, same_tokenizer, save_checkpoint
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


class LastCheckpoint(ModelCheckpoint):
    """`last.ckpt` at every validation, whether or not it is the best so far (Lightning >= 2.6's
    `save_last` writes it only where a best checkpoint is written too); where training stops
    between validations, `SaveOnStop` writes it. A class of its own, so its state key differs
    from a user's ModelCheckpoint with the same settings."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(dirpath=run_dir, filename="last", save_top_k=1,
                         save_on_train_epoch_end=False, enable_version_counter=False)  # fmt: skip


class SaveOnStop(Checkpoint):
    """Writes `last.ckpt` at the end of the batch after which training stops, from inside the
    loop, where Lightning's own checkpoints are written: by `max_steps`, at the last batch of
    the last epoch, or once something has asked the run to stop (`max_time`, a fractional
    `max_epochs`, SIGTERM, Ctrl-C). A checkpoint written after `fit` returns had the epoch
    counted as finished, so a run resumed from a mid-epoch stop skipped the rest of its epoch.
    A `Checkpoint`, so Lightning runs it after every other callback (`max_time`'s among them).

    SLURM sends SIGTERM before pre-empting a job, and Ctrl-C sends SIGINT: either is held to
    the end of the batch, then handed to Lightning's SIGTERM handler, whose loop stops there;
    the resubmitted job continues with `resume=auto`. A second Ctrl-C stops at once, without a
    checkpoint. A signal arriving after this callback's `on_train_batch_end` but before that
    check (while other callbacks write their checkpoints) would stop the run with no
    `last.ckpt` of its own, so it waits for the next batch's end; with gradient accumulation,
    for the next batch at whose end the optimizer steps (`optimizer_stepped`), so no
    accumulated gradient is lost. A `max_time` stop waits for that step as well.

    Under DDP every rank hands it over at the same batch's end, as soon as any rank holds one
    (one all-reduce of a flag per step, on GPUs a host sync, as Lightning's own per-step SIGTERM
    broadcast under DDP already is): Lightning's handler runs a collective, and ranks that
    stopped at different batches would wait on each other's mismatched collectives."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lightning: Callable[..., Any] | None = None
        self.held: tuple[int, Any] | None = None
        self.stopping = False  # a Ctrl-C was handed over: a second one stops at once
        self.pending = False  # a stop asked for between two optimizer steps
        self.sigint: Any = None  # the handler before training

    def on_train_start(self, trainer: pl.Trainer, *args: object) -> None:
        count_the_next_epoch(trainer)
        if threading.current_thread() is not threading.main_thread():
            return
        handler = signal.getsignal(signal.SIGTERM)  # Lightning's, registered before this hook
        if callable(handler):
            self.lightning = handler
            signal.signal(signal.SIGTERM, self.hold)
        self.sigint = signal.signal(signal.SIGINT, self.hold)

    def hold(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and (self.stopping or (self.held or (0,))[0] == signal.SIGINT):
            raise KeyboardInterrupt  # a second Ctrl-C
        self.held = (signum, frame)

    def restore(self) -> None:
        if self.sigint is not None:
            signal.signal(signal.SIGINT, self.sigint)
            self.sigint = None

    def on_train_end(self, *args: object) -> None:
        self.restore()

    def on_exception(self, *args: object) -> None:
        self.restore()

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        stepped = optimizer_stepped(trainer, batch_idx)
        signalled = self.held[0] if self.held else signal.SIGTERM
        # any rank's signal (`hold` sets it; a bare bool without DDP), handed over where the
        # optimizer has just stepped (the same batch on every rank)
        if stepped and trainer.strategy.reduce_boolean_decision(self.held is not None, all=False):
            self.stopping = signalled == signal.SIGINT
            if self.lightning is not None:  # now the loop stops after this batch
                # as SIGTERM: under DDP Lightning passes it on to the other ranks, where a
                # second SIGINT would read as a second Ctrl-C
                self.lightning(signal.SIGTERM, self.held[1] if self.held else None)
            else:
                trainer.should_stop = True
            self.held = None
        if trainer.should_stop and not stepped:  # (max_time's Timer, EarlyStopping)
            trainer.should_stop, self.pending = False, True
        elif stepped and self.pending:
            trainer.should_stop, self.pending = True, False
        if trainer.received_sigterm:  # also from Lightning's own handler, if it was not replaced
            trainer.save_checkpoint(self.path)
            name = "Ctrl-C" if signalled == signal.SIGINT else signal.Signals(signalled).name
            log.warning("%s: saved %s; rerun with resume=auto to continue", name, self.path)
        elif self.stops_after(trainer, batch_idx):
            trainer.save_checkpoint(self.path)

    @staticmethod
    def stops_after(trainer: pl.Trainer, batch_idx: int) -> bool:
        """Whether training ends after this batch (it may still validate)."""
        epoch_end = batch_idx + 1 >= trainer.num_training_batches
        if trainer.should_stop:  # unless min_epochs or min_steps are not reached yet
            if getattr(trainer.fit_loop, "_can_stop_early", True):
                return True
            # ... which they are at the end of this epoch (Lightning checks them after it)
            fit = trainer.fit_loop
            enough = trainer.current_epoch + 1 >= (fit.min_epochs or 0)
            return epoch_end and enough and trainer.global_step >= (fit.min_steps or 0)
        if 0 <= trainer.max_steps <= trainer.global_step:
            return True
        epochs = trainer.max_epochs
        last_epoch = epochs is not None and epochs >= 0 and trainer.current_epoch + 1 >= epochs
        return last_epoch and epoch_end


def count_the_next_epoch(trainer: pl.Trainer) -> None:
    """A run resumed from a checkpoint written at an epoch's last batch, inside the loop
    (`SaveOnStop`; a periodic checkpoint there): Lightning goes on with the next epoch without
    counting it as started, so that run's own checkpoints counted one epoch too few, and a
    run resumed from one of those lost its place. Counted here, as Lightning counts an epoch
    it starts itself."""
    fit = trainer.fit_loop
    loop, last = fit.epoch_loop, fit.epoch_loop.batch_progress.is_last_batch
    if fit.restarted_mid_epoch and loop.restarted_on_train_batch_end and last:
        fit.epoch_progress.increment_ready()
        fit.epoch_progress.increment_started()


class StopAtEpoch(pl.Callback):
    """Stop after a fractional number of epochs (`trainer.max_epochs=7.5`, Sutskever et al.
    2014, §3.4), counted in optimizer steps as the learning-rate schedules count them."""

    def __init__(self, epochs: float) -> None:
        self.epochs = epochs

    def on_train_start(self, trainer: pl.Trainer, *args: object) -> None:
        self.on_train_batch_end(trainer)  # a rerun of a finished run trains no further step

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


def check_resumable(path: str, module: TranslationModule) -> None:
    """A one-line error where this run cannot continue from checkpoint `path`: weights that
    do not fit its model (other sizes or architecture), or another tokenizer (the same ids
    would mean other words); a warning for changed model settings that leave the weights'
    shapes as they are (dropout, say), which the run continues with."""
    ckpt = read_checkpoint(path, key="resume")
    meta, state, here = ckpt["seq2seq"], ckpt["state_dict"], module.state_dict()
    before, now = meta["model"], module.model_config
    keys = [k for k in sorted(before.keys() | now.keys()) if before.get(k) != now.get(k)]
    changed = ", ".join(f"{k}: {before.get(k)!r} there, {now.get(k)!r} here" for k in keys)
    misfits = sorted(here.keys() ^ state.keys())
    misfits += [k for k in sorted(here.keys() & state.keys()) if here[k].shape != state[k].shape]
    if misfits:
        raise UserError(f"resume={path}: its weights do not fit this run's model ({len(misfits)} "
                        f"differ, e.g. {misfits[0]}; {changed or 'same settings'}); resume with "
                        "its settings, or train into a new run directory")  # fmt: skip
    if not same_tokenizer(meta["tokenizer"], module.tokenizer.state_dict()):
        raise UserError(f"resume={path}: trained with another tokenizer than this run's (other "
                        "data or data.* vocabulary settings); resume with its settings, or train "
                        "into a new run directory")  # fmt: skip
    if changed:
        log.warning("resume=%s: continuing with other model settings than it had (%s)", path,
                    changed)  # fmt: skip


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
        auto_insert_metric_name=False,
    )
    # LastCheckpoint after `checkpoints`, so last.ckpt holds the best score of its validation
    callbacks = [checkpoints, LastCheckpoint(run_dir),
                 *periodic_checkpoints(cfg.checkpoint, run_dir),
                 SaveOnStop(run_dir / "last.ckpt"), ValidateAfterStep(),
                 *(instantiate(c) for c in cfg.get("callbacks", {}).values())]  # fmt: skip
    ckpt_path = resume_from(cfg.get("resume"), run_dir)
    if ckpt_path:
        check_resumable(ckpt_path, module)
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
