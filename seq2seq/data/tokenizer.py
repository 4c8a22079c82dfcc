"""Tokenizers: sentencepiece subwords (default) or the paper's word vocabularies (`words.py`),
trained once on (a sample of) the training split, cached, and stored in checkpoints as bytes."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import sentencepiece as spm
import torch
from filelock import FileLock

from seq2seq.errors import UserError, check_choice, check_int

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)

# Fixed special ids, set at training time, so every model and checkpoint agrees on them.
PAD, UNK, BOS, EOS = 0, 1, 2, 3


class Tokenizer(Protocol):
    """What models, search and evaluation see of a tokenizer: ids in, ids and text out."""

    kind: str

    @property
    def src_vocab_size(self) -> int: ...

    @property
    def tgt_vocab_size(self) -> int: ...

    def encode_src(self, texts: list[str]) -> list[list[int]]: ...

    def encode_tgt(self, texts: list[str]) -> list[list[int]]: ...

    def decode_tgt(self, ids: Sequence[Sequence[int]]) -> list[str]: ...

    def state_dict(self) -> dict[str, torch.Tensor]: ...

    def save(self, directory: str | Path) -> None: ...


class SentencePieceTokenizer:
    """A source and a target sentencepiece model (the same one when the vocabulary is joint)."""

    kind = "sentencepiece"

    def __init__(self, src_model: bytes, tgt_model: bytes) -> None:
        self.src_model, self.tgt_model = src_model, tgt_model
        self.src = spm.SentencePieceProcessor(model_proto=src_model)
        self.tgt = spm.SentencePieceProcessor(model_proto=tgt_model)

    def __getstate__(self) -> dict:  # worker processes rebuild the processors from the bytes
        return {"src_model": self.src_model, "tgt_model": self.tgt_model}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["src_model"], state["tgt_model"])

    @property
    def joint(self) -> bool:
        return self.src_model == self.tgt_model

    @property
    def src_vocab_size(self) -> int:
        return self.src.get_piece_size()

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt.get_piece_size()

    def encode_src(self, texts: list[str]) -> list[list[int]]:
        return self.src.encode(texts)

    def encode_tgt(self, texts: list[str]) -> list[list[int]]:
        return self.tgt.encode(texts)

    def decode_tgt(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Detokenise target ids (specials dropped) back to plain text."""
        return self.tgt.decode([[i for i in seq if i > EOS] for seq in ids])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Model bytes as uint8 tensors, so checkpoints load with `weights_only=True`."""
        return {"src": to_tensor(self.src_model), "tgt": to_tensor(self.tgt_model)}

    def save(self, directory: str | Path) -> None:
        """Write the model file(s) as `spm.model` (joint) or `src.model` + `tgt.model`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.joint:
            (directory / "spm.model").write_bytes(self.src_model)
        else:
            (directory / "src.model").write_bytes(self.src_model)
            (directory / "tgt.model").write_bytes(self.tgt_model)


def tokenizer_from_state_dict(state: dict[str, torch.Tensor]) -> Tokenizer:
    """The tokenizer a checkpoint stored (sentencepiece or word vocabularies)."""
    if "kind" in state and to_bytes(state["kind"]) == b"word":
        from seq2seq.data.words import WordTokenizer

        return WordTokenizer.from_state_dict(state)
    return SentencePieceTokenizer(to_bytes(state["src"]), to_bytes(state["tgt"]))


def tokenizer_digest(tokenizer: Tokenizer) -> str:
    """sha256 of everything a tokenizer is: what cached token ids were made with."""
    h = hashlib.sha256(tokenizer.kind.encode())
    for name, t in sorted(tokenizer.state_dict().items()):
        h.update(name.encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def to_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()


def to_bytes(t: torch.Tensor) -> bytes:
    return t.cpu().numpy().tobytes()


def train_sentencepiece(
    sentences: Iterable[str], vocab_size: int, model_type: str = "unigram", seed: int = 0
) -> bytes:
    """Train one sentencepiece model in memory and return its serialised bytes."""
    out = io.BytesIO()
    spm.set_random_generator_seed(seed)  # sampling of input sentences: reproducible
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=out,
            vocab_size=vocab_size,
            model_type=model_type,
            pad_id=PAD,
            unk_id=UNK,
            bos_id=BOS,
            eos_id=EOS,
            character_coverage=1.0,
            input_sentence_size=2_000_000,
            shuffle_input_sentence=True,
            num_threads=2,
            minloglevel=2,
        )
    except RuntimeError as e:
        found = re.search(r"Vocabulary size too high \(\d+\)\. Please set it to a value <= (\d+)",
                          str(e))  # fmt: skip
        if found:
            raise UserError(
                f"data.vocab_size={vocab_size}: the training data supports at most "
                f"{found.group(1)} {model_type} pieces; lower data.vocab_size"
            ) from None
        found = re.search(r"smaller than required_chars\. \d+ vs (\d+)", str(e))
        if found:
            raise UserError(
                f"data.vocab_size={vocab_size}: the training data has {int(found.group(1)) - 4} "
                "distinct characters, and each needs a piece (with 4 specials); raise "
                "data.vocab_size"
            ) from None
        raise
    return out.getvalue()


