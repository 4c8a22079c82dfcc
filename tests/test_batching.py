import pickle

import numpy as np
import pyarrow as pa
import pytest

from seq2seq.data.batching import BucketBatchSampler, collate, reverse_source
from seq2seq.data.datamodule import CachedPairs, length_filter
from seq2seq.data.preprocess import CachedIds, lengths
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


def test_more_ranks_than_batches_still_give_every_rank_its_batches():
    """A validation set of 2 batches on 8 GPUs: every rank gets one (a rank with none would
    leave the others waiting in the end-of-validation gather)."""
    lengths = [5] * 6
    shards = [list(BucketBatchSampler(lengths, batch_size=3, shuffle=False, num_replicas=8,
                                      rank=r)) for r in range(8)]  # fmt: skip
    assert [len(s) for s in shards] == [1] * 8
    assert sorted(i for s in shards[:2] for b in s for i in b) == list(range(6))
    assert shards[2:] == [shards[r % 2] for r in range(2, 8)]


def test_ties_order_examples_of_one_length_and_cut_padding():
    rng = np.random.default_rng(2)
    src = rng.integers(1, 40, size=2000)
    tgt = np.clip(src + rng.integers(-6, 7, size=2000), 1, None)
    longer = np.maximum(src, tgt)

    def padded_sources(sampler):
        return sum(len(b) * src[b].max() for b in sampler.batches())

    plain = BucketBatchSampler(longer, max_tokens=400, seed=3)
    tied = BucketBatchSampler(longer, max_tokens=400, seed=3, ties=(src, tgt))
    for b in tied.batches():  # within a batch: by length, then source, then target length
        keys = list(zip(longer[b], src[b], tgt[b]))
        assert keys == sorted(keys)
    assert sorted(np.concatenate(tied.batches()).tolist()) == list(range(2000))
    # the same cuts (the budget sees only `lengths`), less source padding (2,513 against 3,466)
    assert sorted(map(len, tied.batches())) == sorted(map(len, plain.batches()))
    assert padded_sources(tied) - src.sum() < 0.8 * (padded_sources(plain) - src.sum())


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


def greedy_reference(lengths, order, batch_size, max_tokens):
    """The batching rule written as a plain loop over examples sorted by length."""
    batches, current, longest = [], [], 0
    for i in order:
        grown = max(longest, lengths[i])
        full = batch_size is not None and len(current) >= batch_size
        over = max_tokens is not None and grown * (len(current) + 1) > max_tokens
        if current and (full or over):
            batches.append(current)
            current, grown = [], lengths[i]
        current.append(i)
        longest = grown
    return batches + [current] if current else batches


@pytest.mark.parametrize("batch_size,max_tokens", [(32, None), (None, 500), (16, 300), (7, 61)])
def test_histogram_cuts_equal_the_greedy_rule(batch_size, max_tokens):
    sampler = BucketBatchSampler(LENGTHS, batch_size, max_tokens, shuffle=False)
    order = np.argsort(LENGTHS, kind="stable").tolist()
    expected = greedy_reference(LENGTHS, order, batch_size, max_tokens)
    assert [b.tolist() for b in sampler.batches()] == expected


def cached(pairs, dir):
    """A split's ids as the Arrow cache holds them (one id per character), in two shards."""
    ids = pa.list_(pa.int32())
    table = pa.table({"src": pa.array([[ord(c) for c in s] for s, _ in pairs], ids),
                      "tgt": pa.array([[ord(c) for c in t] for _, t in pairs], ids)})  # fmt: skip
    files = []
    for k, shard in enumerate((table.slice(0, 2), table.slice(2))):  # as `datasets` writes them
        files.append(str(dir / f"ids_{k:05d}_of_00002.arrow"))
        with pa.ipc.new_stream(files[-1], shard.schema) as writer:
            writer.write_table(shard)
    return CachedIds(files)


def test_reversal_reverses_the_source_only(tmp_path):
    ids = cached([("abc", "xyz"), ("de", "uv"), ("f", "w")], tmp_path)
    fwd = CachedPairs(ids, np.arange(2), reverse=False)
    rev = CachedPairs(ids, np.arange(2), reverse=True)
    assert rev[0]["src"] == [ord("c"), ord("b"), ord("a")]
    assert [reverse_source(e["src"]) for e in fwd.__getitems__([0, 1])] == [
        e["src"] for e in rev.__getitems__([0, 1])
    ]
    assert [e["tgt"] for e in fwd.__getitems__([1, 0])] == [
        [ord("u"), ord("v")],
        [ord(c) for c in "xyz"],
    ]
    assert [e["idx"] for e in rev.__getitems__([1, 0])] == [1, 0]


def test_length_filter_counts_each_reason(tmp_path):
    pairs = [("abc", "xyz"), ("a" * 20, "b" * 20), ("", "x"), ("ok", "fine"), ("a", "b" * 8)]
    ids = cached(pairs, tmp_path)
    src, tgt = lengths(ids, "src"), lengths(ids, "tgt")
    assert src.tolist() == [3, 20, 0, 2, 1] and tgt.tolist() == [3, 20, 1, 4, 8]
    keep, dropped = length_filter(src, tgt, max_len=10, max_ratio=3)
    assert keep.tolist() == [0, 3] and dropped == {"empty": 1, "long": 1, "ratio": 1}
    keep, dropped = length_filter(src, tgt, max_len=None, max_ratio=None)
    assert keep.tolist() == [0, 1, 3, 4] and dropped == {"empty": 1, "long": 0, "ratio": 0}
    data = CachedPairs(ids, keep, reverse=False)
    assert data.lengths().tolist() == [4, 21, 5, 9]  # the longer side, with its EOS/BOS


def test_cached_pairs_pickle_as_file_paths(tmp_path):
    """A spawned DataLoader worker gets the files' paths, not a copy of the corpus."""
    pairs = [("a" * 500, "b" * 500)] * 40
    data = CachedPairs(cached(pairs, tmp_path), np.arange(1, 40, 2), reverse=True)
    sent = pickle.dumps(data)
    assert len(sent) < 4000  # the 40,000 ids would take 160 KB
    again = pickle.loads(sent)
    assert again.__getitems__([0, 5]) == data.__getitems__([0, 5])
    assert again.lengths().tolist() == data.lengths().tolist() == [501] * 20
