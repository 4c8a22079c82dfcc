import itertools
import math

import torch

from seq2seq.data.tokenizer import BOS, EOS, PAD
from seq2seq.search import beam_search, generate, greedy_search
from tests.helpers import random_batch, tiny_lstm


def test_beam_of_one_is_greedy():
    model = tiny_lstm()
    src, lens = random_batch()
    greedy = greedy_search(model, src, lens, max_len_a=6, max_len_b=1.0)
    beam = beam_search(model, src, lens, beam_size=1, max_len_a=6, max_len_b=1.0)
    assert [h.tokens for h in greedy] == [b[0].tokens for b in beam]
    for g, b in zip(greedy, beam):
        assert math.isclose(g.score, b[0].score, rel_tol=1e-5, abs_tol=1e-5)


def exhaustive(model, src, lens, max_len, vocab, length_norm):
    """Score every output of at most max_len tokens (EOS included) by teacher forcing."""
    best = None
    words = [t for t in range(vocab) if t not in (PAD, BOS, EOS)]
    for n in range(max_len):
        for body in itertools.product(words, repeat=n):
            seq = list(body) + [EOS]
            tgt_in = torch.tensor([[BOS] + seq[:-1]])
            lp = model(src, lens, tgt_in).log_softmax(-1)[0]
            logprob = float(lp[torch.arange(len(seq)), torch.tensor(seq)].sum())
            score = logprob / len(seq) ** length_norm
            if best is None or score > best[0]:
                best = (score, list(body))
    return best


def test_wide_beam_equals_exhaustive_search():
    vocab, max_len = 5, 5  # 2 real tokens: 31 complete outputs of <= 5 tokens
    differs_from_greedy = 0
    for model_seed, length_norm, seed in itertools.product(range(3), (0.0, 1.0), range(4)):
        model = tiny_lstm(src_vocab=7, tgt_vocab=vocab, layers=1, seed=model_seed)
        src, lens = random_batch(vocab=7, lens=(4,), seed=seed)
        with torch.no_grad():
            score, tokens = exhaustive(model, src, lens, max_len, vocab, length_norm)
        hyp = beam_search(model, src, lens, 64, max_len_a=max_len, max_len_b=0.0,
                          length_norm=length_norm)[0][0]  # fmt: skip
        assert hyp.tokens == tokens
        assert math.isclose(hyp.score, score, rel_tol=1e-4)
        greedy = greedy_search(model, src, lens, max_len, 0.0, length_norm)[0]
        differs_from_greedy += greedy.tokens != tokens
    assert differs_from_greedy > 0  # the cases are hard enough that search matters


def test_batched_beam_equals_one_sentence_at_a_time():
    model = tiny_lstm()
    src, lens = random_batch(lens=(6, 2, 4, 3, 5))
    batched = beam_search(model, src, lens, beam_size=4, nbest=3)
    for i in range(len(lens)):
        alone = beam_search(model, src[i : i + 1, : lens[i]], lens[i : i + 1], 4, nbest=3)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in batched[i]]


def test_nbest_sorted_and_first_is_best():
    model = tiny_lstm()
    src, lens = random_batch()
    nbest = beam_search(model, src, lens, beam_size=5, nbest=5, length_norm=1.0)
    best = generate(model, src, lens, beam_size=5, length_norm=1.0)
    for hyps, one in zip(nbest, best):
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True) and len(hyps) > 1
        assert hyps[0].tokens == one.tokens


def test_max_length_rule():
    model = tiny_lstm()
    src, lens = random_batch()
    for beam in (1, 3):
        hyps = generate(model, src, lens, beam_size=beam, max_len_a=2, max_len_b=0.5)
        for h, n in zip(hyps, lens.tolist()):
            assert len(h.tokens) + 1 <= int(2 + 0.5 * n)
            assert all(t not in (PAD, BOS, EOS) for t in h.tokens)