@dataclass(frozen=True)
class TokenizerSpec:
    """How to build a tokenizer: `data.tokenizer` and the settings of that kind."""

    kind: str = "sentencepiece"  # or "word": Moses tokens, most frequent words, UNK (§3.1)
    vocab_size: int = 8000  # sentencepiece pieces
    model_type: str = "unigram"  # sentencepiece: unigram | bpe
    joint: bool = True  # sentencepiece: one model for both languages
    sample: int = 1_000_000  # sentencepiece trains on at most this many sentences
    src_words: int = 160_000  # word: the most frequent source words kept
    tgt_words: int = 80_000  # word: the most frequent target words kept
    src_lang: str = "en"
    tgt_lang: str = "fr"

    def __post_init__(self) -> None:
        check_int("data.vocab_size", self.vocab_size, minimum=5)  # 4 specials and a piece
        check_choice("data.spm_model_type", self.model_type, ("unigram", "bpe", "char", "word"))
        check_int("data.spm_sample", self.sample)
        check_int("data.src_words", self.src_words)
        check_int("data.tgt_words", self.tgt_words)

    def settings(self) -> dict:
        """What the tokenizer depends on, beyond the data (the cache key)."""
        if self.kind == "word":
            keys = ("kind", "src_words", "tgt_words", "src_lang", "tgt_lang")
        else:
            keys = ("kind", "vocab_size", "model_type", "joint", "sample")
        return {k: getattr(self, k) for k in keys}


def sample_rows(n: int, k: int, seed: int = 0) -> np.ndarray | None:
    """Sorted indices of a deterministic random sample of k of n rows; None when k >= n."""
    if k >= n:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def _sample_column(train: datasets.Dataset, column: str, k: int) -> list[str]:
    rows = sample_rows(len(train), k)
    return list((train if rows is None else train.select(rows))[column])


def train_tokenizer(train: datasets.Dataset, spec: TokenizerSpec, num_proc: int = 1) -> Tokenizer:
    """Train a tokenizer of `spec` on the training split (columns `src`, `tgt`)."""
    if spec.kind == "word":
        from seq2seq.data.words import WordTokenizer

        return WordTokenizer.train(train, spec.src_lang, spec.tgt_lang, spec.src_words,
                                   spec.tgt_words, num_proc)  # fmt: skip
    if spec.kind != "sentencepiece":
        raise UserError(f"data.tokenizer={spec.kind}: unknown; use sentencepiece or word")
    if spec.joint:
        half = max(1, spec.sample // 2)
        sentences = _sample_column(train, "src", half) + _sample_column(train, "tgt", half)
        src_model = tgt_model = train_sentencepiece(sentences, spec.vocab_size, spec.model_type)
    else:
        src_model = train_sentencepiece(_sample_column(train, "src", spec.sample),
                                        spec.vocab_size, spec.model_type)  # fmt: skip
        tgt_model = train_sentencepiece(_sample_column(train, "tgt", spec.sample),
                                        spec.vocab_size, spec.model_type)  # fmt: skip
    return SentencePieceTokenizer(src_model, tgt_model)


def _read_text(path: Path) -> str | None:
    return path.read_text().strip() if path.is_file() else None


def tokenizer_key(data_key: str, spec: TokenizerSpec) -> str:
    """The cache key of a tokenizer: its training data and its settings."""
    return hashlib.sha256(json.dumps([data_key, spec.settings(), 2]).encode()).hexdigest()


def build_tokenizer(
    train: Callable[[], datasets.Dataset],
    data_key: str,
    spec: TokenizerSpec = TokenizerSpec(),
    cache_dir: str | Path | None = None,
    num_proc: int = 1,
) -> Tokenizer:
    """Train (or reuse from `cache_dir`) the tokenizer of `spec` for the training data that
    `data_key` names; `train()` loads that data and is only called when training is needed.

    A cache entry is `tokenizers/<first 16 hex digits of the key>/` holding `state.pt` and the
    full key in `sha256`; an entry whose stored key differs (copied from another corpus, say)
    is retrained. Concurrent runs and DDP ranks take a file lock: one trains, the others reuse.
    """
    key = tokenizer_key(data_key, spec)
    if cache_dir is None:
        return train_tokenizer(train(), spec, num_proc)
    entry = Path(cache_dir) / "tokenizers" / key[:16]
    entry.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(entry) + ".lock"):
        found = _read_text(entry / "sha256")
        if found == key:
            log.info("Reusing tokenizer %s", entry)
            return tokenizer_from_state_dict(torch.load(entry / "state.pt", weights_only=True))
        if found is not None:
            log.warning(
                "tokenizer cache %s was built from other data (key %s..., this corpus %s...); "
                "retraining it",
                entry,
                found[:16],
                key[:16],
            )
        tokenizer = train_tokenizer(train(), spec, num_proc)
        entry.mkdir(parents=True, exist_ok=True)
        (entry / "sha256").unlink(missing_ok=True)
        torch.save(tokenizer.state_dict(), entry / "state.pt.tmp")
        (entry / "state.pt.tmp").replace(entry / "state.pt")
        (entry / "sha256").write_text(key + "\n")  # last: its presence marks a complete entry
        log.info("Trained tokenizer %s", entry)
    return tokenizer
