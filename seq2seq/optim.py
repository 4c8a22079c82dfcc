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
