"""Self-contained checkpoints: one path rebuilds the model, its tokenizer and data settings."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.utils import instantiate
from torch import nn

from seq2seq.data.tokenizer import Tokenizer, tokenizer_from_state_dict
from seq2seq.ensemble import Ensemble
from seq2seq.errors import UserError
from seq2seq.models.interface import prepare_for_inference
from seq2seq.precision import quantize_int8, require_int8, warn_if_emulated


@dataclass
class Loaded:
    model: nn.Module
    tokenizer: Tokenizer
    data: dict  # language pair, reversal, the training data source
    path: Path


def read_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", key: str = "ckpt"
) -> dict:
    """A seq2seq checkpoint as a dict, read safely (tensors and plain types only); errors name
    the path as `{key}=path`, the setting it came from."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{key}={path}: no such file")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True, mmap=True)
    except Exception as e:  # the unpickler fails in many ways on truncated or foreign bytes
        unsafe = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if unsafe:
            raise UserError(
                f"{key}={path}: refused, loading it would unpickle {unsafe.group(1)} "
                "(only tensors and plain types are loaded)"
            ) from None
        raise UserError(
            f"{key}={path}: not a readable checkpoint (truncated or corrupt?)"
        ) from None
    if not isinstance(ckpt, dict) or "seq2seq" not in ckpt:
        raise UserError(f"{key}={path}: not a seq2seq checkpoint (no 'seq2seq' entry)")
    meta = ckpt["seq2seq"] if isinstance(ckpt["seq2seq"], dict) else {}
    missing = [k for k in ("model", "tokenizer", "data") if k not in meta]
    missing += [] if isinstance(ckpt.get("state_dict"), dict) else ["state_dict"]
    if missing:
        raise UserError(f"{key}={path}: an incomplete seq2seq checkpoint (no {', '.join(missing)})")
    return ckpt


