"""Learning-rate schedules, stepped once per optimizer step."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from seq2seq.errors import UserError


def factories(optim: DictConfig) -> tuple[Callable[..., Any], Callable[..., Any] | None]:
    """The optimizer and (optional) scheduler factories of an `optim` config (`_partial_`
    targets), or a one-line error for settings their targets do not take, as when an
    experiment's schedule settings for one `optim=` option are merged into another."""

    hint = "settings meant for another optim= option? `--cfg job` prints the composed config"

    def factory(key: str) -> Callable[..., Any]:
        node = optim[key]
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise UserError(f"optim.{key}: no _target_ (it holds {node}); {hint}")
        made = instantiate(node) if node.get("_partial_") else None
        if not isinstance(made, functools.partial):  # the model's parameters come later
            raise UserError(f"optim.{key}={node._target_}: needs _partial_: true")
        try:
            inspect.signature(made.func).bind_partial(*made.args, **made.keywords)
        except TypeError as e:
            raise UserError(f"optim.{key}={node._target_}: {e}; {hint}") from None
        return made

    return factory("optimizer"), factory("scheduler") if optim.scheduler else None


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
