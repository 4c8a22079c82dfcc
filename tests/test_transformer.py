import math

import pytest
import torch

from seq2seq.data.tokenizer import BOS, EOS
from seq2seq.models.interface import Seq2Seq, lazy, select
from seq2seq.models.transformer import (
    SHORT_QUERY,
    RecomputePrefix,
    TransformerSeq2Seq,
    attend,
    plain_attention,
    sinusoids,
)
from seq2seq.search import beam_search, greedy_search
from tests.helpers import random_batch


def tiny_transformer(norm_first=False, seed=0, src_vocab=11, tgt_vocab=13, **kw):
    torch.manual_seed(seed)
    args = dict(num_encoder_layers=2, num_decoder_layers=2, d_model=16, nhead=2,
                dim_feedforward=32, dropout=0.0, norm_first=norm_first)  # fmt: skip
    model = TransformerSeq2Seq(src_vocab, tgt_vocab, **{**args, **kw})
    with torch.no_grad():  # peaked output distributions, so searches face real choices
        model.tgt_embed.weight.mul_(4.0)
    return model.eval()


@pytest.mark.parametrize("norm_first", [False, True])
def test_cached_steps_equal_teacher_forcing(norm_first):
    model = tiny_transformer(norm_first)
    src, lens = random_batch()
    tgt = torch.randint(4, 13, (len(lens), 7), generator=torch.Generator().manual_seed(1))
    tgt[:, 0] = BOS
    with torch.no_grad():
        full = model(src, lens, tgt).log_softmax(-1)  # (B, T, V)
        state = model.encode(src, lens)
        for t in range(tgt.size(1)):
            step, state = model.decode_step(tgt[:, t], state)
            torch.testing.assert_close(step, full[:, t], atol=1e-5, rtol=1e-5)
            assert state["past_k0"].shape[2] == t + 1  # the cache grows by one position per step
    state = model.encode(src, lens)  # with autograd on, too (a saliency map of the decoder)
    for t in range(3):
        step, state = model.decode_step(tgt[:, t], state)
    torch.testing.assert_close(step.detach(), full[:, 2], atol=1e-5, rtol=1e-5)
    step[:, 5].sum().backward()
    assert model.src_embed.weight.grad.abs().sum() > 0


def test_cached_steps_under_bf16_autocast_as_validation_runs_them():
    # validation decodes under the training precision's autocast: the first step's empty cache
    # has the memory's float32, the projections give bf16 (this raised in `extend`)
    model = tiny_transformer()
    src, lens = random_batch()
    tgt = torch.randint(4, 13, (len(lens), 5), generator=torch.Generator().manual_seed(1))
    tgt[:, 0] = BOS
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        full = model(src, lens, tgt).float().log_softmax(-1)
        state = model.encode(src, lens)
        for t in range(tgt.size(1)):
            step, state = model.decode_step(tgt[:, t], state)
            torch.testing.assert_close(step.float(), full[:, t], atol=0.1, rtol=0.05)
        assert state["past_k0"].dtype == torch.bfloat16 and state["past_k0"].shape[2] == 5
        greedy = greedy_search(model, src, lens)
        beams = beam_search(model, src, lens, beam_size=3)
    assert len(greedy) == len(beams) == len(lens)
    assert all(h.tokens and math.isfinite(h.score) for h in greedy + [b[0] for b in beams])