def first_line(error: BaseException, width: int = 200) -> str:
    """An exception's message as one line, for a one-line error (tracebacks name the cause of
    a model that does not load over several lines)."""
    text = " ".join(str(error).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Loaded:
    """Load a checkpoint written by training (or averaging): model, tokenizer, data settings."""
    path = Path(path).expanduser()
    ckpt = read_checkpoint(path, device)
    meta = ckpt["seq2seq"]
    try:
        model = instantiate(meta["model"])
    except Exception as e:  # a renamed class or argument: the checkpoint is from another version
        target = meta["model"].get("_target_") if isinstance(meta["model"], dict) else None
        raise UserError(f"ckpt={path}: cannot build its model {target} ({first_line(e)})") from None
    prefix = "model."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:  # missing, unexpected or differently shaped weights
        reason = first_line(e)
        raise UserError(f"ckpt={path}: its weights do not fit its model ({reason})") from None
    model.to(device).eval()
    return Loaded(
        model=model,
        tokenizer=tokenizer_from_state_dict(meta["tokenizer"]),
        data=meta["data"],
        path=path,
    )


def same_tokenizer(a: dict, b: dict, side: str | None = None) -> bool:
    """Whether two checkpoints' tokenizer states are identical (one side, or both)."""
    sides = [side] if side else sorted(a.keys() | b.keys())
    return all(k in a and k in b and torch.equal(a[k], b[k]) for k in sides)


PRECISIONS = {"32": torch.float32, "bf16": torch.bfloat16, "int8": torch.float32}


def pick_device(device: str | torch.device, precision: str | int = "32") -> str | torch.device:
    """`auto` -> cuda when available, else cpu; always cpu for `precision=int8` (CPU only)."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() and str(precision) != "int8" else "cpu"
    return device


def check_device(device: str | torch.device, precision: str | int) -> None:
    """One-line errors, before a checkpoint is read, for a device torch does not know, for
    `precision=int8` off the CPU, and for a device torch cannot use here."""

    def unusable(e: BaseException) -> UserError:
        reason = first_line(e, 120)
        return UserError(f"device={device}: not usable here ({reason}); use cpu, cuda or auto")

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as e:  # not a device name
        raise unusable(e) from None
    if str(precision) == "int8":
        require_int8(parsed)
    try:
        torch.empty(0, device=parsed)
    except (RuntimeError, AssertionError) as e:  # torch built without it, or none present
        raise unusable(e) from None


def load_models(
    paths: str | Path | list, device: str | torch.device = "cpu", precision: str | int = "32"
) -> Loaded:
    """One checkpoint, or a list of them loaded as an `Ensemble` (same vocabularies required;
    members trained on the other source direction read a flipped source), for decoding only
    (`prepare_for_inference`). `precision` bf16 casts the weights to bfloat16 for decoding (the
    softmax stays float32); int8 quantizes the matmuls' weights (`quantize_int8`, CPU only).
    `device` may be `auto` (`pick_device`)."""
    device = pick_device(device, precision)
    if str(precision) not in PRECISIONS:
        raise UserError(f"precision={precision}: expected one of {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[str(precision)]
    check_device(device, precision)  # int8 on a GPU too: before anything is read
    warn_if_emulated(dtype, device)
    loaded = _load(paths, device)
    prepare_for_inference(loaded.model.to(dtype))
    if str(precision) == "int8":
        loaded.model = quantize_int8(loaded.model, device)
    return loaded


def _load(paths: str | Path | list, device: str | torch.device) -> Loaded:
    """One checkpoint, or several as an `Ensemble`, as `load_models` describes."""
    if isinstance(paths, (str, Path)):
        return load_checkpoint(paths, device)
    paths = [Path(p) for p in paths]
    if not paths:
        raise UserError("ckpt=[]: no checkpoints given")
    members = [load_checkpoint(p, device) for p in paths]
    first = members[0]
    for m in members[1:]:
        for side in ("tgt", "src"):
            if not same_tokenizer(m.tokenizer.state_dict(), first.tokenizer.state_dict(), side):
                raise UserError(
                    f"ckpt={m.path}: its {side} vocabulary differs from {first.path}'s; "
                    "ensemble members must share their vocabularies"
                )
    pair = (first.data.get("src"), first.data.get("tgt"))
    for m in members[1:]:
        if (m.data.get("src"), m.data.get("tgt")) != pair:
            raise UserError(
                f"ckpt={m.path}: translates {m.data.get('src')}->{m.data.get('tgt')}, "
                f"{first.path} {pair[0]}->{pair[1]}; ensemble members must translate one pair"
            )
    reverse = first.data["reverse_source"]
    flip = [m.data["reverse_source"] != reverse for m in members]
    model = Ensemble([m.model for m in members], flip).eval()
    return Loaded(model=model, tokenizer=first.tokenizer, data=first.data, path=first.path)


def last_checkpoints(run_dir: str | Path, n: int) -> list[Path]:
    """The `n` latest periodic checkpoints of a run (`checkpoint.keep_last`), oldest first."""
    if n < 1:
        raise UserError(f"last={n}: must be at least 1")
    folder = Path(run_dir).expanduser() / "checkpoints"
    found = sorted(folder.glob("step=*.ckpt"))  # zero-padded steps: name order is step order
    if len(found) < n:
        raise UserError(
            f"run={run_dir}: asked for the last {n} checkpoints, {folder} has {len(found)} "
            "(train with checkpoint.keep_last=N)"
        )
    return found[-n:]


def average_checkpoints(paths: list[Path]) -> dict:
    """One checkpoint whose weights are the element-wise mean of those in `paths`
    (Vaswani et al. 2017, §6.1); metadata (tokenizer, data, model arguments) from the last."""
    if not paths:
        raise UserError("no checkpoints to average")
    total: dict[str, torch.Tensor] = {}
    first_meta = None
    for path in paths:  # one at a time: memory stays at two copies of the weights
        ckpt = read_checkpoint(path)
        meta, state = ckpt["seq2seq"], ckpt["state_dict"]
        if first_meta is None:
            first_meta, dtypes = meta, {k: v.dtype for k, v in state.items()}
            total = {k: v.double() if v.is_floating_point() else v for k, v in state.items()}
            continue
        if meta["model"] != first_meta["model"] or state.keys() != total.keys():
            raise UserError(f"ckpt={path}: a different model from {paths[0]}; cannot average")
        if not same_tokenizer(meta["tokenizer"], first_meta["tokenizer"]):
            raise UserError(f"ckpt={path}: a different tokenizer from {paths[0]}; cannot average")
        for k, v in state.items():
            if v.is_floating_point():
                total[k] += v.double()
    averaged = {
        k: (v / len(paths)).to(dtypes[k]) if v.is_floating_point() else v for k, v in total.items()
    }
    return {
        "state_dict": averaged,
        "seq2seq": {**meta, "averaged_from": [str(p) for p in paths]},
    }


def save_checkpoint(ckpt: dict, path: str | Path) -> Path:
    """Write atomically, into a temporary file beside `path` that is then renamed over it: a
    crash or a full disk mid-write never leaves a truncated file, and the previous one stays."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:  # serialised straight into the file: no second copy of the checkpoint in memory
        with open(tmp, "wb") as f:
            torch.save(ckpt, f)  # a failed write surfaces as the file's OSError
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename makes it the checkpoint
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        kept = f"the previous {path.name} is unchanged" if path.exists() else "no partial file left"
        raise UserError(
            f"{path}: cannot write the checkpoint ({e.strerror or e}); {kept}"
        ) from None
    return path
