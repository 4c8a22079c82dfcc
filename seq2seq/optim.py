"""Learning-rate schedules, stepped once per optimizer step."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def halving(
    optimizer: Optimizer, steps_per_epoch: int, start_epoch: float = 5.0, every_epochs: float = 0.5
) -> LambdaLR:
    """Sutskever et al. 2014, §3.4: constant, then "after 5 epochs, we began halving the
    learning rate every half epoch" (x0.5 at epoch 5, 5.5, 6, ...)."""

    def factor(step: int) -> float:
        epoch = step / steps_per_epoch
        if epoch < start_epoch:
            return 1.0
        return 0.5 ** (math.floor((epoch - start_epoch) / every_epochs + 1e-9) + 1)

    return LambdaLR(optimizer, factor)


def inverse_sqrt(
    optimizer: Optimizer,
    warmup: int = 4000,
    d_model: int | None = None,
    steps_per_epoch: int | None = None,
) -> LambdaLR:
    """Vaswani et al. 2017, §5.3: linear warm-up, then decay with the inverse square root of the
    step. With `d_model`, the paper's lrate = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)
    times the optimizer's lr (1.0 for the paper); without, the optimizer's lr is the peak,
    reached at step `warmup`. `steps_per_epoch` is accepted for a uniform scheduler call."""
    if warmup < 1:
        raise ValueError(f"optim.scheduler.warmup={warmup}: must be at least 1")
    scale = d_model**-0.5 * warmup**-0.5 if d_model else 1.0  # the paper's peak, or 1

    def factor(index: int) -> float:
        step = index + 1  # LambdaLR asks for step 0 before the first update; the paper counts 1
        return scale * min(step / warmup, (warmup / step) ** 0.5)

    return LambdaLR(optimizer, factor)
