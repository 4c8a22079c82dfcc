"""Which precision runs where: `auto` resolves to bf16 where the hardware multiplies it
natively, and an explicit bf16 on a CPU that does not is refused (training) or warned about
(decoding) instead of crawling or crashing. int8 weights for decoding (`quantize_int8`) run on
a CPU only."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

import torch
from torch import nn

from seq2seq.errors import UserError
from seq2seq.models.interface import prepare_for_inference

log = logging.getLogger(__name__)

NO_CPU_BF16 = (
    "this CPU has no native bf16 (AVX512-BF16 or AMX): PyTorch emulates it, several times "
    "slower than fp32, and oneDNN cannot run nn.LSTM under bf16 autocast"
)


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX): there bf16 autocast
    trains ~1.5x faster than fp32 (README "Speed"); elsewhere bf16 is emulated, and slower."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch's own CPU probes
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def uses_bf16(precision: str | int) -> bool:
    """Whether a (resolved) Lightning precision computes in bf16."""
    return str(precision).startswith("bf16")


def resolve_precision(precision: str | int, accelerator: str) -> str | int:
    """`trainer.precision` for Lightning. `auto`: bf16-mixed on a GPU or a CPU with native
    bf16, else 32-true. bf16 where the card has it (Ampere and newer); older cards fall back to
    fp16 mixed. bf16 asked for on a CPU without native bf16 is an error."""
    gpu = accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    if precision == "auto":
        precision = "bf16-mixed" if gpu or cpu_has_bf16() else "32-true"
        log.info("trainer.precision=auto: %s", precision)
    if uses_bf16(precision) and not gpu and not cpu_has_bf16():
        raise UserError(
            f"trainer.precision={precision}: {NO_CPU_BF16}; use trainer.precision=auto or 32-true"
        )
    # native bf16 only: by default torch counts emulated bf16 (pre-Ampere cards) as supported
    emulated = gpu and not torch.cuda.is_bf16_supported(including_emulation=False)
    if precision == "bf16-mixed" and emulated:
        log.warning("this GPU has no bf16: using precision=16-mixed")
        return "16-mixed"
    return precision


def refuse_emulated(precisions: list[str] | tuple[str, ...]) -> None:
    """For benchmarks: stop before measuring anything if a precision is bf16 on a CPU without
    native bf16 (the error of `resolve_precision`)."""
    for precision in precisions:
        resolve_precision(precision, "cpu")


def warn_if_emulated(dtype: torch.dtype, device: str | torch.device) -> None:
    """Decoding with bf16 weights on a CPU without native bf16 works, but slowly: say so."""
    if dtype == torch.bfloat16 and torch.device(device).type == "cpu" and not cpu_has_bf16():
        log.warning("precision=bf16: %s; precision=32 decodes faster here", NO_CPU_BF16)


INT8_LAYERS = (nn.Linear, nn.LSTM, nn.GRU)

# Output width from which an int8 `nn.Linear` is packed for oneDNN's kernel rather than fbgemm's
# (torch's default) on a CPU with VNNI: for a vocabulary projection (256 -> 8,000) oneDNN's ran
# 1.4-1.5x as fast on an AVX512-VNNI CPU, for Transformer-sized layers (256 or 1,024 wide) the
# two were within 0.87-1.12x of each other (README "Speed"). Both compute the same numbers (up
# to float rounding), and a packed layer runs whichever engine is selected later.
WIDE_INT8 = 4096


def wide_int8_engine() -> str | None:
    """The quantized engine for wide int8 layers (`WIDE_INT8`): oneDNN where the CPU has VNNI
    (AVX512-VNNI or AMX CPUs) and torch has it; None (torch's default) elsewhere."""
    vnni = getattr(torch.cpu, "_is_vnni_supported", lambda: False)()
    return "onednn" if vnni and "onednn" in torch.backends.quantized.supported_engines else None


def fuse_linear_relu(model: nn.Module) -> nn.Module:
    """Fuse every `nn.Linear` directly followed by an `nn.ReLU` in an `nn.Sequential` (a
    Transformer's feed-forward) into one `LinearReLU`, which int8 runs as one kernel: no
    separate pass over, and no second copy of, the (tokens, dim_feedforward) activations."""
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        pairs = [[str(i), str(i + 1)] for i in range(len(seq) - 1)
                 if type(seq[i]) is nn.Linear and type(seq[i + 1]) is nn.ReLU]  # fmt: skip
        if pairs:
            torch.ao.quantization.fuse_modules(seq, pairs, inplace=True)
    return model


def require_int8(device: str | torch.device) -> Callable[..., nn.Module]:
    """torch's dynamic quantization, or a one-line error where `precision=int8` cannot run."""
    if torch.device(device).type != "cpu":
        raise UserError(
            f"precision=int8 runs on a CPU only, not on {device}: use device=cpu, or precision=bf16"
        )
    quantize = getattr(getattr(torch.ao, "quantization", None), "quantize_dynamic", None)
    if quantize is None:
        raise UserError(
            f"precision=int8: this torch ({torch.__version__}) has no "
            "torch.ao.quantization.quantize_dynamic; use precision=32"
        )
    return quantize


def quantize_int8(model: nn.Module, device: str | torch.device = "cpu") -> nn.Module:
    """`model` for decoding with int8 weights on a CPU (`precision=int8`): every `nn.Linear`,
    `nn.LSTM` and `nn.GRU` becomes PyTorch's dynamically quantized version. Its weights are
    stored in int8 (one scale per tensor), each input is quantized to 8 bits as it arrives, and
    the matmuls run in int8 with int32 sums (fbgemm or oneDNN), returning float32; embeddings,
    norms, attention's own products and the softmax stay float32, and so do other layers
    (`nn.RNN`); a Linear followed by a ReLU runs as one kernel (`fuse_linear_relu`), and wide
    Linears (a vocabulary projection) run oneDNN's kernel on VNNI CPUs (`WIDE_INT8`). The model
    is prepared for inference first (`prepare_for_inference`: an LSTM is rebuilt of
    `nn.Linear`s, which become int8 with the rest). It is changed in place and returned."""
    quantize = require_int8(device)
    model = prepare_for_inference(model.float().eval())
    with warnings.catch_warnings():  # torch >= 2.10 warns that eager quantization is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        fuse_linear_relu(model)
        engine = wide_int8_engine()
        wide = {name: torch.ao.quantization.default_dynamic_qconfig
                for name, m in model.named_modules()
                if type(m) is nn.Linear and m.out_features >= WIDE_INT8}  # fmt: skip
        if engine and wide:  # packed for `engine` now; the rest below, for torch's default
            default = torch.backends.quantized.engine
            torch.backends.quantized.engine = engine
            try:
                quantize(model, wide, dtype=torch.qint8, inplace=True)
            finally:
                torch.backends.quantized.engine = default
        layers = {*INT8_LAYERS, torch.ao.nn.intrinsic.LinearReLU}
        return quantize(model, layers, dtype=torch.qint8, inplace=True)