def test_cache_is_reordered_by_generic_select():
    model = tiny_transformer()
    src, lens = random_batch()
    with torch.no_grad():
        state = model.encode(src, lens)
        _, state = model.decode_step(torch.full((4,), BOS), state)
        # sentences 2 and 0 go on, two hypotheses each; the encoder keys stay one per sentence
        moved = select(state, torch.tensor([2, 2, 0, 0]), torch.tensor([2, 0]))
        assert moved["src_k0"].size(0) == 2
        # the self-attention cache is not copied: its rows are gathered by the next step
        assert moved["past_k0"] is state["past_k0"] and moved["rows"].tolist() == [2, 2, 0, 0]
        a, _ = model.decode_step(torch.tensor([5, 7, 6, 6]), moved)
        fresh = model.encode(src[[2, 0]], lens[[2, 0]])
        _, fresh = model.decode_step(torch.full((2,), BOS), fresh)
        fresh = select(fresh, torch.tensor([0, 0, 1, 1]))
        b, _ = model.decode_step(torch.tensor([5, 7, 6, 6]), fresh)
    torch.testing.assert_close(a, b)


def test_selects_compose_until_the_next_step_gathers_the_cache():
    """Beam search selects twice between steps (the best beams, then without the finished
    sentences); the cache is copied once, by the next step, as if each select had copied it."""

    def materialised(state):  # the cache as eager reordering would hold it
        rows = state["rows"]
        out = {k: v.index_select(0, rows) if lazy(k) else v for k, v in state.items()}
        return {**out, "rows": torch.arange(len(rows))}

    model = tiny_transformer()
    src, lens = random_batch()
    with torch.no_grad():
        state = model.encode(src, lens)
        _, state = model.decode_step(torch.full((4,), BOS), state)
        state = select(state, torch.arange(4).repeat_interleave(2))  # two beams a sentence
        _, state = model.decode_step(torch.tensor([5, 6, 7, 8, 9, 10, 11, 12]), state)
        state = select(state, torch.tensor([1, 1, 2, 3, 5, 4, 7, 7]))
        state = select(state, torch.tensor([0, 1, 4, 5, 6, 7]), torch.tensor([0, 2, 3]))
        assert state["past_k0"].size(0) == 8 and state["rows"].tolist() == [1, 1, 5, 4, 7, 7]
        prev = torch.tensor([4, 5, 6, 7, 8, 9])
        a, lazy_next = model.decode_step(prev, state)
        b, eager_next = model.decode_step(prev, materialised(state))
        torch.testing.assert_close(a, b)
        for key in ("past_k0", "past_v1"):
            torch.testing.assert_close(lazy_next[key], eager_next[key])
            assert lazy_next[key].shape == (6, 2, 3, 8)  # rows, heads, positions, head size


@pytest.mark.parametrize("norm_first", [False, True])
def test_hypotheses_share_their_sentence_encoder_keys(norm_first):
    """Three hypotheses per sentence over one copy of the encoder keys give what each gets
    over its own copy (the keys repeated per hypothesis, as one sentence per row)."""
    model = tiny_transformer(norm_first)
    src, lens = random_batch()
    prev = torch.randint(4, 13, (len(lens) * 3, 3), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        shared = select(model.encode(src, lens), torch.arange(len(lens)).repeat_interleave(3))
        own = model.encode(src.repeat_interleave(3, 0), lens.repeat_interleave(3))
        assert shared["src_k0"].size(0) == len(lens) and own["src_k0"].size(0) == 3 * len(lens)
        for t in range(prev.size(1)):
            a, shared = model.decode_step(prev[:, t], shared)
            b, own = model.decode_step(prev[:, t], own)
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="5 hypothesis rows do not divide among 4 sentences"):
        model.decode_step(prev[:5, 0], select(model.encode(src, lens), torch.arange(5) % 4))


@pytest.mark.parametrize("norm_first", [False, True])
def test_searches_with_cache_equal_recomputing_the_prefix(norm_first):
    model = tiny_transformer(norm_first, seed=3)
    recompute = RecomputePrefix(model)
    assert isinstance(model, Seq2Seq) and isinstance(recompute, Seq2Seq)
    src, lens = random_batch(lens=(6, 2, 4, 3))
    for a, b in zip(greedy_search(model, src, lens), greedy_search(recompute, src, lens)):
        assert a.tokens == b.tokens and math.isclose(a.score, b.score, rel_tol=1e-4)
    fast = beam_search(model, src, lens, beam_size=4, nbest=4, length_penalty="gnmt")
    slow = beam_search(recompute, src, lens, beam_size=4, nbest=4, length_penalty="gnmt")
    for hyps_a, hyps_b in zip(fast, slow):
        assert [h.tokens for h in hyps_a] == [h.tokens for h in hyps_b]
        for a, b in zip(hyps_a, hyps_b):
            assert math.isclose(a.score, b.score, rel_tol=1e-4, abs_tol=1e-5)


