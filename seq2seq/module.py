"""The LightningModule: loss, optimisers, validation BLEU, self-contained checkpoints."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import Tensor, nn

from seq2seq.data.tokenizer import PAD, Tokenizer
from seq2seq.errors import UserError
from seq2seq.loss import teacher_forced_losses
from seq2seq.metrics import corpus_bleu
from seq2seq.models.compiled import compile_features
from seq2seq.search import generate

log = logging.getLogger(__name__)


def _gather(obj: Any) -> list[Any]:
    """`obj` from every rank, in rank order (`[obj]` outside distributed training)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [obj]
    gathered: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


class TranslationModule(pl.LightningModule):
    """Trains any `Seq2Seq` model; carries what is needed to rebuild it into its checkpoints."""

    def __init__(
        self,
        model_config: dict,
        tokenizer: Tokenizer,
        data_config: dict,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        label_smoothing: float = 0.0,
        loss_per: str = "token",
        val_decode: dict | None = None,
        nonfinite: str = "stop",
        loss_chunk: int = 512,
        compile: bool | str = False,
    ) -> None:
        super().__init__()
        if loss_per not in ("token", "sentence"):
            raise ValueError(f"optim.loss_per={loss_per!r}: use 'token' or 'sentence'")
        if nonfinite not in ("stop", "skip"):
            raise ValueError(f"optim.nonfinite={nonfinite!r}: use 'stop' or 'skip'")
        self.nonfinite, self.skipped = nonfinite, 0
        self._loss: Tensor | None = None  # the last training loss, read only when it diverged
        self._resume_rng: Tensor | None = None
        self._resume_cuda_rng: Tensor | None = None
        self.model_config, self.data_config = model_config, data_config
        self.model: nn.Module = compile_features(instantiate(model_config), compile)
        self.tokenizer = tokenizer
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.label_smoothing, self.loss_per = label_smoothing, loss_per
        self.loss_chunk = loss_chunk  # target tokens per chunk of the fused loss; 0: logits
        self.val_decode = dict(val_decode or {})
        # validation example id -> (hypothesis ids, summed NLL, reference tokens)
        self._val_results: dict[int, tuple[list[int], float, int]] = {}
        self.bleu_signature: str | None = None
        self._tick: float | None = None

    def forward(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
        return self.model(src, src_lens, tgt_in)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss, nll = teacher_forced_losses(self.model, batch, self.label_smoothing, self.loss_chunk)
        nll = nll.sum()
        self._loss = loss.detach()
        ntokens = batch["ntokens"]
        denom = ntokens if self.loss_per == "token" else batch["src"].size(0)
        token_nll = nll.detach() / ntokens
        self.log("train/loss", token_nll, prog_bar=True)
        self.log("train/ppl", token_nll.exp())
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        now = time.perf_counter()
        if self._tick is not None:
            self.log("train/tok_s", ntokens / (now - self._tick), prog_bar=True)
        self._tick = now
        return loss / denom

    def optimizer_zero_grad(
        self, epoch: int, batch_idx: int, optimizer: torch.optim.Optimizer
    ) -> None:
        """On a CPU, gradients are zeroed in place and kept, rather than freed and allocated
        anew in the middle of the next backward pass (torch's default): there glibc placed
        them among the step's short-lived activations, whose freed space it could then not
        reuse whole, and the heap grew over the steps. The speed benchmark's model B in bf16
        peaked at 1.73 instead of 1.89 GB, at the same speed (docs/speed.md). A GPU's caching
        allocator has no such trouble, and freeing saves the gradients' memory during forward."""
        optimizer.zero_grad(set_to_none=self.device.type != "cpu")

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """One pass over the gradients: their global norm clips them (if asked) and feeds the
        divergence guard (a NaN loss shows up here too, as a NaN gradient norm)."""
        params = [p for p in self.parameters() if p.grad is not None]
        grads = [p.grad for p in params]
        if not grads:
            return
        if gradient_clip_val and gradient_clip_algorithm != "norm":
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
        norm = torch.nn.utils.get_total_norm(grads)
        if self.trainer.precision != "16-mixed" and not torch.isfinite(norm):
            # fp16's loss scaler skips non-finite steps itself, so only other precisions get here
            loss = float(self._loss) if self._loss is not None else float("nan")
            if math.isfinite(loss):
                self._nonfinite("gradient norm", float(norm))
            else:
                self._nonfinite("loss", loss)
            for p in self.parameters():  # Adam and SGD leave parameters without .grad untouched
                p.grad = None
        elif gradient_clip_val and gradient_clip_algorithm == "norm":
            # (it takes the parameters: given their gradients, whose own .grad is None, it
            # clipped nothing)
            torch.nn.utils.clip_grads_with_norm_(params, gradient_clip_val, norm)

    def _nonfinite(self, what: str, value: float) -> None:
        """Divergence guard: stop with the step named, or skip the update and count it."""
        step = self.trainer.global_step
        if self.nonfinite == "stop":
            raise UserError(
                f"training diverged: {what} is {value} at step {step} (epoch "
                f"{self.current_epoch}); the checkpoints written so far are kept. Lower "
                "optim.optimizer.lr, or set optim.nonfinite=skip to skip such updates"
            )
        self.skipped += 1
        log.warning("skipped the update at step %d: %s is %s (%d skipped)", step, what, value,
                    self.skipped)  # fmt: skip
        self.log("train/skipped", float(self.skipped))

    def on_train_epoch_start(self) -> None:
        self._tick = None
        # Lightning only forwards set_epoch to samplers, not to a batch sampler: reshuffle here
        # (this runs before the epoch's iterator is created; resumed runs get the right epoch).
        batch_sampler = getattr(self.trainer.train_dataloader, "batch_sampler", None)
        if hasattr(batch_sampler, "set_epoch"):
            batch_sampler.set_epoch(self.current_epoch)

    def on_validation_epoch_start(self) -> None:
        self._val_results = {}
        self._tick = None  # keep validation time out of the training throughput

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        _, nll = teacher_forced_losses(self.model, batch, chunk=self.loss_chunk)
        nll = nll.sum(-1)  # (B,)
        ntokens = (batch["tgt_out"] != PAD).sum(-1)
        hyps = generate(self.model, batch["src"], batch["src_lens"], **self.val_decode)
        for i, h, n, t in zip(batch["idx"].tolist(), hyps, nll.tolist(), ntokens.tolist()):
            self._val_results[i] = (h.tokens, n, t)

    def on_validation_epoch_end(self) -> None:
        # Each rank validated its shard: BLEU and loss are over the whole set. Ids repeated by
        # the sampler's wrap-around (equal batch counts per rank) count once.
        results = {i: r for shard in _gather(self._val_results) for i, r in shard.items()}
        if not results:
            return
        idx = sorted(results)
        hyps = self.tokenizer.decode_tgt([results[i][0] for i in idx])
        refs = self.trainer.datamodule.valid_refs
        bleu, signature = corpus_bleu(hyps, [refs[i] for i in idx])
        if self.bleu_signature is None and not self.trainer.sanity_checking:
            self.bleu_signature = signature
            log.info("val/bleu is sacreBLEU %s", signature)
        loss = sum(results[i][1] for i in idx) / max(sum(results[i][2] for i in idx), 1)
        self.log("val/loss", loss, prog_bar=True)
        self.log("val/ppl", math.exp(min(loss, 50.0)))
        self.log("val/bleu", bleu, prog_bar=True)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        batches = len(self.trainer.datamodule.train_dataloader())
        steps_per_epoch = max(1, math.ceil(batches / self.trainer.accumulate_grad_batches))
        scheduler = self.scheduler_factory(optimizer, steps_per_epoch=steps_per_epoch)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Everything evaluate/translate need travels inside: model arguments, tokenizer bytes,
        # data settings (language pair, reversal). Plain types only (weights_only loading).
        checkpoint["seq2seq"] = {
            "model": self.model_config,
            "tokenizer": self.tokenizer.state_dict(),
            "data": self.data_config,
            "val_decode": self.val_decode,
        }
        # The RNG (dropout) of every rank for exact resumption; Lightning saves where the epoch
        # stands. Every rank runs this hook (rank 0 alone writes the file).
        resume = {"torch_rng_per_rank": _gather(torch.get_rng_state())}
        if self.device.type == "cuda":  # dropout on a GPU draws from the GPU's own generator
            resume["cuda_rng_per_rank"] = _gather(torch.cuda.get_rng_state(self.device))
        checkpoint["seq2seq_resume"] = resume

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        resume = checkpoint.get("seq2seq_resume")
        if resume:
            # (checkpoints written before the per-rank list hold rank 0's state alone)
            per_rank = resume.get("torch_rng_per_rank") or [resume["torch_rng"]]
            rank = self.trainer.global_rank
            if len(per_rank) != self.trainer.world_size:
                log.warning("checkpoint from %d ranks resumed on %d: every rank continues with "
                            "rank 0's RNG", len(per_rank), self.trainer.world_size)  # fmt: skip
                rank = 0
            self._resume_rng = per_rank[rank]
            cuda = resume.get("cuda_rng_per_rank")  # gathered with per_rank: the same ranks
            self._resume_cuda_rng = cuda[rank] if cuda else None
        # Lightning restores its loop counters, not the data position, and does not call
        # on_train_epoch_start mid-epoch: the datamodule's next sampler continues the epoch.
        progress = checkpoint.get("loops", {}).get("fit_loop", {})
        done = progress.get("epoch_loop.batch_progress", {}).get("current", {}).get("processed")
        datamodule = self.trainer.datamodule
        if done and hasattr(datamodule, "resume_at"):
            datamodule.resume_at = (checkpoint["epoch"], done)
            log.info("resuming epoch %d after its first %d batches", *datamodule.resume_at)

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        # Restored only now, after the sanity-check validation (which a run never stopped did
        # not run here); the data loaders draw from generators of their own.
        if self._resume_rng is not None:
            torch.set_rng_state(self._resume_rng)
            self._resume_rng = None
        if self._resume_cuda_rng is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(self._resume_cuda_rng, self.device)
        self._resume_cuda_rng = None
        if getattr(self.trainer.datamodule, "resume_at", None) is not None:
            self.trainer.datamodule.resume_at = None  # the epoch's iterator exists: done
