"""The LightningDataModule: source pairs -> tokenizer -> ids (reversed if asked) -> batches."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from seq2seq.data.batching import BucketBatchSampler, collate, reverse_source
from seq2seq.data.sources import Pair, Source, default_cache_dir
from seq2seq.data.tokenizer import Tokenizer, build_tokenizer
from seq2seq.errors import UserError

log = logging.getLogger(__name__)


class EncodedPairs(Dataset):
    """Token ids of one split; `tgt` is None for source-only input (translation)."""

    def __init__(self, src: list[list[int]], tgt: list[list[int]] | None = None) -> None:
        self.src, self.tgt = src, tgt

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i: int) -> dict:
        return {"idx": i, "src": self.src[i], "tgt": None if self.tgt is None else self.tgt[i]}

    def lengths(self) -> list[int]:
        """Per-example cost for batching: the longer side, with its EOS/BOS."""
        if self.tgt is None:
            return [len(s) + 1 for s in self.src]
        return [max(len(s), len(t)) + 1 for s, t in zip(self.src, self.tgt)]


def encode_pairs(
    tokenizer: Tokenizer, pairs: list[Pair], reverse: bool, max_len: int | None = None
) -> tuple[EncodedPairs, list[int]]:
    """Tokenise pairs, dropping empty ones and those with a side >= `max_len` (with EOS/BOS).

    Returns the data and the indices of the kept pairs.
    """
    src = tokenizer.encode_src([s for s, _ in pairs])
    tgt = tokenizer.encode_tgt([t for _, t in pairs])
    keep = [
        i
        for i, (s, t) in enumerate(zip(src, tgt))
        if s and t and (max_len is None or max(len(s), len(t)) < max_len)
    ]
    if reverse:
        src = [reverse_source(s) for s in src]
    return EncodedPairs([src[i] for i in keep], [tgt[i] for i in keep]), keep


def encode_sources(tokenizer: Tokenizer, texts: list[str], reverse: bool) -> EncodedPairs:
    ids = tokenizer.encode_src(texts)
    return EncodedPairs([reverse_source(s) if reverse else s for s in ids])


class TranslationDataModule(pl.LightningDataModule):
    """Train and validation data for one language pair, with its sentencepiece tokenizer."""

    def __init__(
        self,
        source: Source,
        train_split: str = "train",
        valid_split: str = "val",
        vocab_size: int = 8000,
        spm_model_type: str = "unigram",
        joint_vocab: bool = True,
        reverse_source: bool = True,
        batch_size: int | None = 128,
        max_tokens: int | None = None,
        valid_max_tokens: int = 8000,
        max_len: int = 128,
        num_workers: int = 0,
        seed: int = 0,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.train_split, self.valid_split = train_split, valid_split
        self.vocab_size, self.spm_model_type, self.joint_vocab = (
            vocab_size,
            spm_model_type,
            joint_vocab,
        )
        self.reverse_source = reverse_source
        self.resume_at: tuple[int, int] | None = None  # (epoch, batches done): set on resume
        self.batch_size, self.max_tokens, self.valid_max_tokens = (
            batch_size,
            max_tokens,
            valid_max_tokens,
        )
        self.max_len, self.num_workers, self.seed = max_len, num_workers, seed
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.tokenizer: Tokenizer | None = None
        self.valid_refs: list[str] = []

    def prepare_tokenizer(self) -> Tokenizer:
        """Load the training pairs and train (or reuse) the tokenizer; idempotent."""
        if self.tokenizer is None:
            self.train_pairs = self.source.pairs(self.train_split)
            self.tokenizer = build_tokenizer(
                self.train_pairs,
                self.vocab_size,
                self.spm_model_type,
                self.joint_vocab,
                self.cache_dir,
            )
        return self.tokenizer

    def setup(self, stage: str | None = None) -> None:
        tokenizer = self.prepare_tokenizer()
        if hasattr(self, "train_data"):
            return
        self.train_data, kept = encode_pairs(
            tokenizer, self.train_pairs, self.reverse_source, self.max_len
        )
        dropped = len(self.train_pairs) - len(kept)
        if not kept:
            raise UserError(
                f"data.max_len={self.max_len}: every one of the {dropped} {self.train_split} "
                "pairs has an empty side or one this long (in subword tokens); raise data.max_len"
            )
        log.log(
            logging.WARNING if dropped else logging.INFO,  # data left out: say so
            "train: %d pairs (%d dropped: empty or longer than data.max_len=%d tokens)",
            len(kept),
            dropped,
            self.max_len,
        )
        valid_pairs = self.source.pairs(self.valid_split)
        # Validation keeps every pair (BLEU is over the whole set), whatever its length.
        self.valid_data, kept = encode_pairs(tokenizer, valid_pairs, self.reverse_source)
        self.valid_refs = [valid_pairs[i][1] for i in kept]
        if len(kept) < len(valid_pairs):
            log.warning("valid: %d pairs with an empty side skipped", len(valid_pairs) - len(kept))

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        sampler = BucketBatchSampler(
            self.train_data.lengths(),
            batch_size=self.batch_size,
            max_tokens=self.max_tokens,
            shuffle=True,
            seed=self.seed,
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
        )
        if self.resume_at is not None and self.resume_at[1] < len(sampler):
            sampler.resume(*self.resume_at)  # mid-epoch checkpoint: continue that epoch
        return self._loader(self.train_data, sampler)

    def val_dataloader(self) -> DataLoader:
        trainer = self.trainer  # under DDP each rank validates a shard; the module gathers them
        sampler = BucketBatchSampler(
            self.valid_data.lengths(),
            max_tokens=self.valid_max_tokens,
            shuffle=False,
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
            budget_key="data.valid_max_tokens",
        )
        return self._loader(self.valid_data, sampler)

    def _loader(self, data: Dataset, sampler: BucketBatchSampler) -> DataLoader:
        return DataLoader(
            data,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )


def build_datamodule(cfg: DictConfig) -> TranslationDataModule:
    """`cfg.data` -> datamodule: `source` is instantiated; keys the datamodule takes are passed.

    Other keys (`dir`, `src`, `tgt`, ...) exist for the source's interpolations, so users can
    write `data.dir=...` instead of `data.source.dir=...`.
    """
    params = inspect.signature(TranslationDataModule).parameters
    kwargs = {k: v for k, v in cfg.items() if k in params and k != "source"}
    return TranslationDataModule(source=instantiate(cfg.source), **kwargs)