def test_padded_source_encodes_as_alone():
    model = tiny_transformer()
    src, lens = random_batch(lens=(6, 2, 4))
    tgt = torch.tensor([[BOS, 5, 6, 7]] * 3)
    with torch.no_grad():
        batch_state = model.encode(src, lens)
        batch_logits = model(src, lens, tgt)
        for i, n in enumerate(lens.tolist()):
            alone = model.encode(src[i : i + 1, :n], lens[i : i + 1])
            for key in ("src_k0", "src_v1"):  # (B, H, S, D/H): the encoder output, projected
                torch.testing.assert_close(batch_state[key][i, :, :n], alone[key][0], atol=1e-5,
                                           rtol=1e-5)  # fmt: skip
            logits = model(src[i : i + 1, :n], lens[i : i + 1], tgt[i : i + 1])
            torch.testing.assert_close(batch_logits[i], logits[0], atol=1e-5, rtol=1e-5)


def test_tied_and_shared_weights_are_one_tensor():
    model = tiny_transformer(src_vocab=13, share_embeddings=True)
    assert model.out.weight is model.tgt_embed.weight is model.src_embed.weight
    separate = tiny_transformer()
    assert separate.out.weight is separate.tgt_embed.weight
    assert separate.src_embed.weight is not separate.tgt_embed.weight
    unique = {id(p) for p in model.parameters()}
    assert len(unique) == len(list(model.parameters()))  # counted once
    with pytest.raises(ValueError, match="share_embeddings=true needs one joint vocabulary"):
        TransformerSeq2Seq(11, 13, share_embeddings=True)
    with pytest.raises(ValueError, match="d_model=30 is not divisible by model.nhead=4"):
        TransformerSeq2Seq(11, 13, d_model=30, nhead=4)


def closed_form_parameters(V, N, d, ff):
    attention = 4 * d * d + 4 * d
    ffn = 2 * d * ff + ff + d
    encoder_layer = attention + ffn + 2 * 2 * d
    decoder_layer = 2 * attention + ffn + 3 * 2 * d
    return V * d + N * (encoder_layer + decoder_layer)  # one shared embedding = softmax


@pytest.mark.parametrize(
    "name,d,heads,ff,paper,tolerance",
    [
        # Our base has 63.08M with 37k types; 65M would need ~40.8k types (README: deviations).
        ("base", 512, 8, 2048, 65e6, 0.03),
        ("big", 1024, 16, 4096, 213e6, 0.02),
    ],
)
def test_parameter_counts_match_the_paper(name, d, heads, ff, paper, tolerance):
    with torch.device("meta"):
        model = TransformerSeq2Seq(37000, 37000, 6, 6, d, heads, ff, share_embeddings=True)
    count = sum(p.numel() for p in model.parameters())
    assert count == closed_form_parameters(37000, 6, d, ff)
    assert abs(count - paper) / paper < tolerance, (name, count)


def test_dropout_only_in_training():
    model = tiny_transformer(dropout=0.5, attention_dropout=0.5)
    src, lens = random_batch()
    tgt = torch.tensor([[BOS, 5, 6]] * 4)
    model.eval()
    torch.testing.assert_close(model(src, lens, tgt), model(src, lens, tgt))
    model.train()
    assert not torch.allclose(model(src, lens, tgt), model(src, lens, tgt))


