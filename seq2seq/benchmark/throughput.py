"""Training throughput of an experiment's exact model on random token ids, on any device.

For the speed issue's GPU target: the paper's model (`experiment=sutskever2014`: 4 x 1000
LSTMs, 160k/80k vocabularies, batches of 128 sentences of ~30 tokens, bf16), in the paper's unit,
words/s counting source and target tokens (6,300 on 8 GPUs in 2014), and Transformer base with
~25k-token batches, in target tokens/s and model FLOPs utilisation (MFU: FLOPs per token from
the architecture over this device's measured matmul peak in the run's precision).

No data is read and nothing is written: every sentence has exactly `src_len` source tokens and
`tgt_len` target tokens (EOS included), so there is no padding, and tokens are drawn uniformly
from the vocabulary. Each step is `plain_step`, the loop of `scripts/overhead.py`: the
experiment's loss (fused with the output projection), optimiser, schedule and gradient clipping,
under bf16 autocast for bf16-mixed.
"""

from __future__ import annotations

import statistics
import time

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn

from seq2seq.benchmark import compose_train, markdown_table, peak_rss_mb
from seq2seq.benchmark.speed import matmul_peak, train_flops_per_target_token
from seq2seq.cli import model_config
from seq2seq.data.tokenizer import BOS, EOS
from seq2seq.errors import UserError
from seq2seq.loss import teacher_forced_losses
from seq2seq.models.compiled import compile_features
from seq2seq.precision import resolve_precision, uses_bf16

FIRST_ID = 4  # ids below are PAD, UNK, BOS, EOS


def plain_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, batch: dict, optim: DictConfig,
    loss_chunk: int, bf16: bool,
) -> Tensor:  # fmt: skip
    """One training step as a hand-written PyTorch loop takes it, with the loss, its
    normalisation (`optim.loss_per`) and the gradient clipping of the `optim` config. Returns
    the loss per target token, detached (reading it would wait for the device)."""
    with torch.autocast(batch["src"].device.type, torch.bfloat16, enabled=bf16):
        loss, nll = teacher_forced_losses(model, batch, optim.label_smoothing, loss_chunk)
    per_sentence = optim.loss_per == "sentence"
    loss = loss / (batch["src"].size(0) if per_sentence else batch["ntokens"])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if optim.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip)
    optimizer.step()
    return nll.detach().sum() / batch["ntokens"]


def random_batch(
    batch_size: int, src_len: int, tgt_len: int, src_vocab: int, tgt_vocab: int,
    device: torch.device, generator: torch.Generator,
) -> dict:  # fmt: skip
    """A batch in the datamodule's format: sentences of exactly src_len / tgt_len tokens
    (EOS included), uniform random ids."""
    src = torch.randint(FIRST_ID, src_vocab, (batch_size, src_len), generator=generator)
    words = torch.randint(FIRST_ID, tgt_vocab, (batch_size, tgt_len - 1), generator=generator)
    src[:, -1] = EOS
    tgt_in = torch.cat([torch.full((batch_size, 1), BOS), words], 1)
    tgt_out = torch.cat([words, torch.full((batch_size, 1), EOS)], 1)
    batch = {"src": src, "src_lens": torch.full((batch_size,), src_len),
             "tgt_in": tgt_in, "tgt_out": tgt_out}  # fmt: skip
    batch = {k: v.to(device) for k, v in batch.items()}
    return {**batch, "ntokens": batch_size * tgt_len}


