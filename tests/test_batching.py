import numpy as np
import pytest

from seq2seq.data.batching import BucketBatchSampler, collate, reverse_source
from seq2seq.data.datamodule import encode_pairs
from seq2seq.data.tokenizer import BOS, EOS, PAD

LENGTHS = np.random.default_rng(0).integers(1, 60, size=1000).tolist()


@pytest.mark.parametrize("batch_size,max_tokens", [(32, None), (None, 500), (16, 300)])
def test_every_example_exactly_once_within_budget(batch_size, max_tokens):
    sampler = BucketBatchSampler(LENGTHS, batch_size=batch_size, max_tokens=max_tokens, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(LENGTHS)))
    for b in batches:
        if batch_size:
            assert len(b) <= batch_size
        if max_tokens:
            assert len(b) * max(LENGTHS[i] for i in b) <= max_tokens


def test_buckets_have_similar_lengths():
    batches = list(BucketBatchSampler(LENGTHS, batch_size=32, seed=1))
    spread = np.mean([max(LENGTHS[i] for i in b) - min(LENGTHS[i] for i in b) for b in batches])
    assert spread <= 2


def test_reshuffled_each_epoch_and_reproducible():
    a = BucketBatchSampler(LENGTHS, batch_size=32, seed=1)
    first = list(a)
    a.set_epoch(1)
    second = list(a)
    assert first != second
    b = BucketBatchSampler(LENGTHS, batch_size=32, seed=1)
    b.set_epoch(1)
    assert list(b) == second


def test_ranks_get_disjoint_shards_of_equal_length():
    shards = [
        list(BucketBatchSampler(LENGTHS, batch_size=30, seed=1, num_replicas=3, rank=r))
        for r in range(3)
    ]
    assert len({len(s) for s in shards}) == 1
    seen = [i for s in shards for b in s for i in b]
    assert set(seen) == set(range(len(LENGTHS)))
    n_batches = len(BucketBatchSampler(LENGTHS, batch_size=30).batches())
    assert len(seen) - len(LENGTHS) <= 30 * (3 * len(shards[0]) - n_batches)  # only wrap-around


def test_budget_below_longest_example_is_an_error():
    with pytest.raises(ValueError, match="max_tokens=10"):
        BucketBatchSampler([5, 12], max_tokens=10)


def test_collate_adds_specials_and_pads():
    batch = collate([{"idx": 0, "src": [5, 6], "tgt": [7]}, {"idx": 1, "src": [8], "tgt": [9, 10]}])
    assert batch["src"].tolist() == [[5, 6, EOS], [8, EOS, PAD]]
    assert batch["src_lens"].tolist() == [3, 2]
    assert batch["tgt_in"].tolist() == [[BOS, 7, PAD], [BOS, 9, 10]]
    assert batch["tgt_out"].tolist() == [[7, EOS, PAD], [9, 10, EOS]]
    assert batch["ntokens"] == 5


class CharTokenizer:
    """Stand-in with the Tokenizer's encode methods: one id per character."""

    def encode_src(self, texts):
        return [[ord(c) for c in t] for t in texts]

    encode_tgt = encode_src


def test_reversal_reverses_the_source_only():
    pairs = [("abc", "xyz"), ("de", "uv")]
    fwd, _ = encode_pairs(CharTokenizer(), pairs, reverse=False)
    rev, _ = encode_pairs(CharTokenizer(), pairs, reverse=True)
    assert [reverse_source(s) for s in fwd.src] == rev.src
    assert rev.src[0] == [ord("c"), ord("b"), ord("a")]
    assert fwd.tgt == rev.tgt == [[ord(c) for c in "xyz"], [ord(c) for c in "uv"]]


def test_length_filter_drops_long_and_empty_pairs():
    pairs = [("abc", "xyz"), ("a" * 20, "b"), ("", "x"), ("ok", "fine")]
    data, kept = encode_pairs(CharTokenizer(), pairs, reverse=False, max_len=10)
    assert kept == [0, 3] and len(data) == 2
