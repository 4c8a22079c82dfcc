"""Sentencepiece subword tokenizers: trained once on the training split, cached, sent as bytes."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import sentencepiece as spm
import torch

log = logging.getLogger(__name__)

# Fixed special ids, set at training time, so every model and checkpoint agrees on them.
PAD, UNK, BOS, EOS = 0, 1, 2, 3


class Tokenizer:
    """A source and a target sentencepiece model (the same one when the vocabulary is joint)."""

    def __init__(self, src_model: bytes, tgt_model: bytes) -> None:
        self.src_model, self.tgt_model = src_model, tgt_model
        self.src = spm.SentencePieceProcessor(model_proto=src_model)
        self.tgt = spm.SentencePieceProcessor(model_proto=tgt_model)

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
        return {"src": _to_tensor(self.src_model), "tgt": _to_tensor(self.tgt_model)}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> Tokenizer:
        return cls(_to_bytes(state["src"]), _to_bytes(state["tgt"]))

    def save(self, directory: str | Path) -> None:
        """Write the model file(s) as `spm.model` (joint) or `src.model` + `tgt.model`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.joint:
            (directory / "spm.model").write_bytes(self.src_model)
        else:
            (directory / "src.model").write_bytes(self.src_model)
            (directory / "tgt.model").write_bytes(self.tgt_model)


def _to_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()


def _to_bytes(t: torch.Tensor) -> bytes:
    return t.cpu().numpy().tobytes()


def train_sentencepiece(
    sentences: Iterable[str], vocab_size: int, model_type: str = "unigram", seed: int = 0
) -> bytes:
    """Train one sentencepiece model in memory and return its serialised bytes."""
    out = io.BytesIO()
    spm.set_random_generator_seed(seed)  # sampling of input sentences: reproducible
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
        hard_vocab_limit=False,  # a small corpus may not support the requested size
        input_sentence_size=2_000_000,
        shuffle_input_sentence=True,
        num_threads=2,
        minloglevel=2,
    )
    return out.getvalue()


def corpus_hash(
    pairs: Sequence[tuple[str, str]], vocab_size: int, model_type: str, joint: bool
) -> str:
    """sha256 of the training pairs and the tokenizer settings: what a cached tokenizer is for."""
    settings = {"vocab_size": vocab_size, "model_type": model_type, "joint": joint, "v": 1}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for src, tgt in pairs:
        digest.update(src.encode())
        digest.update(b"\t")
        digest.update(tgt.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _read_text(path: Path) -> str | None:
    return path.read_text().strip() if path.is_file() else None


def build_tokenizer(
    pairs: Sequence[tuple[str, str]],
    vocab_size: int,
    model_type: str = "unigram",
    joint: bool = True,
    cache_dir: str | Path | None = None,
) -> Tokenizer:
    """Train (or reuse from `cache_dir`) the tokenizer for these training pairs and settings.

    A cache entry is `spm/<first 16 hex digits of corpus_hash>/` with the full hash in `sha256`;
    an entry whose stored hash differs (copied from another corpus, say) is retrained.
    """
    digest = corpus_hash(pairs, vocab_size, model_type, joint)
    cached = Path(cache_dir) / "spm" / digest[:16] if cache_dir is not None else None
    found = _read_text(cached / "sha256") if cached is not None else None
    if found == digest:
        log.info("Reusing tokenizer %s", cached)
        return Tokenizer((cached / "src.model").read_bytes(), (cached / "tgt.model").read_bytes())
    if found is not None:
        log.warning(
            "tokenizer cache %s was built from other data (sha256 %s..., this corpus %s...); "
            "retraining it",
            cached,
            found[:16],
            digest[:16],
        )

    sources = [s for s, _ in pairs]
    targets = [t for _, t in pairs]
    if joint:
        src_model = tgt_model = train_sentencepiece(sources + targets, vocab_size, model_type)
    else:
        src_model = train_sentencepiece(sources, vocab_size, model_type)
        tgt_model = train_sentencepiece(targets, vocab_size, model_type)
    if cached is not None:
        cached.mkdir(parents=True, exist_ok=True)
        # the hash last: its presence marks a complete entry
        for name, data in (("tgt.model", tgt_model), ("src.model", src_model),
                           ("sha256", digest.encode())):  # fmt: skip
            tmp = cached / f"{name}.tmp"
            tmp.write_bytes(data)
            tmp.replace(cached / name)  # atomic: a crash never leaves half a file
        log.info("Trained tokenizer %s", cached)
    return Tokenizer(src_model, tgt_model)
