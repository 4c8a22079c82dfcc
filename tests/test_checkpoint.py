import copy
import subprocess
import sys
import types
from datetime import timedelta

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from seq2seq.checkpoint import (
    average_checkpoints,
    last_checkpoints,
    load_checkpoint,
    load_models,
    save_checkpoint,
)
from seq2seq.data.batching import collate, encode_sources
from seq2seq.data.tokenizer import EOS
from seq2seq.errors import UserError
from seq2seq.train import PeriodicCheckpoint, ValidateAfterStep
from seq2seq.translate import translate_texts
from tests.helpers import tiny_setup


def test_checkpoint_round_trip_gives_identical_translations(tmp_path):
    dm, module, trainer = tiny_setup(300, hidden=32, max_steps=3)
    trainer.fit(module, datamodule=dm)
    with torch.no_grad():  # an untrained model would end every output at once
        module.model.out.bias[EOS] = -5.0
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)

    loaded = load_checkpoint(path)
    assert loaded.data["reverse_source"] is True
    texts = [s for s, _ in dm.source.pairs("test")[:40]]
    module.model.eval()
    before = translate_texts(module.model, module.tokenizer, texts, True, beam_size=3)
    after = translate_texts(loaded.model, loaded.tokenizer, texts, True, beam_size=3)
    assert before == after and any(before)
    for k, v in module.model.state_dict().items():
        assert torch.equal(v, loaded.model.state_dict()[k])

    # precision=bf16: bf16 weights, a float32 softmax, mostly the same translations
    fast = load_models(str(path), precision="bf16")
    assert all(p.dtype == torch.bfloat16 for p in fast.model.parameters())
    state = fast.model.encode(*_first(dm, fast))
    logp, _ = fast.model.decode_step(torch.full((2,), 1), state)
    assert logp.dtype == torch.float32
    bf16 = translate_texts(fast.model, fast.tokenizer, texts, True, beam_size=3)
    assert sum(a == b for a, b in zip(before, bf16)) >= 0.8 * len(texts)
    # precision=int8: int8 matmul weights, float32 log-probabilities, mostly the same translations
    int8 = load_models(str(path), precision="int8")
    assert not isinstance(int8.model.out, torch.nn.Linear)  # its dynamically quantized version
    logp, _ = int8.model.decode_step(torch.full((2,), 1), int8.model.encode(*_first(dm, int8)))
    assert logp.dtype == torch.float32
    quantized = translate_texts(int8.model, int8.tokenizer, texts, True, beam_size=3)
    assert sum(a == b for a, b in zip(before, quantized)) >= 0.8 * len(texts)
    with pytest.raises(UserError, match="precision=16: expected one of 32, bf16, int8"):
        load_models(str(path), precision="16")


def _first(dm, loaded):
    """The first two test sources, encoded and batched."""
    data = encode_sources(loaded.tokenizer, [s for s, _ in dm.source.pairs("test")[:2]], True)
    batch = collate([data[0], data[1]])
    return batch["src"], batch["src_lens"]


def test_trainer_reshuffles_batches_every_epoch():
    seen: list[list[int]] = [[], []]

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen[trainer.current_epoch].append(batch["idx"][0].item())

    dm, module, trainer = tiny_setup(200, hidden=8, max_epochs=2, callbacks=[Record()])
    trainer.fit(module, datamodule=dm)
    assert len(seen[0]) == len(seen[1]) > 5 and seen[0] != seen[1]


def saved_pair(tmp_path):
    """Two checkpoints of one run, three training steps apart."""
    dm, module, trainer = tiny_setup(300, hidden=16, max_steps=3)
    trainer.fit(module, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "a.ckpt")
    more = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      limit_val_batches=0, max_steps=3)  # fmt: skip
    more.fit(module, datamodule=dm)  # three more steps on the same weights
    more.save_checkpoint(tmp_path / "b.ckpt")
    return tmp_path / "a.ckpt", tmp_path / "b.ckpt"


def test_averaging_is_the_mean_and_loads(tmp_path):
    a, b = saved_pair(tmp_path)
    same = average_checkpoints([a, a])
    for k, v in torch.load(a, weights_only=True)["state_dict"].items():
        assert torch.equal(same["state_dict"][k], v), k  # two copies: the same weights

    out = save_checkpoint(average_checkpoints([a, b]), tmp_path / "avg" / "avg.ckpt")
    assert not list(out.parent.glob("*.tmp"))
    wa, wb = (load_checkpoint(p).model.state_dict() for p in (a, b))
    averaged = load_checkpoint(out)
    for k, v in averaged.model.state_dict().items():
        torch.testing.assert_close(v, (wa[k] + wb[k]) / 2)
    assert not torch.equal(wa["out.weight"], wb["out.weight"])  # the steps changed the weights
    texts = ["The museum opens on Monday at 9:00 AM."]
    assert translate_texts(averaged.model, averaged.tokenizer, texts, True, beam_size=2)


