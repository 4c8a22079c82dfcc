import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seq2seq.data.tokenizer import PAD
from seq2seq.loss import linear_cross_entropy, teacher_forced_losses, token_losses
from tests.helpers import random_batch, tiny_lstm


def _targets(g: torch.Generator, vocab: int = 17) -> torch.Tensor:
    tgt = torch.randint(4, vocab, (3, 5), generator=g)
    tgt[0, 3:] = PAD
    tgt[2, 1:] = PAD
    return tgt


def test_label_smoothing_as_the_paper_with_padding_excluded():
    """Vaswani et al. §5.4 (Szegedy et al. 2016): the target distribution puts 1 - eps on the
    reference and eps uniformly over the vocabulary; padded positions contribute nothing."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 17, generator=g)
    tgt = _targets(g)
    loss, nll = token_losses(logits, tgt, label_smoothing=0.1)
    flat, gold = logits.view(-1, 17), tgt.view(-1)
    expected = F.cross_entropy(flat, gold, ignore_index=PAD, label_smoothing=0.1, reduction="sum")
    torch.testing.assert_close(loss, expected)
    by_token = F.cross_entropy(flat, gold, ignore_index=PAD, reduction="none").view(3, 5)
    torch.testing.assert_close(nll, by_token)
    assert (nll[tgt == PAD] == 0).all()
    # the same sum by hand: (1 - eps) * NLL + eps * mean over the vocabulary of -log p
    keep = gold != PAD
    lp = flat.log_softmax(-1)[keep]
    by_hand = (0.9 * -lp.gather(1, gold[keep, None]).squeeze(1) + 0.1 * -lp.mean(-1)).sum()
    torch.testing.assert_close(loss, by_hand)
    plain, plain_nll = token_losses(logits, tgt)
    assert torch.equal(plain, plain_nll.sum()) and torch.equal(plain_nll, nll)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("chunk", [1, 4, 1000])
def test_fused_loss_and_gradients_equal_the_logits_path(smoothing, bias, chunk):
    """Same loss, per-token NLL and gradients (features, weight, bias) as projecting the whole
    batch and taking `token_losses`, whatever the chunking."""
    g = torch.Generator().manual_seed(1)
    out = nn.Linear(6, 17, bias=bias)
    tgt = _targets(g)
    features = torch.randn(3, 5, 6, generator=g, requires_grad=True)
    loss, nll = linear_cross_entropy(features, out, tgt, smoothing, chunk)
    (2.5 * loss).backward()
    fused = [features.grad, *(p.grad for p in out.parameters())]
    features.grad = None
    out.zero_grad()
    ref_loss, ref_nll = token_losses(out(features), tgt, smoothing)
    (2.5 * ref_loss).backward()
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(nll, ref_nll)
    assert not nll.requires_grad
    for got, want in zip(fused, [features.grad, *(p.grad for p in out.parameters())]):
        torch.testing.assert_close(got, want)
    assert (fused[0][tgt == PAD] == 0).all()  # padding never reaches the projection


def test_fused_loss_is_exact_where_the_reference_probability_underflows():
    """A reference token 200 nats below the best has probability exp(-200), 0 in float32; its
    NLL (200, from the log-sum-exp) and the gradients are still those of the logits path."""
    out = nn.Linear(3, 10)
    with torch.no_grad():
        out.weight.zero_()
        out.bias.copy_(torch.arange(10.0) * -50)  # logits 0, -50, ..., -450 for every input
    features = torch.randn(1, 2, 3, requires_grad=True)
    tgt = torch.tensor([[4, 5]])
    loss, nll = linear_cross_entropy(features, out, tgt, 0.1)
    loss.backward()
    ref_loss, ref_nll = token_losses(out(features), tgt, 0.1)
    torch.testing.assert_close(nll, ref_nll)
    assert nll[0, 0].item() == pytest.approx(200.0)
    torch.testing.assert_close(loss, ref_loss)
    grad = out.bias.grad.clone()
    out.zero_grad()
    ref_loss.backward()
    torch.testing.assert_close(grad, out.bias.grad)


def test_fused_loss_in_bf16_autocast_stays_close_to_fp32():
    g = torch.Generator().manual_seed(2)
    out = nn.Linear(64, 300)
    tgt = torch.randint(4, 300, (8, 12), generator=g)
    features = torch.randn(8, 12, 64, generator=g, requires_grad=True)
    with torch.autocast("cpu", torch.bfloat16):
        loss, _ = linear_cross_entropy(features, out, tgt, 0.1, chunk=32)
    assert loss.dtype == torch.float32
    loss.backward()
    assert out.weight.grad.dtype == torch.float32 and features.grad.dtype == torch.float32
    grads = features.grad.clone(), out.weight.grad.clone()
    features.grad = None
    out.zero_grad()
    ref, _ = linear_cross_entropy(features, out, tgt, 0.1)
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-2, atol=0)
    for got, want in zip(grads, (features.grad, out.weight.grad)):
        assert (got - want).norm() < 0.02 * want.norm()


def test_teacher_forced_losses_fuse_only_models_with_features():
    model = tiny_lstm()
    src, src_lens = random_batch()
    g = torch.Generator().manual_seed(3)
    tgt = torch.randint(4, 13, (4, 6), generator=g)
    tgt[1, 4:] = PAD
    batch = {"src": src, "src_lens": src_lens, "tgt_in": tgt, "tgt_out": tgt}
    fused = teacher_forced_losses(model, batch, 0.1, chunk=5)
    logits = teacher_forced_losses(model, batch, 0.1, chunk=0)
    for a, b in zip(fused, logits):
        torch.testing.assert_close(a, b)
    with torch.no_grad():  # scoring: no gradients are computed or kept
        loss, nll = teacher_forced_losses(model, batch, chunk=5)
    torch.testing.assert_close(nll, logits[1])


def test_fused_loss_keeps_its_chunk_buffers_with_the_output_layer():
    """On a CPU the chunk loop's temporaries are kept with `out` and reused: across batches of
    other sizes, in both precisions, after a validation pass under inference mode (whose
    buffers training cannot write, so they are replaced), with the same results as a layer
    that starts with none."""
    from seq2seq.loss import _BUFFERS

    g = torch.Generator().manual_seed(4)
    out = nn.Linear(6, 17)
    batches = [(torch.randn(b, t, 6, generator=g), torch.randint(4, 17, (b, t), generator=g))
               for b, t in ((3, 5), (2, 9), (4, 2))]  # fmt: skip
    with torch.inference_mode():
        linear_cross_entropy(batches[1][0], out, batches[1][1], 0.1, chunk=7)
    for autocast in (False, True, False):
        for features, tgt in batches:
            features = features.clone().requires_grad_()
            with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
                loss, nll = linear_cross_entropy(features, out, tgt, 0.1, chunk=7)
            loss.backward()
            fresh = nn.Linear(6, 17)
            fresh.load_state_dict(out.state_dict())
            again = features.detach().clone().requires_grad_()
            with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
                ref_loss, ref_nll = linear_cross_entropy(again, fresh, tgt, 0.1, chunk=7)
            ref_loss.backward()
            assert torch.equal(loss, ref_loss) and torch.equal(nll, ref_nll)
            assert torch.equal(features.grad, again.grad)
            assert torch.equal(out.weight.grad, fresh.weight.grad)
            out.zero_grad()
    held = _BUFFERS[out]
    assert {"z", "p", "zf", "g", "g_w", "g_w32"} <= set(held)
    assert not any(t.is_inference() for t in held.values())
    assert held["p"].numel() == 7 * 17  # one chunk's, the largest asked for


def test_fused_loss_does_not_keep_buffers_over_its_limit(monkeypatch: pytest.MonkeyPatch):
    """A chunk temporary larger than `KEEP_BYTES` (the paper's 80k vocabulary) is allocated per
    chunk and not kept; the smaller ones still are, and the results do not change."""
    import seq2seq.loss
    from seq2seq.loss import _BUFFERS

    g = torch.Generator().manual_seed(5)
    features = torch.randn(3, 4, 6, generator=g)
    tgt = torch.randint(4, 17, (3, 4), generator=g)
    ref = nn.Linear(6, 17)
    out = nn.Linear(6, 17)
    out.load_state_dict(ref.state_dict())
    a, b = features.clone().requires_grad_(), features.clone().requires_grad_()
    expected = linear_cross_entropy(a, ref, tgt, 0.1, chunk=5)
    expected[0].backward()
    # 5 x 17 float32 logits are 340 bytes; the (17, 6) weight gradient 408
    monkeypatch.setattr(seq2seq.loss, "KEEP_BYTES", 400)
    got = linear_cross_entropy(b, out, tgt, 0.1, chunk=5)
    got[0].backward()
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    assert torch.equal(a.grad, b.grad) and torch.equal(ref.weight.grad, out.weight.grad)
    assert {"z", "p"} <= set(_BUFFERS[out]) and "g_w" not in _BUFFERS[out]
