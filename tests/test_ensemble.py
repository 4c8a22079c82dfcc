import math

import torch

from seq2seq.data.tokenizer import BOS, EOS
from seq2seq.ensemble import Ensemble, flip_sources
from seq2seq.models.interface import Seq2Seq
from seq2seq.search import beam_search, greedy_search
from tests.helpers import random_batch, tiny_lstm
from tests.test_transformer import tiny_transformer


def with_eos(src, lens):
    """random_batch's sources with an EOS appended, as collate builds them."""
    out = torch.zeros(src.size(0), src.size(1) + 1, dtype=torch.long)
    for i, n in enumerate(lens.tolist()):
        out[i, :n], out[i, n] = src[i, :n], EOS
    return out, lens + 1


def same_search(a, b, src, lens):
    for x, y in zip(greedy_search(a, src, lens), greedy_search(b, src, lens)):
        assert x.tokens == y.tokens and math.isclose(x.score, y.score, rel_tol=1e-5)
    for xs, ys in zip(beam_search(a, src, lens, 4, nbest=4), beam_search(b, src, lens, 4, nbest=4)):
        assert [x.tokens for x in xs] == [y.tokens for y in ys]
        for x, y in zip(xs, ys):
            assert math.isclose(x.score, y.score, rel_tol=1e-4, abs_tol=1e-5)


def test_ensemble_of_one_and_of_copies_equal_the_model():
    model = tiny_lstm()
    src, lens = random_batch()
    for ensemble in (Ensemble([model]), Ensemble([model, model, model])):
        assert isinstance(ensemble, Seq2Seq)
        same_search(ensemble, model, src, lens)


def test_ensemble_averages_probabilities_of_different_architectures():
    lstm, transformer = tiny_lstm(tgt_vocab=13), tiny_transformer(tgt_vocab=13)
    ensemble = Ensemble([lstm, transformer])
    src, lens = random_batch()
    with torch.no_grad():
        prev = torch.full((4,), BOS)
        lp, state = ensemble.decode_step(prev, ensemble.encode(src, lens))
        p1 = lstm.decode_step(prev, lstm.encode(src, lens))[0].exp()
        p2 = transformer.decode_step(prev, transformer.encode(src, lens))[0].exp()
        torch.testing.assert_close(lp.exp(), (p1 + p2) / 2)
        torch.testing.assert_close(lp.exp().sum(-1), torch.ones(4))
        tgt_in = torch.tensor([[BOS, 5, 6]] * 4)
        full = ensemble(src, lens, tgt_in)  # teacher forcing agrees with the steps
        torch.testing.assert_close(full[:, 0], lp)
    assert set(state) >= {"0.h", "0.c", "1.src_pad", "1.past_k0"}


def test_flip_sources_and_mixed_directions():
    src, lens = with_eos(*random_batch(lens=(5, 3, 1)))
    flipped = flip_sources(src, lens)
    assert flipped[0, :6].tolist() == src[0, :5].flip(0).tolist() + [EOS]
    assert flipped[2, :2].tolist() == src[2, :2].tolist()  # one token: unchanged
    assert torch.equal(flip_sources(flipped, lens), src)
    model = tiny_lstm()
    # a member trained on reversed sources, handed forward ones, sees them reversed
    ensemble = Ensemble([model], flip=[True])
    a, b = greedy_search(ensemble, src, lens), greedy_search(model, flipped, lens)
    assert [h.tokens for h in a] == [h.tokens for h in b]
    a, b = beam_search(ensemble, src, lens, 3), beam_search(model, flipped, lens, 3)
    assert [h[0].tokens for h in a] == [h[0].tokens for h in b]