def test_averaging_refuses_different_models(tmp_path):
    a, _ = saved_pair(tmp_path)
    dm, module, trainer = tiny_setup(300, hidden=24, max_steps=1)
    trainer.fit(module, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "other.ckpt")
    with pytest.raises(UserError, match="other.ckpt: a different model"):
        average_checkpoints([a, tmp_path / "other.ckpt"])
    with pytest.raises(UserError, match="asked for the last 3 checkpoints"):
        last_checkpoints(tmp_path, 3)


def test_checkpoints_that_do_not_load_are_one_line_errors(tmp_path):
    dm, module, trainer = tiny_setup(300, hidden=16, max_steps=1)
    trainer.fit(module, datamodule=dm)
    good = tmp_path / "good.ckpt"
    trainer.save_checkpoint(good)
    ckpt = torch.load(good, weights_only=True)

    def error_for(change):
        bad = tmp_path / "bad.ckpt"
        torch.save(change(copy.deepcopy(ckpt)), bad)
        with pytest.raises(UserError) as e:
            load_checkpoint(bad)
        return str(e.value).removeprefix(f"ckpt={bad}: ")

    def without(key):
        return lambda c: {k: v for k, v in c.items() if k != key}

    def resized(c):
        c["seq2seq"]["model"]["hidden_size"] = 24  # the config no longer fits the weights
        return c

    def renamed(c):
        c["seq2seq"]["model"]["_target_"] = "seq2seq.models.lstm.NoSuchModel"
        return c

    assert error_for(without("state_dict")) == "an incomplete seq2seq checkpoint (no state_dict)"
    fits = error_for(resized)
    assert fits.startswith("its weights do not fit its model (Error(s) in loading state_dict")
    assert "size mismatch" in fits and "\n" not in fits and len(fits) <= 240
    built = error_for(renamed)
    assert built.startswith("cannot build its model seq2seq.models.lstm.NoSuchModel (")
    with pytest.raises(UserError, match=r"^last=0: must be at least 1$"):
        last_checkpoints(tmp_path, 0)

    other = tmp_path / "en_de.ckpt"  # the same (joint) vocabulary, another language pair
    ckpt["seq2seq"]["data"]["tgt"] = "de"
    torch.save(ckpt, other)
    with pytest.raises(UserError) as e:
        load_models([good, other])
    assert str(e.value) == (f"ckpt={other}: translates en->de, {good} en->fr; ensemble members "
                            "must translate one pair")  # fmt: skip


def test_periodic_checkpoints_only_where_the_optimizer_stepped(monkeypatch):
    """Accumulating over 2 batches in an epoch of 5: a checkpoint that is due (every N minutes,
    whatever the batch) is written after batches 2, 4 and 5, never between two steps."""
    calls = []
    monkeypatch.setattr(ModelCheckpoint, "on_train_batch_end", lambda *a: calls.append(a[-1]))
    trainer = types.SimpleNamespace(accumulate_grad_batches=2, num_training_batches=5)
    periodic = PeriodicCheckpoint(train_time_interval=timedelta(minutes=1))
    for batch_idx in range(5):
        periodic.on_train_batch_end(trainer, None, None, None, batch_idx)
    assert calls == [1, 3, 4]


def test_validation_waits_for_the_optimizer_step():
    """Lightning's validation interval, in batches, rounded up to a multiple of the batches
    accumulated per step, at most the epoch's last batch; left alone where nothing is
    accumulated, it is already a multiple, or validation is not batch-based."""

    def aligned(every, k=2, batches=32, per_epoch=1):
        trainer = types.SimpleNamespace(accumulate_grad_batches=k, val_check_batch=every,
                                        num_training_batches=batches,
                                        check_val_every_n_epoch=per_epoch)  # fmt: skip
        ValidateAfterStep().align(trainer)
        return trainer.val_check_batch

    assert [aligned(e) for e in (1, 3, 4, 15, 31, 32)] == [2, 4, 4, 16, 32, 32]
    assert aligned(7, k=4, batches=30) == 8
    assert aligned(29, k=4, batches=30) == 30  # the last batch steps, whatever the count
    assert aligned(50, k=4, batches=30, per_epoch=None) == 52  # counted over the epochs
    assert aligned(3, k=1) == 3
    assert aligned(float("inf")) == float("inf")  # an iterable dataset: the epoch's end
    assert aligned(None) is None  # time-based validation


def test_decoding_starts_without_lightning():
    """evaluate/translate/score/decode_speed never import Lightning (~7 s of start-up here)."""
    code = (
        "import sys, seq2seq.evaluate, seq2seq.translate, seq2seq.score, seq2seq.decode_speed, "
        "seq2seq.phrases; print([m for m in ('pytorch_lightning', 'lightning_fabric') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
