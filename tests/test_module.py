import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from seq2seq.data.tokenizer import PAD
from seq2seq.errors import UserError
from seq2seq.module import token_losses
from tests.helpers import tiny_setup


def test_label_smoothing_as_the_paper_with_padding_excluded():
    """Vaswani et al. §5.4 (Szegedy et al. 2016): the target distribution puts 1 - eps on the
    reference and eps uniformly over the vocabulary; padded positions contribute nothing."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 17, generator=g)
    tgt = torch.randint(4, 17, (3, 5), generator=g)
    tgt[0, 3:] = PAD
    tgt[2, 1:] = PAD
    loss, nll = token_losses(logits, tgt, label_smoothing=0.1)
    flat, gold = logits.view(-1, 17), tgt.view(-1)
    expected = F.cross_entropy(flat, gold, ignore_index=PAD, label_smoothing=0.1, reduction="sum")
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(nll, F.cross_entropy(flat, gold, ignore_index=PAD, reduction="sum"))
    # the same sum by hand: (1 - eps) * NLL + eps * mean over the vocabulary of -log p
    keep = gold != PAD
    lp = flat.log_softmax(-1)[keep]
    by_hand = (0.9 * -lp.gather(1, gold[keep, None]).squeeze(1) + 0.1 * -lp.mean(-1)).sum()
    torch.testing.assert_close(loss, by_hand)
    plain, plain_nll = token_losses(logits, tgt)
    assert torch.equal(plain, plain_nll) and torch.equal(plain, nll)


class Poison(pl.Callback):
    """Makes the model's logits NaN for one training batch (or from it on)."""

    def __init__(self, at: int, once: bool) -> None:
        self.at, self.once, self.handle = at, once, None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == self.at and self.handle is None:
            self.handle = module.model.register_forward_hook(lambda m, i, out: out * float("nan"))
        elif self.once and self.handle is not None:
            self.handle.remove()


def test_nonfinite_loss_stops_naming_the_step():
    dm, module, trainer = tiny_setup(300, hidden=8, max_steps=6, callbacks=[Poison(3, False)])
    with pytest.raises(UserError, match=r"training diverged: loss is nan at step 3 \(epoch 0\)"):
        trainer.fit(module, datamodule=dm)


def test_nonfinite_loss_can_skip_the_update():
    dm, module, trainer = tiny_setup(300, hidden=8, max_steps=6, callbacks=[Poison(2, True)])
    module.nonfinite = "skip"
    trainer.fit(module, datamodule=dm)
    assert module.skipped == 1 and trainer.global_step == 6  # the skipped update still counts
    assert all(torch.isfinite(p).all() for p in module.parameters())


class PoisonGrad(pl.Callback):
    def on_after_backward(self, trainer, module):
        if trainer.global_step == 2:
            next(module.parameters()).grad.fill_(float("inf"))


def test_nonfinite_gradient_stops_or_skips():
    dm, module, trainer = tiny_setup(300, hidden=8, max_steps=4, callbacks=[PoisonGrad()])
    with pytest.raises(UserError, match="gradient norm is inf at step 2"):
        trainer.fit(module, datamodule=dm)
    dm, module, trainer = tiny_setup(300, hidden=8, max_steps=4, callbacks=[PoisonGrad()])
    module.nonfinite = "skip"
    before = {k: v.clone() for k, v in module.state_dict().items()}
    trainer.fit(module, datamodule=dm)
    assert module.skipped == 1 and all(torch.isfinite(p).all() for p in module.parameters())
    assert any(not torch.equal(v, before[k]) for k, v in module.state_dict().items())
