"""`compile` of the training config: torch.compile a model's teacher-forced pass.

What is compiled is `features` (src, src_lens, tgt_in -> decoder features): the part of a
training step, and of the validation loss, that the fused loss does not do itself. Shapes are
dynamic, since every batch has its own. Decoding steps are not compiled, and checkpoints are
unchanged: the weights stay the model's own. Off by default: on a 2-core CPU, inductor made a
Transformer's training step slower (README, "Speed"); it is meant for GPUs.
"""

from __future__ import annotations

import torch
from torch import nn

from seq2seq.errors import UserError


def compile_backend(setting: object) -> str | None:
    """The backend that `compile=setting` names: None for false, `inductor` for true, else a
    backend's name (`eager`, `aot_eager`, ...); anything else is a one-line error."""
    if setting is None or setting is False:
        return None
    if setting is True:
        return "inductor"
    if isinstance(setting, str) and setting in torch.compiler.list_backends(exclude_tags=()):
        return setting
    raise UserError(
        f"compile={setting!r}: expected true, false or a torch.compile backend "
        f"({', '.join(torch.compiler.list_backends())}, or a debugging one such as eager)"
    )


def compile_features(model: nn.Module, setting: object) -> nn.Module:
    """`model` with its `features` compiled by the backend `setting` names (if any)."""
    backend = compile_backend(setting)
    if backend is not None:
        model.features = torch.compile(model.features, backend=backend, dynamic=True)
    return model
