import itertools
import math

import pytest
import torch

from seq2seq.data.tokenizer import BOS, EOS, PAD
from seq2seq.models.interface import output_log_probs
from seq2seq.search import (
    beam_search,
    best_tokens,
    generate,
    greedy_search,
    length_normalise,
    max_lengths,
    top_candidates,
)
from tests.helpers import random_batch, tiny_lstm


def test_beam_of_one_is_greedy():
    model = tiny_lstm()
    src, lens = random_batch()
    greedy = greedy_search(model, src, lens, max_len_a=6, max_len_b=1.0)
    beam = beam_search(model, src, lens, beam_size=1, max_len_a=6, max_len_b=1.0)
    assert [h.tokens for h in greedy] == [b[0].tokens for b in beam]
    for g, b in zip(greedy, beam):
        assert math.isclose(g.score, b[0].score, rel_tol=1e-5, abs_tol=1e-5)


def exhaustive(model, src, lens, max_len, vocab, penalty):
    """Score every output of at most max_len tokens (EOS included) by teacher forcing."""
    best = None
    words = [t for t in range(vocab) if t not in (PAD, BOS, EOS)]
    for n in range(max_len):
        for body in itertools.product(words, repeat=n):
            seq = list(body) + [EOS]
            tgt_in = torch.tensor([[BOS] + seq[:-1]])
            lp = model(src, lens, tgt_in).log_softmax(-1)[0]
            logprob = float(lp[torch.arange(len(seq)), torch.tensor(seq)].sum())
            score = length_normalise(logprob, len(seq), penalty, 0.6)
            if best is None or score > best[0]:
                best = (score, list(body))
    return best


def test_wide_beam_equals_exhaustive_search():
    vocab, max_len = 5, 5  # 2 real tokens: 31 complete outputs of <= 5 tokens
    differs_from_greedy = 0
    cases = itertools.product(range(3), ("none", "average", "gnmt"), range(4))
    for model_seed, penalty, seed in cases:
        model = tiny_lstm(src_vocab=7, tgt_vocab=vocab, layers=1, seed=model_seed)
        src, lens = random_batch(vocab=7, lens=(4,), seed=seed)
        with torch.no_grad():
            score, tokens = exhaustive(model, src, lens, max_len, vocab, penalty)
        hyp = beam_search(model, src, lens, 64, max_len_a=max_len, max_len_b=0.0,
                          length_penalty=penalty)[0][0]  # fmt: skip
        assert hyp.tokens == tokens
        assert math.isclose(hyp.score, score, rel_tol=1e-4)
        greedy = greedy_search(model, src, lens, max_len, 0.0, penalty)[0]
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
    nbest = beam_search(model, src, lens, beam_size=5, nbest=5, length_penalty="average")
    best = generate(model, src, lens, beam_size=5, length_penalty="average")
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


def test_max_lengths_as_python_computes_them():
    lens = torch.arange(0, 300)
    for a, b in itertools.product((0, 10, 50), (0.5, 0.7, 1.1, 1.2, 1.3, 1.5, 2.0)):
        assert max_lengths(lens, a, b).tolist() == [max(1, int(a + b * n)) for n in range(300)]


def test_length_penalties():
    assert length_normalise(-6.0, 3, "none", 0.6) == -6.0
    assert length_normalise(-6.0, 3, "average", 0.6) == -2.0
    assert math.isclose(length_normalise(-6.0, 3, "gnmt", 0.6), -6.0 / (8 / 6) ** 0.6)
    assert length_normalise(-6.0, 1, "gnmt", 0.6) == -6.0  # ((5 + 1) / 6) ** a = 1
    with pytest.raises(ValueError, match="decode.length_penalty='wu'"):
        generate(tiny_lstm(), *random_batch(), beam_size=2, length_penalty="wu")
    with pytest.raises(ValueError, match="decode.beam_size=0: must be at least 1"):
        generate(tiny_lstm(), *random_batch(), beam_size=0)