def test_learns_to_reverse_a_sequence():
    """A behaviour check: a small model trained briefly reverses 5-token inputs exactly."""
    torch.manual_seed(0)
    model = TransformerSeq2Seq(12, 12, 2, 2, 32, 4, 64, dropout=0.0, norm_first=True)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        src = torch.randint(4, 12, (64, 5), generator=g)
        tgt = torch.cat([src.flip(1), torch.full((64, 1), EOS)], 1)
        tgt_in = torch.cat([torch.full((64, 1), BOS), tgt[:, :-1]], 1)
        logits = model(src, torch.full((64,), 5), tgt_in)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 12), tgt.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    src = torch.randint(4, 12, (50, 5), generator=g)
    hyps = greedy_search(model, src, torch.full((50,), 5), max_len_a=8, max_len_b=0.0)
    correct = sum(h.tokens == row.flip(0).tolist() for h, row in zip(hyps, src))
    assert correct >= 45, correct


@pytest.mark.parametrize("causal", [False, True])
def test_bf16_attention_on_cpu_matches_the_fused_kernel(causal):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, 6, 8, generator=g) for _ in range(3))
    mask = torch.ones(3, 1, 1, 6, dtype=torch.bool)
    mask[0, ..., 4:] = False  # a padded source
    mask = None if causal else mask
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, mask, is_causal=causal)
    qb, kb, vb = (t.bfloat16().requires_grad_() for t in (q, k, v))
    out = attend(qb, kb, vb, mask, is_causal=causal)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=0.03, rtol=0.02)
    out.float().sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (qb, kb, vb))
    if causal:  # position 0 sees only key 0: its output is v[0] exactly (up to bf16)
        torch.testing.assert_close(out[..., 0, :].float(), vb[..., 0, :].float().detach())


def test_cpu_decoding_steps_attend_in_plain_matmuls_with_the_same_result():
    g = torch.Generator().manual_seed(0)
    k, v = torch.randn(6, 2, 9, 8, generator=g), torch.randn(6, 2, 9, 8, generator=g)
    mask = torch.ones(6, 1, 1, 9, dtype=torch.bool)
    mask[1, ..., 3:] = False
    for positions in (1, 5, SHORT_QUERY, SHORT_QUERY + 1):
        q = torch.randn(6, 2, positions, 8, generator=g)
        ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, mask)
        with torch.no_grad():  # a decoding step's queries: plain up to SHORT_QUERY positions
            assert plain_attention(q) == (positions <= SHORT_QUERY)
            torch.testing.assert_close(attend(q, k, v, mask), ref, atol=1e-6, rtol=1e-5)
    trained = q[:, :, :1].clone().requires_grad_()
    assert not plain_attention(trained)  # training keeps the fused kernel (faster with backward)
    assert plain_attention(trained.detach().bfloat16())  # bf16 on a CPU always plain


def test_attention_dropout_drops_weights_only_when_asked():
    q = k = v = torch.ones(1, 1, 4, 8, dtype=torch.bfloat16)
    torch.manual_seed(0)
    dropped = attend(q, k, v, dropout=0.5)
    assert not torch.equal(dropped, torch.ones_like(q))  # weights 0 or 2/4, not all 1/4
    assert torch.equal(attend(q, k, v), torch.ones_like(q))


def test_sinusoids_are_the_papers_and_serve_training_after_decoding():
    """§3.5: PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(same), for any window of
    positions (rows of a cached table), also after a table was built under inference mode."""
    d = 6
    with torch.inference_mode():
        sinusoids(100, 1, d)  # builds the cached table for these positions in inference mode
    pe = sinusoids(98, 5, d)
    for row, pos in enumerate(range(98, 103)):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert pe[row, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
            assert pe[row, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)
    x = torch.randn(5, d, requires_grad=True)
    (x * pe).sum().backward()  # an inference tensor could not be saved for backward
    assert torch.equal(x.grad, pe)
