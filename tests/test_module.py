import types

import pytest
import pytorch_lightning as pl
import torch

from seq2seq.errors import UserError
from tests.helpers import tiny_setup


class Poison(pl.Callback):
    """Makes the model's target embeddings, so its loss, NaN for one training batch (or from it
    on)."""

    def __init__(self, at: int, once: bool) -> None:
        self.at, self.once, self.handle = at, once, None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == self.at and self.handle is None:
            hook = module.model.tgt_embed.register_forward_hook
            self.handle = hook(lambda m, i, out: out * float("nan"))
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


def test_gradients_are_clipped_to_the_norm(monkeypatch):
    """trainer.gradient_clip_val with the norm algorithm (optim.grad_clip: Sutskever et al.'s
    5) scales the gradients to that global norm: it clipped nothing (the clipping function was
    given the gradients, whose own .grad is None, instead of the parameters)."""
    norms = []
    clip = type(module := tiny_setup(64, hidden=8)[1]).configure_gradient_clipping

    def recorded(self, *args, **kwargs):
        clip(self, *args, **kwargs)
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        norms.append(float(torch.nn.utils.get_total_norm(grads)))

    monkeypatch.setattr(type(module), "configure_gradient_clipping", recorded)
    dm, module, trainer = tiny_setup(64, hidden=8, max_steps=3, gradient_clip_val=0.01,
                                     gradient_clip_algorithm="norm")  # fmt: skip
    trainer.fit(module, datamodule=dm)
    assert len(norms) == 3 and all(n == pytest.approx(0.01, rel=1e-3) for n in norms)


def test_a_gpu_run_saves_and_restores_its_gpu_generator(monkeypatch):
    """Dropout on a GPU draws from the GPU's generator: a checkpoint carries it per rank and
    the resumed run sets it back at its first batch (faked here: no GPU in the tests)."""
    _, module, _ = tiny_setup(50, hidden=8)
    module._device = torch.device("cuda", 0)  # what `module.device` reports
    module._trainer = types.SimpleNamespace(global_rank=0, world_size=1, datamodule=None)
    state, restored = torch.tensor([1, 2, 3], dtype=torch.uint8), []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: state.clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device: restored.append((s, device)))
    checkpoint = {}
    module.on_save_checkpoint(checkpoint)
    assert torch.equal(checkpoint["seq2seq_resume"]["cuda_rng_per_rank"][0], state)
    module.on_load_checkpoint(checkpoint)
    module.on_train_batch_start({}, 0)
    module.on_train_batch_start({}, 1)  # once only
    assert len(restored) == 1 and torch.equal(restored[0][0], state)
    assert restored[0][1] == torch.device("cuda", 0)


class GradStorage(pl.Callback):
    """Where each gradient lives at every optimizer step, and whether all are zero (or not yet
    allocated) when backward starts."""

    def __init__(self) -> None:
        self.where, self.zero_before_backward = [], []

    def on_before_backward(self, trainer, module, loss):
        grads = [p.grad for p in module.parameters()]
        self.zero_before_backward.append(all(g is None or not g.any() for g in grads))

    def on_before_optimizer_step(self, trainer, module, optimizer):
        self.where.append([p.grad.data_ptr() for p in module.parameters()])


def test_cpu_gradients_are_zeroed_in_place_not_reallocated_every_step():
    """module.optimizer_zero_grad: kept gradients leave glibc's heap unfragmented (README)."""
    storage = GradStorage()
    dm, module, trainer = tiny_setup(300, hidden=8, max_steps=4, callbacks=[storage])
    trainer.fit(module, datamodule=dm)
    assert len(storage.where) == 4 and all(w == storage.where[0] for w in storage.where)
    assert storage.zero_before_backward == [True] * 4