def default_batch_size(cfg: DictConfig, src_len: int, tgt_len: int) -> int:
    """The experiment's batch size in sentences: `data.batch_size`, or as many sentences of
    the longer side as its token budget per optimiser step (`data.max_tokens` x
    `trainer.accumulate_grad_batches`) holds."""
    if cfg.data.batch_size:
        return int(cfg.data.batch_size)
    tokens = cfg.data.max_tokens * (cfg.trainer.get("accumulate_grad_batches") or 1)
    return max(1, tokens // max(src_len, tgt_len))


def vocab_sizes(cfg: DictConfig) -> tuple[int, int]:
    """The experiment's vocabulary sizes: `data.src_words`/`tgt_words` for word vocabularies
    (the paper's 160k/80k), else `data.vocab_size` on both sides."""
    if cfg.data.get("tokenizer") == "word":
        return int(cfg.data.src_words), int(cfg.data.tgt_words)
    return int(cfg.data.vocab_size), int(cfg.data.vocab_size)


def throughput_benchmark(
    experiment: str, device: str = "cpu", precision: str = "bf16-mixed",
    batch_size: int | None = None, src_len: int = 30, tgt_len: int = 30,
    vocab: tuple[int, int] | None = None, steps: int = 20, warmup: int = 5,
    overrides: tuple[str, ...] = (),
) -> dict:  # fmt: skip
    """Steps `warmup` + `steps` of the experiment's training on random batches; the rates come
    from the median time of the last `steps` steps (so a slow step does not skew them)."""
    if steps < 1 or warmup < 0 or min(src_len, tgt_len) < 2:
        raise UserError("need steps >= 1, warmup >= 0 and src_len, tgt_len >= 2")
    cfg = compose_train([f"experiment={experiment}", *overrides], check_numbers=True)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is visible to PyTorch")
    accelerator = "gpu" if dev.type == "cuda" else "cpu"
    precision = str(resolve_precision(precision, accelerator))
    if precision not in ("32-true", "bf16-mixed"):  # a GPU without bf16 falls back to fp16
        raise UserError(f"--precision: this device runs it as {precision}, which this "
                        "benchmark does not (it has no loss scaling): use 32-true")  # fmt: skip
    bf16 = uses_bf16(precision)
    src_vocab, tgt_vocab = vocab or vocab_sizes(cfg)
    batch_size = batch_size or default_batch_size(cfg, src_len, tgt_len)
    model_cfg = model_config(cfg, src_vocab, tgt_vocab)
    torch.manual_seed(cfg.seed)
    with dev:  # parameters made and initialised on the device (the paper's model: 384M)
        model = compile_features(instantiate(model_cfg).train(), cfg.compile)
    optimizer = instantiate(cfg.optim.optimizer)(model.parameters())
    schedule = cfg.optim.scheduler and instantiate(cfg.optim.scheduler)
    scheduler = schedule(optimizer, steps_per_epoch=1000) if schedule else None
    generator = torch.Generator().manual_seed(cfg.seed)
    batches = [random_batch(batch_size, src_len, tgt_len, src_vocab, tgt_vocab, dev, generator)
               for _ in range(4)]  # fmt: skip
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    losses, seconds = [], []
    for step in range(warmup + steps):
        sync()
        start = time.perf_counter()
        losses.append(plain_step(model, optimizer, batches[step % len(batches)], cfg.optim,
                                 cfg.loss_chunk, bf16))  # fmt: skip
        if scheduler is not None:
            scheduler.step()
        sync()
        if step >= warmup:
            seconds.append(time.perf_counter() - start)
    step_s = statistics.median(seconds)
    flops = train_flops_per_target_token(model_cfg, src_len / tgt_len, tgt_len)
    tgt_tok_s = batch_size * tgt_len / step_s
    dtype = torch.bfloat16 if bf16 else torch.float32
    peak = matmul_peak(dev.type, dtype, n=8192 if dev.type == "cuda" else 2048)
    memory = (torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda"
              else peak_rss_mb()["peak_rss_mb"] / 1024)  # fmt: skip
    return {
        "experiment": experiment, "device": device_name(dev), "precision": precision,
        "batch": f"{batch_size} x ({src_len} + {tgt_len})",
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "step_ms": round(step_s * 1e3, 1),
        "words_s": round(batch_size * (src_len + tgt_len) / step_s),
        "tgt_tok_s": round(tgt_tok_s), "train_gflop_per_tgt_token": round(flops / 1e9, 3),
        "achieved_tflops": round(tgt_tok_s * flops / 1e12, 2),
        "matmul_peak_tflops": round(peak / 1e12, 2), "mfu": round(tgt_tok_s * flops / peak, 3),
        "peak_memory_gb": round(memory, 2),
        "loss_first": round(losses[0].item(), 3), "loss_last": round(losses[-1].item(), 3),
    }  # fmt: skip


def device_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


def markdown(rows: list[dict]) -> str:
    header = ["experiment", "device", "precision", "batch", "params", "step", "words/s",
              "target tok/s", "MFU", "matmul peak", "peak memory",
              "loss first -> last"]  # fmt: skip
    return markdown_table(header, (
        [r["experiment"], r["device"], r["precision"], r["batch"], f"{r['parameters_m']}M",
         f"{r['step_ms']} ms", f"{r['words_s']:,}", f"{r['tgt_tok_s']:,}", f"{r['mfu']:.1%}",
         f"{r['matmul_peak_tflops']} TFLOP/s", f"{r['peak_memory_gb']} GB",
         f"{r['loss_first']} -> {r['loss_last']}"] for r in rows
    ))  # fmt: skip
