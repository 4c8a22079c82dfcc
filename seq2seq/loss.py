"""Losses over the target vocabulary: from logits, or fused with the output projection.

`token_losses` takes (B, T, V) logits. `linear_cross_entropy` takes the decoder's features
before the output projection and computes the same sums without ever holding the logits of a
whole batch: it projects the non-padding tokens a chunk at a time, and for each chunk computes
its loss and, at once, its gradients (softmax minus target), which backward only scales. The
(tokens x vocabulary) logits, their float copy and their log-softmax are the largest tensors of a
training step (the paper model: 128 x 30 x 80,000 floats, 1.2 GB each); fused, a chunk's
logits are the only ones alive, and padding is never projected at all.
"""

from __future__ import annotations

import math
import weakref
from functools import partial

import torch
from torch import Tensor, nn

from seq2seq.data.tokenizer import PAD

# On a CPU, the chunk loop's (chunk x vocabulary) temporaries live in buffers kept with the
# output layer from one call to the next (`_buffer`), where each chunk of each step allocated
# them anew. Among a step's activations, whose sizes change with every batch, glibc could not
# hand the freed blocks back whole, and its heap grew: in a plain bf16 training loop of the
# speed benchmark's model A, 120 steps in, the heap held 554-620 MB free and the process
# 1.27-1.34 GB, against 258-289 MB and 1.04-1.07 GB with the buffers kept, at the same speed
# (an ad-hoc check; `scripts/benchmark.py speed` measures the peaks, README "Speed"). A GPU's
# caching allocator reuses such blocks itself, so there they are allocated as before. A buffer
# larger than `KEEP_BYTES` is not kept either: the paper's model (80,000 words, 1,000 wide) would
# hold some 1 GB of them through backward and validation, where each chunk frees its own.
KEEP_BYTES = 64 * 2**20
_BUFFERS: weakref.WeakKeyDictionary[nn.Module, dict[str, Tensor]] = weakref.WeakKeyDictionary()


def _buffer(store: dict[str, Tensor], name: str, shape: tuple[int, ...], dtype: torch.dtype,
            device: torch.device) -> Tensor:  # fmt: skip
    """A (shape, dtype) tensor on `device`, from `store[name]` when it is large enough
    (its contents are garbage); one over `KEEP_BYTES` is made anew and not kept. One made
    under `torch.inference_mode` (validation) cannot be written outside it (training), so it
    is replaced there."""
    n, held = math.prod(shape), store.get(name)
    if n * dtype.itemsize > KEEP_BYTES:
        store.pop(name, None)
        return torch.empty(shape, dtype=dtype, device=device)
    if (held is None or held.numel() < n or held.dtype != dtype or held.device != device
            or held.is_inference() and not torch.is_inference_mode_enabled()):  # fmt: skip
        held = store[name] = torch.empty(n, dtype=dtype, device=device)
    return held[:n].view(shape)


def token_losses(
    logits: Tensor, tgt_out: Tensor, label_smoothing: float = 0.0
) -> tuple[Tensor, Tensor]:
    """(training loss summed over non-pad target tokens, label-smoothed if asked; (B, T) NLL of
    each reference token, 0 at padding)."""
    lprobs = logits.float().log_softmax(-1)  # (B, T, V)
    nll = gold_nll(lprobs, tgt_out)
    if not label_smoothing:
        return nll.sum(), nll
    smooth = -lprobs.mean(-1).masked_fill(tgt_out == PAD, 0.0).sum()
    return (1 - label_smoothing) * nll.sum() + label_smoothing * smooth, nll


def teacher_forced_losses(
    model: nn.Module, batch: dict, label_smoothing: float = 0.0, chunk: int = 512
) -> tuple[Tensor, Tensor]:
    """`token_losses` of a model on a batch: fused with the output projection
    (`linear_cross_entropy`) when the model exposes `features` and `out` and `chunk` > 0."""
    args = batch["src"], batch["src_lens"], batch["tgt_in"]
    if chunk and hasattr(model, "features") and isinstance(getattr(model, "out", None), nn.Linear):
        return linear_cross_entropy(model.features(*args), model.out, batch["tgt_out"],
                                    label_smoothing, chunk)  # fmt: skip
    return token_losses(model(*args), batch["tgt_out"], label_smoothing)


def gold_nll(lprobs: Tensor, tgt_out: Tensor) -> Tensor:
    """(B, T) negative log-probability of each reference token; 0 at padding."""
    nll = -lprobs.gather(-1, tgt_out.unsqueeze(-1)).squeeze(-1)
    return nll.masked_fill(tgt_out == PAD, 0.0)


