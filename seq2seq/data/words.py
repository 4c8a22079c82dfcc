"""The paper's word vocabularies (Sutskever et al. 2014, §3.1): Moses-tokenised words, the
160,000 most frequent source and 80,000 most frequent target words, everything else UNK.

Text is split with the Moses tokenizer (sacremoses, `escape=False`) and joined back with the
Moses detokenizer, so hypotheses are plain text for sacreBLEU. Counting streams over the
training split in shards, one process per shard: memory grows with the number of distinct
words, never with the number of sentences.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from seq2seq.data.tokenizer import EOS, UNK, to_bytes, to_tensor

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]  # ids PAD, UNK, BOS, EOS
UNK_WORD = "UNK"  # what an unknown word decodes to (it scores as a wrong word, as in the paper)


def moses_splitter(lang: str) -> Callable[[str], list[str]]:
    """Text -> words, the one way words are split for counting and for encoding."""
    from sacremoses import MosesTokenizer

    moses = MosesTokenizer(lang=lang)
    return lambda text: moses.tokenize(text, escape=False)


class _Side:
    """One language: Moses tokenizer/detokenizer and a word <-> id table."""

    def __init__(self, lang: str, words: list[str]) -> None:
        from sacremoses import MosesDetokenizer

        self.lang, self.words = lang, words
        self.index = {w: i for i, w in enumerate(words)}
        self.split, self.demoses = moses_splitter(lang), MosesDetokenizer(lang=lang)

    def encode(self, texts: list[str]) -> list[list[int]]:
        get = self.index.get
        return [[get(w, UNK) for w in self.split(t)] for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        words = [self.words[i] if i != UNK else UNK_WORD for i in ids if i == UNK or i > EOS]
        return self.demoses.detokenize(words)

    def state(self) -> torch.Tensor:
        return to_tensor("\n".join([self.lang, *self.words[len(SPECIALS) :]]).encode())


class WordTokenizer:
    """Word-level source and target vocabularies; ids 0-3 are PAD, UNK, BOS, EOS."""

    kind = "word"

    def __init__(self, src_lang: str, tgt_lang: str, src_words: list[str], tgt_words: list[str]):
        self.src = _Side(src_lang, SPECIALS + list(src_words))
        self.tgt = _Side(tgt_lang, SPECIALS + list(tgt_words))

    def __getstate__(self) -> dict:  # sent to tokenising worker processes
        return {"state": self.state_dict()}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(WordTokenizer.from_state_dict(state["state"]).__dict__)

    @property
    def src_vocab_size(self) -> int:
        return len(self.src.words)

    @property
    def tgt_vocab_size(self) -> int:
        return len(self.tgt.words)

    def encode_src(self, texts: list[str]) -> list[list[int]]:
        return self.src.encode(texts)

    def encode_tgt(self, texts: list[str]) -> list[list[int]]:
        return self.tgt.encode(texts)

    def decode_tgt(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Target ids -> detokenised text; specials dropped, unknown words written `UNK`."""
        return [self.tgt.decode(seq) for seq in ids]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Per side, language and words (UTF-8, one per line), as uint8 tensors."""
        return {"kind": to_tensor(self.kind.encode()), "src": self.src.state(),
                "tgt": self.tgt.state()}  # fmt: skip

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> WordTokenizer:
        (src_lang, *src), (tgt_lang, *tgt) = (
            to_bytes(state[k]).decode().split("\n") for k in ("src", "tgt")
        )
        return cls(src_lang, tgt_lang, src, tgt)

    def save(self, directory: str | Path) -> None:
        """`src.vocab` and `tgt.vocab`: one word per line, in id order, specials first."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name, side in (("src", self.src), ("tgt", self.tgt)):
            (directory / f"{name}.vocab").write_text("".join(w + "\n" for w in side.words))

    @classmethod
    def train(
        cls,
        train: datasets.Dataset,
        src_lang: str,
        tgt_lang: str,
        src_words: int = 160_000,
        tgt_words: int = 80_000,
        num_proc: int = 1,
    ) -> WordTokenizer:
        """The `src_words` / `tgt_words` most frequent words of the training split."""
        src_counts, tgt_counts = count_words(train, src_lang, tgt_lang, num_proc)
        vocab = []
        for side, counts, size in (("src", src_counts, src_words), ("tgt", tgt_counts, tgt_words)):
            if len(counts) < size:
                log.warning(
                    "data.%s_words=%d: the training data has only %d distinct %s words; "
                    "the vocabulary is all of them",
                    side,
                    size,
                    len(counts),
                    side,
                )
            # most frequent first; ties in a fixed (alphabetical) order, so runs agree
            ranked = sorted(counts.items(), key=lambda wc: (-wc[1], wc[0]))[:size]
            vocab.append([w for w, _ in ranked])
        return cls(src_lang, tgt_lang, *vocab)


def _count_shard(args: tuple) -> tuple[Counter, Counter]:
    train, index, shards, src_lang, tgt_lang = args
    shard = train.shard(num_shards=shards, index=index, contiguous=True)
    counts = (Counter(), Counter())
    for lang, column, counter in ((src_lang, "src", counts[0]), (tgt_lang, "tgt", counts[1])):
        split = moses_splitter(lang)
        for batch in shard.select_columns([column]).iter(batch_size=2000):
            for text in batch[column]:
                counter.update(split(text))
    return counts


def count_words(
    train: datasets.Dataset, src_lang: str, tgt_lang: str, num_proc: int = 1
) -> tuple[Counter, Counter]:
    """Word counts of the `src` and `tgt` columns, streamed in `num_proc` parallel shards."""
    shards = max(1, min(num_proc, len(train) // 1000))  # small splits: no process pool
    jobs = [(train, i, shards, src_lang, tgt_lang) for i in range(shards)]
    if shards == 1:
        results = [_count_shard(jobs[0])]
    else:
        context = multiprocessing.get_context("fork")  # the dataset is memory-mapped: cheap
        with ProcessPoolExecutor(shards, mp_context=context) as pool:
            results = list(pool.map(_count_shard, jobs))
    src, tgt = Counter(), Counter()
    for s, t in results:
        src.update(s)
        tgt.update(t)
    return src, tgt
