import pytest
import torch

from seq2seq.models.dropout import Dropout


@pytest.mark.parametrize("p", [0.1, 0.3])
def test_drops_at_the_rate_and_keeps_the_expectation(p):
    torch.manual_seed(0)
    x = torch.ones(1000, 1000, requires_grad=True)
    dropout = Dropout(p).train()
    y = dropout(x)
    dropped = (y == 0).float().mean().item()
    assert dropped == pytest.approx(p, abs=0.003)  # 1M draws: 3 standard deviations ~0.0014
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)
    kept = y[y != 0]
    assert torch.equal(kept, torch.full_like(kept, dropout.scale))
    assert dropout.scale == pytest.approx(1 / (1 - p), rel=1e-4)
    y.sum().backward()  # the gradient goes through the kept elements, scaled alike
    assert torch.equal(x.grad, y.detach())


def test_masks_follow_the_seed_and_vary_between_calls():
    dropout = Dropout(0.5).train()
    x = torch.ones(64, 33, dtype=torch.bfloat16)  # an odd element count
    torch.manual_seed(3)
    a, b = dropout(x), dropout(x)
    torch.manual_seed(3)
    assert torch.equal(dropout(x), a) and not torch.equal(a, b)
    assert a.dtype == torch.bfloat16 and a.shape == x.shape


def test_identity_when_evaluating_or_at_zero_and_all_dropped_at_one():
    x = torch.randn(5, 7)
    assert Dropout(0.3).eval()(x) is x
    assert Dropout(0.0).train()(x) is x
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.5)
