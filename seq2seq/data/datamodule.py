"""The LightningDataModule: source pairs -> tokenizer -> cached ids -> filtered -> batches."""

from __future__ import annotations

import inspect
import logging
import os
import signal
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from lightning_fabric.utilities.seed import pl_worker_init_function
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from seq2seq.data.batching import BucketBatchSampler, collate, reverse_source
from seq2seq.data.preprocess import CachedIds, encoded_split, lengths, subsample
from seq2seq.data.sources import Source, default_cache_dir, digest
from seq2seq.data.tokenizer import Tokenizer, TokenizerSpec, build_tokenizer
from seq2seq.errors import UserError, check_int

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)


class CachedPairs(Dataset):
    """The kept `rows` of a split's token ids in the Arrow cache (memory-mapped, shared by
    every process); example i is row `rows[i]`, its source reversed if asked."""

    def __init__(
        self, ids: CachedIds, rows: np.ndarray, reverse: bool,
        src_lens: np.ndarray | None = None, tgt_lens: np.ndarray | None = None,
    ) -> None:  # fmt: skip
        """`src_lens`/`tgt_lens`: every row's token counts, when the caller has them already."""
        self.ids, self.rows, self.reverse = ids, rows, reverse
        src_lens = lengths(ids, "src") if src_lens is None else src_lens
        tgt_lens = lengths(ids, "tgt") if tgt_lens is None else tgt_lens
        self.src_lens, self.tgt_lens = src_lens[rows], tgt_lens[rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitems__(self, indices: list[int]) -> list[dict]:
        """A whole batch in one Arrow read (DataLoader calls this when it exists)."""
        got = self.ids.table.take(self.rows[indices])
        src, tgt = got.column("src").to_pylist(), got.column("tgt").to_pylist()
        return [{"idx": i, "src": reverse_source(s) if self.reverse else s, "tgt": t}
                for i, s, t in zip(indices, src, tgt)]  # fmt: skip

    def __getitem__(self, i: int) -> dict:
        return self.__getitems__([i])[0]

    def lengths(self) -> np.ndarray:
        """Per-example cost for batching: the longer side, with its EOS/BOS."""
        return np.maximum(self.src_lens, self.tgt_lens) + 1


def length_filter(
    src_lens: np.ndarray, tgt_lens: np.ndarray, max_len: int | None, max_ratio: float | None
) -> tuple[np.ndarray, dict[str, int]]:
    """Rows to keep, and how many were dropped for each reason (in this order): an empty side;
    a side longer than `max_len` tokens (with its EOS/BOS); a longer/shorter side ratio above
    `max_ratio` (lengths without EOS/BOS)."""
    longer, shorter = np.maximum(src_lens, tgt_lens), np.minimum(src_lens, tgt_lens)
    empty = shorter == 0
    long = ~empty & (longer + 1 > max_len) if max_len else np.zeros_like(empty)
    ratio = ~empty & ~long & (longer > max_ratio * shorter) if max_ratio else np.zeros_like(empty)
    keep = np.flatnonzero(~(empty | long | ratio))
    return keep, {"empty": int(empty.sum()), "long": int(long.sum()), "ratio": int(ratio.sum())}


class TranslationDataModule(pl.LightningDataModule):
    """Train and validation data for one language pair, with its tokenizer.

    `prepare_data` (rank 0 of each node) trains the tokenizer and tokenises both splits into
    the Arrow cache; `setup` (every rank) memory-maps them and filters by length. Both are
    idempotent and find the cache by key, so a second run starts without tokenising.
    """

    def __init__(
        self,
        source: Source,
        train_split: str = "train",
        valid_split: str = "val",
        tokenizer: str = "sentencepiece",
        vocab_size: int = 8000,
        spm_model_type: str = "unigram",
        joint_vocab: bool = True,
        spm_sample: int = 1_000_000,
        src_words: int = 160_000,
        tgt_words: int = 80_000,
        reverse_source: bool = True,
        batch_size: int | None = 128,
        max_tokens: int | None = None,
        valid_max_tokens: int = 8000,
        max_len: int = 128,
        max_len_ratio: float | None = None,
        max_train_pairs: int | None = None,
        strict: bool = False,
        num_proc: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        for key, value, optional in (("batch_size", batch_size, True),
                                     ("max_tokens", max_tokens, True),
                                     ("valid_max_tokens", valid_max_tokens, False),
                                     ("max_len", max_len, True),
                                     ("max_train_pairs", max_train_pairs, True),
                                     ("num_proc", num_proc, True)):  # fmt: skip
            check_int(f"data.{key}", value, optional=optional)
        check_int("data.num_workers", num_workers, minimum=0)
        if batch_size is None and max_tokens is None:
            raise UserError("data.batch_size and data.max_tokens are both null: set one")
        ratio = max_len_ratio
        if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float))
                                  or ratio <= 0):  # fmt: skip
            raise UserError(f"data.max_len_ratio={ratio}: expected a positive number or null")
        self.source = source
        self.train_split, self.valid_split = train_split, valid_split
        self.spec = TokenizerSpec(
            kind=tokenizer,
            vocab_size=vocab_size,
            model_type=spm_model_type,
            joint=joint_vocab,
            sample=spm_sample,
            src_words=src_words,
            tgt_words=tgt_words,
            src_lang=source.src,
            tgt_lang=source.tgt,
        )
        self.reverse_source = reverse_source
        self.resume_at: tuple[int, int] | None = None  # (epoch, batches done): set on resume
        self.batch_size, self.max_tokens, self.valid_max_tokens = (
            batch_size,
            max_tokens,
            valid_max_tokens,
        )
        self.max_len, self.max_len_ratio, self.strict = max_len, max_len_ratio, strict
        self.max_train_pairs = max_train_pairs
        self.num_proc = num_proc or min(8, os.cpu_count() or 1)
        self.num_workers, self.seed = num_workers, seed
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.tokenizer: Tokenizer | None = None
        self.valid_refs: list[str] = []

    def _train_raw(self) -> datasets.Dataset:
        return subsample(self.source.dataset(self.train_split), self.max_train_pairs)

    def prepare_tokenizer(self) -> Tokenizer:
        """Train (or reuse) the tokenizer on the training split; idempotent."""
        if self.tokenizer is None:
            data_key = digest(self.source.key(self.train_split), self.max_train_pairs)
            self.tokenizer = build_tokenizer(
                self._train_raw, data_key, self.spec, self.cache_dir, self.num_proc
            )
        return self.tokenizer

    def _encoded(self, split: str, max_pairs: int | None = None) -> CachedIds:
        return encoded_split(
            lambda: self.source.dataset(split),
            self.source.key(split),
            self.prepare_tokenizer(),
            self.cache_dir,
            split,
            self.num_proc,
            max_pairs,
        )

    def prepare_data(self) -> None:
        self._encoded(self.train_split, self.max_train_pairs)
        self._encoded(self.valid_split)

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "train_data"):
            return
        ids = self._encoded(self.train_split, self.max_train_pairs)
        src_lens, tgt_lens = lengths(ids, "src"), lengths(ids, "tgt")
        self._check_empty(self.train_split, src_lens, tgt_lens)
        keep, dropped = length_filter(src_lens, tgt_lens, self.max_len, self.max_len_ratio)
        if not len(keep):
            raise UserError(
                f"data.max_len={self.max_len}: every one of the {len(ids)} {self.train_split} "
                "pairs has an empty side or one longer (in tokens); raise data.max_len"
            )
        log.log(
            logging.WARNING if len(keep) < len(ids) else logging.INFO,  # data left out: say so
            "%s: %d of %d pairs kept; dropped %d with an empty side, %d longer than "
            "data.max_len=%s tokens, %d with a length ratio above data.max_len_ratio=%s",
            self.train_split,
            len(keep),
            len(ids),
            dropped["empty"],
            dropped["long"],
            self.max_len,
            dropped["ratio"],
            self.max_len_ratio,
        )
        self.train_data = CachedPairs(ids, keep, self.reverse_source, src_lens, tgt_lens)
        # Validation keeps every pair with two sides (BLEU is over the whole set), whatever
        # its length.
        ids = self._encoded(self.valid_split)
        src_lens, tgt_lens = lengths(ids, "src"), lengths(ids, "tgt")
        self._check_empty(self.valid_split, src_lens, tgt_lens)
        keep, _ = length_filter(src_lens, tgt_lens, None, None)
        self.valid_data = CachedPairs(ids, keep, self.reverse_source, src_lens, tgt_lens)
        refs = [t for _, t in self.source.pairs(self.valid_split)]
        self.valid_refs = [refs[int(i)].strip() for i in keep]
        if len(keep) < len(ids):
            log.warning("%s: %d pairs with an empty side skipped", self.valid_split,
                        len(ids) - len(keep))  # fmt: skip

    def _check_empty(self, split: str, src_lens: np.ndarray, tgt_lens: np.ndarray) -> None:
        """With `data.strict`, a pair with an empty side is an error rather than dropped."""
        empty = np.flatnonzero(np.minimum(src_lens, tgt_lens) == 0)
        if self.strict and len(empty):
            subsampled = split == self.train_split and self.max_train_pairs
            where = "pair of the data.max_train_pairs subsample" if subsampled else "pair"
            raise UserError(
                f"data.strict=true: {split} has {len(empty)} pairs with an empty side "
                f"(the first is {where} {empty[0] + 1}); remove them or set data.strict=false"
            )

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        sampler = BucketBatchSampler(
            self.train_data.lengths(),  # no `ties`: README, "Speed" (it slowed learning)
            batch_size=self.batch_size,
            max_tokens=self.max_tokens,
            shuffle=True,
            seed=self.seed,
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
        )
        if self.resume_at is not None:
            epoch, done = self.resume_at
            if done < len(sampler):
                sampler.resume(epoch, done)  # mid-epoch checkpoint: continue that epoch
            else:  # written at its last batch: Lightning goes on with the next epoch without
                sampler.set_epoch(epoch + 1)  # on_train_epoch_start, which would reshuffle
        return self._loader(self.train_data, sampler)

    def val_dataloader(self) -> DataLoader:
        trainer = self.trainer  # under DDP each rank validates a shard; the module gathers them
        sampler = BucketBatchSampler(
            self.valid_data.lengths(),
            ties=(self.valid_data.src_lens, self.valid_data.tgt_lens),  # less source padding
            max_tokens=self.valid_max_tokens,
            shuffle=False,
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
            budget_key="data.valid_max_tokens",
        )
        return self._loader(self.valid_data, sampler)

    def _loader(self, data: Dataset, sampler: BucketBatchSampler) -> DataLoader:
        rank = self.trainer.global_rank if self.trainer else 0
        return DataLoader(
            data,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=partial(worker_init, rank=rank) if self.num_workers else None,
            # its own generator for the workers' seeds: starting an epoch's (or validation's)
            # iterator does not draw from the global RNG that dropout draws from, so a run
            # resumed from any batch draws the same dropout masks as one never stopped
            generator=torch.Generator().manual_seed(self.seed),
        )


def worker_init(worker_id: int, rank: int = 0) -> None:
    """A DataLoader worker ignores Ctrl-C, which a terminal sends to the whole process group:
    training finishes its batch and writes last.ckpt (`SaveOnStop`), and a worker that died on
    the signal first broke that batch. Then Lightning's seeding of the worker, where
    `seed_everything(workers=True)` asked for it (its own function, replaced by this one)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        pl_worker_init_function(worker_id, rank=rank)


def build_datamodule(cfg: DictConfig) -> TranslationDataModule:
    """`cfg.data` -> datamodule: `source` is instantiated; keys the datamodule takes are passed.

    Other keys (`dir`, `src`, `tgt`, ...) exist for the source's interpolations, so users can
    write `data.dir=...` instead of `data.source.dir=...`.
    """
    params = inspect.signature(TranslationDataModule).parameters
    kwargs = {k: v for k, v in cfg.items() if k in params and k != "source"}
    return TranslationDataModule(source=instantiate(cfg.source), **kwargs)
