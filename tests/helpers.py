"""Shared test helpers: tiny models, random batches, repository paths, scripts run in-process."""

import contextlib
import io
import logging
import os
import runpy
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint

from seq2seq.data.datamodule import TranslationDataModule
from seq2seq.data.sources import Demo, pairs_dataset
from seq2seq.data.tokenizer import Tokenizer, TokenizerSpec, build_tokenizer
from seq2seq.models.lstm import LSTMSeq2Seq
from seq2seq.module import TranslationModule

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
SCRIPTS = ROOT / "scripts"
MULTI30K = ROOT.parent / "shared" / "data" / "multi30k"


@dataclass
class Ran:
    """What `run_script` saw, named as `subprocess.run`'s result."""

    returncode: int
    stdout: str
    stderr: str


def run_script(script, *args, stdin=None) -> Ran:
    """`python scripts/<script> args` from the repository root, but in this process: the
    script's own `__main__` block, Hydra, its output and exit status (`sys.exit("error: ...")`
    is status 1 with that line on stderr), without a new interpreter's start-up (importing
    torch takes ~4 s on 2 cores, Lightning ~10 s more). A bug's exception propagates. Logging
    that Hydra set up for the run is undone. Tests that need a process of its own (signals,
    DDP, what a fresh interpreter imports) use `subprocess`."""
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    argv, cwd, stdin_ = sys.argv, os.getcwd(), sys.stdin
    code = 0
    try:
        os.chdir(ROOT)
        sys.argv = [str(SCRIPTS / script), *map(str, args)]
        sys.stdin = io.StringIO(stdin or "")
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(str(SCRIPTS / script), run_name="__main__")
    except SystemExit as e:
        if isinstance(e.code, str):
            err.write(e.code + "\n")
        code = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv, sys.stdin = argv, stdin_
        os.chdir(cwd)
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
    return Ran(code, out.getvalue(), err.getvalue())


def tiny_lstm(src_vocab=11, tgt_vocab=13, layers=2, hidden=32, seed=0, **options) -> LSTMSeq2Seq:
    """A small random LSTM with peaked output distributions, so searches face real choices.
    `options`: the model's other arguments (`cell`, `residual`)."""
    torch.manual_seed(seed)
    model = LSTMSeq2Seq(src_vocab, tgt_vocab, layers, hidden, 8, dropout=0.0, init_range=1.0,
                        **options)  # fmt: skip
    with torch.no_grad():
        model.out.weight.mul_(3.0)
    return model.eval()


def tokenizer_for(pairs, cache_dir=None, **spec) -> Tokenizer:
    """A tokenizer trained on in-memory pairs; `spec`: TokenizerSpec fields."""
    key = repr(pairs)  # the data's identity for the cache
    return build_tokenizer(lambda: pairs_dataset(pairs), key, TokenizerSpec(**spec), cache_dir)


def random_batch(vocab=11, lens=(5, 3, 7, 1), seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.zeros(len(lens), max(lens), dtype=torch.long)
    for i, n in enumerate(lens):
        src[i, :n] = torch.randint(4, vocab, (n,), generator=g)
    return src, torch.tensor(lens)


def tiny_setup(num_train, hidden, **trainer_args):
    """A demo datamodule, a small LSTM module, and a quiet Trainer without validation."""
    pl.seed_everything(0)
    dm = TranslationDataModule(Demo(num_train=num_train), vocab_size=200, batch_size=16)
    tokenizer = dm.prepare_tokenizer()
    model_config = {
        "_target_": "seq2seq.models.lstm.LSTMSeq2Seq",
        "src_vocab_size": tokenizer.src_vocab_size,
        "tgt_vocab_size": tokenizer.tgt_vocab_size,
        "num_layers": 2,
        "hidden_size": hidden,
        "embed_dim": 16,
    }
    module = TranslationModule(
        model_config,
        tokenizer,
        {"reverse_source": True, "src": "en", "tgt": "fr"},
        optimizer=lambda params: torch.optim.Adam(params, lr=1e-2),
    )
    trainer = pl.Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
        **trainer_args,
    )
    return dm, module, trainer


class RecordExamples(pl.Callback):
    """Appends the example ids of every training and validation batch (sanity checks excluded)
    to `<directory>/{train,val}_rank<r>.txt`, and saves each rank's final weights: which rank
    saw which data and ended with what, for the DDP test."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def _record(self, trainer: pl.Trainer, stage: str, batch: dict) -> None:
        if trainer.sanity_checking:
            return
        path = self.directory / f"{stage}_rank{trainer.global_rank}.txt"
        with open(path, "a") as f:
            f.write(" ".join(map(str, batch["idx"].tolist())) + "\n")

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self._record(trainer, "train", batch)

    def on_validation_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0):
        self._record(trainer, "val", batch)

    def on_train_end(self, trainer, module):
        torch.save(module.state_dict(), self.directory / f"weights_rank{trainer.global_rank}.pt")


class SignalAfterBatch(Checkpoint):
    """Sends this process signal `sig` at the end of training step `step`, after the other
    callbacks (train.py's SaveOnStop among them) have handled that batch's end; under DDP only
    on rank `rank` (None: every rank). `group`: to its whole process group instead, as a
    terminal's Ctrl-C (DataLoader workers too); the process must lead a group of its own. A
    `Checkpoint`, as SaveOnStop is, so Lightning runs it after them (listed later, it stays
    later)."""

    def __init__(self, step: int, rank: int | None = None, sig: str = "SIGTERM",
                 group: bool = False) -> None:  # fmt: skip
        self.step, self.rank, self.sig, self.group = step, rank, signal.Signals[sig], group

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step and self.rank in (None, trainer.global_rank):
            if not self.group:
                os.kill(os.getpid(), self.sig)
            elif os.getpgid(0) == os.getpid():  # never the test runner's group
                os.killpg(0, self.sig)
            else:
                raise RuntimeError("SignalAfterBatch(group=True) outside a group of its own")


class StopAtStep(pl.Callback):
    """Asks the run to stop (`trainer.should_stop`) at the end of every batch from training
    step `step` on, as max_time's Timer does; or, with `batch`, once, at the end of that
    batch of the epoch (counted from 1), as EarlyStopping does."""

    def __init__(self, step: int | None = None, batch: int | None = None) -> None:
        self.step, self.batch = step, batch

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.batch is not None and batch_idx + 1 == self.batch:
            trainer.should_stop = True
        elif self.step is not None and trainer.global_step >= self.step:
            trainer.should_stop = True


def recorded(directory: Path, stage: str, rank: int) -> list[int]:
    """The example ids `RecordExamples` wrote for one rank, in order."""
    text = (directory / f"{stage}_rank{rank}.txt").read_text()
    return [int(i) for i in text.split()]
