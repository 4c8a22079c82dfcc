"""Self-contained checkpoints: one path rebuilds the model, its tokenizer and data settings."""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.utils import instantiate
from torch import nn

from seq2seq.data.tokenizer import Tokenizer
from seq2seq.errors import UserError


@dataclass
class Loaded:
    model: nn.Module
    tokenizer: Tokenizer
    data: dict  # language pair, reversal, the training data source
    path: Path


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Loaded:
    """Load a checkpoint written by training (safely: tensors and plain types only)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"ckpt={path}: no such file")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        unsafe = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if unsafe:
            raise UserError(
                f"ckpt={path}: refused, loading it would unpickle {unsafe.group(1)} "
                "(only tensors and plain types are loaded)"
            ) from None
        raise UserError(f"ckpt={path}: not a readable checkpoint (truncated or corrupt?)") from None
    if not isinstance(ckpt, dict) or "seq2seq" not in ckpt:
        raise UserError(f"ckpt={path}: not a seq2seq checkpoint (no 'seq2seq' entry)")
    meta = ckpt["seq2seq"]
    model = instantiate(meta["model"])
    prefix = "model."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    model.load_state_dict(state)
    model.to(device).eval()
    return Loaded(
        model=model,
        tokenizer=Tokenizer.from_state_dict(meta["tokenizer"]),
        data=meta["data"],
        path=path,
    )