@pytest.mark.parametrize("beam", [1, 3])
def test_min_len_and_forced_length(beam):
    model = tiny_lstm()
    src, lens = random_batch()
    forced = generate(model, src, lens, beam_size=beam, max_len_a=12, max_len_b=0.0, min_len=12)
    assert all(len(h.tokens) == 11 for h in forced)  # exactly 12 tokens with EOS
    # the maximum wins when it is below the minimum
    short = generate(model, src, lens, beam_size=beam, max_len_a=3, max_len_b=0.0, min_len=12)
    assert all(len(h.tokens) == 2 for h in short)


@pytest.mark.parametrize("V", [640, 650, 100])  # whole blocks, a partial last block, too few
@pytest.mark.parametrize("K, k", [(1, 1), (5, 10), (3, 2)])
def test_top_candidates_equal_topk_over_all_beams(V, K, k):
    n = 4
    g = torch.Generator().manual_seed(V + K)
    # distinct values (no ties), so indices must agree too; PAD masked, a beam dead
    logp = torch.randperm(n * K * V, generator=g).float().view(n * K, V) / -100.0
    logp[:, PAD] = float("-inf")
    scores = torch.randn(n, K, generator=g)
    if K > 1:
        scores[0, -1] = float("-inf")
    ref_values, ref_index = (scores.view(-1, 1) + logp).view(n, K * V).topk(k, dim=-1)
    values, index = top_candidates(logp, scores, k)
    assert torch.equal(values, ref_values)
    assert torch.equal(index, ref_index)


@pytest.mark.parametrize("V", [1280, 1300, 200])  # whole blocks, a partial last block, too few
def test_best_tokens_equal_max(V):
    g = torch.Generator().manual_seed(V)
    logp = torch.randperm(6 * V, generator=g).float().view(6, V) / -100.0  # no ties
    logp[:, PAD] = float("-inf")
    logp[1, -1] = 1.0  # the maximum in the last position (a partial block for V=1300)
    logp[2] = float("-inf")  # a forced step: only EOS is allowed
    logp[2, EOS] = -0.5
    values, tokens = best_tokens(logp)
    ref_values, ref_tokens = logp.max(-1)
    assert torch.equal(values, ref_values) and torch.equal(tokens, ref_tokens)
    assert tokens[1] == V - 1 and tokens[2] == EOS


def test_top_candidates_keep_every_finite_candidate_when_few_exist():
    logp = torch.full((2, 700), float("-inf"))  # a forced step: only EOS is allowed
    logp[:, EOS] = -0.5
    values, index = top_candidates(logp, torch.tensor([[-1.0, -2.0]]), 4)
    assert values[0, :2].tolist() == [-1.5, -2.5] and torch.isinf(values[0, 2:]).all()
    assert index[0, :2].tolist() == [EOS, 700 + EOS]


def test_beam_wider_than_the_vocabulary_ends_no_hypothesis_twice():
    model = tiny_lstm(tgt_vocab=5)  # 2 real tokens, beam 8
    src, lens = random_batch(lens=(5, 3))
    for hyps in beam_search(model, src, lens, beam_size=8, max_len_a=4, max_len_b=0.0, nbest=8):
        outputs = [tuple(h.tokens) for h in hyps]
        assert len(outputs) == len(set(outputs))
        assert all(EOS not in o and math.isfinite(h.score) for o, h in zip(outputs, hyps))


@pytest.mark.parametrize("bias", [True, False])
def test_output_log_probs_are_the_float32_log_softmax(bias):
    torch.manual_seed(0)
    out, features = torch.nn.Linear(16, 700, bias=bias), torch.randn(5, 16)
    expected = out(features).log_softmax(-1)
    torch.testing.assert_close(output_log_probs(out, features), expected)
    output_log_probs(out, features)[:, 3].sum().backward()  # with autograd on, too
    torch.testing.assert_close(out.weight.grad[3], (1 - expected[:, 3].exp()) @ features)
    low = output_log_probs(out.bfloat16(), features.bfloat16())
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, expected, atol=0.05, rtol=0.01)
    torch.testing.assert_close(low.exp().sum(-1), torch.ones(5))
