"""Length-bucketed batches: a fixed number of sentences (the paper's 128) or a token budget."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from seq2seq.data.tokenizer import BOS, EOS, PAD
from seq2seq.errors import UserError


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar-length examples, reshuffled every epoch from `seed`, sharded per rank.

    Examples are sorted by length (ties broken randomly per epoch) and cut into consecutive
    batches, so padding stays small; the order of the batches is then shuffled. A batch holds
    `batch_size` examples, or as many as fit `max_tokens` padded tokens (B * longest), or both.
    With several ranks, rank r takes batches r, r + R, ...; every rank gets the same count.
    `budget_key` is the setting an example longer than `max_tokens` is reported against.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int | None = None,
        max_tokens: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        budget_key: str = "data.max_tokens",
    ) -> None:
        if batch_size is None and max_tokens is None:
            raise ValueError("data.batch_size or data.max_tokens must be set")
        self.lengths = np.asarray(lengths, dtype=np.int64)
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

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, done: int) -> None:
        """Continue `epoch` after its first `done` batches (of this rank), once."""
        self.epoch, self.skip = epoch, done

    def batches(self) -> list[list[int]]:
        """All batches of this epoch, before sharding."""
        rng = np.random.default_rng((self.seed, self.epoch))
        if self.shuffle:
            order = np.lexsort((rng.permutation(len(self.lengths)), self.lengths))
        else:
            order = np.argsort(self.lengths, kind="stable")
        batches, current, longest = [], [], 0
        for i in order.tolist():
            n = self.lengths[i]
            grown = max(longest, n)
            full = self.batch_size is not None and len(current) >= self.batch_size
            over = self.max_tokens is not None and grown * (len(current) + 1) > self.max_tokens
            if current and (full or over):
                batches.append(current)
                current, grown = [], n
            current.append(i)
            longest = grown
        if current:
            batches.append(current)
        if self.shuffle:
            batches = [batches[j] for j in rng.permutation(len(batches))]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches()
        # Equal batch counts on every rank (DDP steps in lockstep): wrap around to pad.
        per_rank = -(-len(batches) // self.num_replicas)
        padded = batches + batches[: per_rank * self.num_replicas - len(batches)]
        skip, self.skip = self.skip, 0
        return iter(padded[self.rank :: self.num_replicas][skip:])

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