class _LinearCrossEntropy(torch.autograd.Function):
    """loss = sum over rows of (1 - eps) * NLL + eps * mean_v(-log p_v), p = softmax(h W^T + b).

    d loss / d logits = p - (1 - eps) * onehot - eps / V per row, so the forward pass can finish
    each chunk's gradients while its logits are at hand; backward scales them by grad_output.

    Each chunk takes one pass of float32 softmax over its logits, where a log-softmax and then
    its exp took two (1.6 against 3.9 ms for 512 x 8,000 bf16 logits on 2 cores, a quick
    timing). The log-sum-exp comes from each row's largest probability, which is at least 1/V
    and never underflows: lse = max_v z_v - log max_v p_v. So NLL = lse - z_target stays exact
    where p_target underflows. The gradients' constant -eps/V is applied once per batch to
    the matmuls' results (its share of grad_h is -eps/V times W's column sums; of grad_W,
    -eps/V times the sum of h's rows, in every row), not to every logit.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, h: Tensor, weight: Tensor,
        bias: Tensor | None, target: Tensor, smoothing: float, chunk: int, dtype: torch.dtype,
        grads: bool, store: dict[str, Tensor],
    ) -> tuple[Tensor, Tensor]:  # fmt: skip
        w, b = weight.to(dtype), None if bias is None else bias.to(dtype)
        V, f32 = w.size(0), torch.float32
        buf = partial(_buffer, store, device=h.device)
        loss = torch.zeros((), dtype=f32, device=h.device)
        nll = torch.empty(h.size(0), dtype=f32, device=h.device)
        grad_h = torch.empty_like(h) if grads else None
        grad_w = torch.zeros_like(weight, dtype=f32) if grads else None
        grad_b = torch.zeros_like(bias, dtype=f32) if grads and bias is not None else None
        for start in range(0, h.size(0), chunk):
            rows = slice(start, start + chunk)
            hc, t = h[rows].to(dtype), target[rows].unsqueeze(1)
            z = buf("z", (hc.size(0), V), dtype)  # the only logits
            torch.mm(hc, w.t(), out=z) if b is None else torch.addmm(b, hc, w.t(), out=z)
            zf = z if dtype == f32 else buf("zf", z.shape, f32).copy_(z)
            p = torch.softmax(zf, -1, out=buf("p", z.shape, f32))
            lse = z.amax(-1).float() - p.amax(-1).log()  # (n,)
            nll[rows] = lse - z.gather(1, t).squeeze(1).float()
            loss += (1 - smoothing) * nll[rows].sum()
            if smoothing:  # mean_v(-log p_v) = lse - mean_v z_v
                loss += smoothing * (lse - z.mean(-1, dtype=torch.float32)).sum()
            if not grads:
                continue
            g = p.scatter_add_(1, t, p.new_full(t.shape, smoothing - 1.0))  # p - (1 - eps) onehot
            if grad_b is not None:
                grad_b.add_(g.sum(0))
            if dtype != f32:
                g = buf("g", g.shape, dtype).copy_(g)
            grad_h[rows] = (g @ w).to(h.dtype)
            g_w = torch.mm(g.t(), hc, out=buf("g_w", grad_w.shape, dtype))
            grad_w.add_(g_w if dtype == f32 else buf("g_w32", g_w.shape, f32).copy_(g_w))
        if grads and smoothing:  # the -eps/V of every logit's gradient
            eps_v = smoothing / V
            grad_h.sub_((eps_v * w.float().sum(0)).to(h.dtype))
            grad_w.sub_(eps_v * h.float().sum(0))
            if grad_b is not None:
                grad_b.sub_(eps_v * h.size(0))
        ctx.mark_non_differentiable(nll)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        return loss, nll

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad_loss: Tensor, _: Tensor
    ) -> tuple[Tensor | None, ...]:
        grad_h, grad_w, grad_b = ctx.saved_tensors
        scale = grad_loss.float()
        out = [g if g is None else (g * scale).to(g.dtype) for g in (grad_h, grad_w, grad_b)]
        return out[0], out[1], out[2], None, None, None, None, None, None


def linear_cross_entropy(
    features: Tensor, out: nn.Linear, tgt_out: Tensor, label_smoothing: float = 0.0,
    chunk: int = 512,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """`token_losses(out(features), tgt_out, label_smoothing)` without the (B, T, V) logits:
    (summed training loss, (B, T) NLL of each reference token, 0 at padding; not differentiable).

    The projection runs in the autocast dtype when autocast is on (bf16 matmuls), the softmax
    in float32, `chunk` target tokens at a time.
    """
    device = features.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    keep = tgt_out != PAD
    h = features[keep]  # (N, H): padding is never projected
    params = [h, out.weight] + ([] if out.bias is None else [out.bias])
    grads = torch.is_grad_enabled() and any(p.requires_grad for p in params)
    store = _BUFFERS.setdefault(out, {}) if device == "cpu" else {}
    with torch.autocast(device, enabled=False):
        loss, nll = _LinearCrossEntropy.apply(
            h, out.weight, out.bias, tgt_out[keep], float(label_smoothing), chunk,
            dtype or out.weight.dtype, grads, store,
        )  # fmt: skip
    return loss, torch.zeros(tgt_out.shape, dtype=nll.dtype, device=nll.device).masked_scatter(
        keep, nll
    )
