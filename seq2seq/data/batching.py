"""Length-bucketed batches: a fixed number of sentences (the paper's 128) or a token budget."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from seq2seq.data.tokenizer import BOS, EOS, PAD, Tokenizer
from seq2seq.errors import UserError


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar-length examples, reshuffled every epoch from `seed`, sharded per rank.

    Examples are shuffled every epoch, sorted by length (stable numpy sorts, never a Python
    sort of the corpus), within a length by the `ties` arrays if given (validation passes
    source, then target lengths, for less padding; training does not, see README "Speed"), and
    cut into consecutive batches at points read off the length histogram, so padding stays
    small; the order of the batches is then shuffled. A batch holds `batch_size` examples, or
    as many as fit `max_tokens` padded tokens (B * longest), or both. With several ranks, rank
    r takes batches r, r + R, ...; every rank gets the same count (the last few batches repeat
    to even them out), so no rank waits for another at the end of an epoch. `budget_key` is
    the setting an example longer than `max_tokens` is reported against.
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        batch_size: int | None = None,
        max_tokens: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        budget_key: str = "data.max_tokens",
        ties: Sequence[Sequence[int] | np.ndarray] = (),
    ) -> None:
        if batch_size is None and max_tokens is None:
            raise UserError("data.batch_size and data.max_tokens are both null: set one")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.ties = [np.asarray(t, dtype=np.int64) for t in ties]
        if max_tokens is not None and len(self.lengths) and self.lengths.max() > max_tokens:
            raise UserError(
                f"{budget_key}={max_tokens} is below the longest example "
                f"({int(self.lengths.max())} tokens); raise it"
                + (" or lower data.max_len" if budget_key == "data.max_tokens" else "")
            )
        self.batch_size, self.max_tokens = batch_size, max_tokens
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.num_replicas, self.rank = num_replicas, rank
        self.skip = 0  # batches of this epoch already trained on (resuming mid-epoch)
        self._cached: tuple[int, list[np.ndarray]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, done: int) -> None:
        """Continue `epoch` after its first `done` batches (of this rank), once."""
        self.epoch, self.skip = epoch, done

    def _capacity(self, length: int) -> int:
        """Examples of this length (or shorter) that fit one batch."""
        cap = self.batch_size or len(self.lengths)
        if self.max_tokens is not None:
            cap = min(cap, self.max_tokens // max(length, 1))
        return max(cap, 1)

    def batches(self) -> list[np.ndarray]:
        """All batches of this epoch (arrays of example indices), before sharding."""
        if self._cached is not None and self._cached[0] == self.epoch:
            return self._cached[1]
        rng = np.random.default_rng((self.seed, self.epoch))
        n = len(self.lengths)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        # stable sorts, least significant key first: examples equal in length and ties keep
        # their shuffled order
        for key in [*self.ties[::-1], self.lengths]:
            order = order[np.argsort(key[order], kind="stable")]
        counts = np.bincount(self.lengths, minlength=1)
        cuts, start, open_count = [], 0, 0  # positions in `order` where a batch ends
        for length in np.flatnonzero(counts).tolist():
            end = start + int(counts[length])
            cap, pos = self._capacity(length), start
            if open_count >= cap:  # the open batch cannot take longer examples: close it
                cuts.append(pos)
                open_count = 0
            if open_count:
                take = min(cap - open_count, end - pos)
                pos, open_count = pos + take, open_count + take
                if open_count == cap:
                    cuts.append(pos)
                    open_count = 0
            if pos < end:
                full = (end - pos) // cap
                cuts.extend(range(pos + cap, pos + full * cap + 1, cap))
                open_count = (end - pos) - full * cap
            start = end
        batches = [b for b in np.split(order, cuts) if len(b)]
        if self.shuffle:
            batches = [batches[j] for j in rng.permutation(len(batches))]
        self._cached = (self.epoch, batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches()
        # Equal batch counts on every rank (DDP steps in lockstep): wrap around to pad.
        per_rank = -(-len(batches) // self.num_replicas)
        extra = per_rank * self.num_replicas - len(batches)  # more than len(batches) with few
        padded = batches + [batches[i % len(batches)] for i in range(extra)]
        skip, self.skip = self.skip, 0
        return (b.tolist() for b in padded[self.rank :: self.num_replicas][skip:])

    def __len__(self) -> int:
        return -(-len(self.batches()) // self.num_replicas)


def reverse_source(ids: list[int]) -> list[int]:
    """The paper's §3.3 trick: feed the source backwards (the target is never reversed)."""
    return ids[::-1]


def pad(seqs: Sequence[Sequence[int]], value: int = PAD) -> torch.Tensor:
    """(B, longest) tensor of `seqs` right-padded with `value`."""
    out = torch.full((len(seqs), max(len(s) for s in seqs)), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


def collate(examples: list[dict]) -> dict:
    """Examples {idx, src, tgt} (ids without specials) -> padded batch tensors.

    src gets EOS appended; tgt_in = BOS + tgt (decoder input), tgt_out = tgt + EOS (labels).
    """
    src = [e["src"] + [EOS] for e in examples]
    batch = {
        "idx": torch.tensor([e["idx"] for e in examples]),
        "src": pad(src),
        "src_lens": torch.tensor([len(s) for s in src]),
    }
    if examples[0].get("tgt") is not None:
        batch["tgt_in"] = pad([[BOS] + e["tgt"] for e in examples])
        batch["tgt_out"] = pad([e["tgt"] + [EOS] for e in examples])
        batch["ntokens"] = sum(len(e["tgt"]) + 1 for e in examples)
    return batch


class EncodedPairs(Dataset):
    """Token ids of sentences held in memory; `tgt` is None for source-only input (translation)."""

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


def encode_sources(tokenizer: Tokenizer, texts: list[str], reverse: bool) -> EncodedPairs:
    ids = tokenizer.encode_src(texts)
    return EncodedPairs([reverse_source(s) if reverse else s for s in ids])
