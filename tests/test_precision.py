"""Precision by hardware: `auto` picks bf16 only where it is native; bf16 asked for on a CPU
without it is a one-line error for training and a warning for decoding."""

import logging

import pytest
import torch

from seq2seq import precision
from seq2seq.benchmark import speed
from seq2seq.benchmark.speed import native_precisions, speed_benchmark
from seq2seq.checkpoint import PRECISIONS
from seq2seq.errors import UserError
from seq2seq.precision import resolve_precision, uses_bf16, warn_if_emulated


@pytest.fixture(params=[True, False], ids=["native-bf16", "no-bf16"])
def native(request, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: request.param)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return request.param


def test_auto_is_bf16_only_where_native(native):
    assert resolve_precision("auto", "cpu") == ("bf16-mixed" if native else "32-true")
    assert resolve_precision("32-true", "cpu") == "32-true"


@pytest.mark.parametrize("asked", ["bf16-mixed", "bf16-true"])
def test_bf16_on_a_cpu_without_it_is_refused(native, asked):
    if native:
        assert resolve_precision(asked, "cpu") == asked
        return
    with pytest.raises(UserError) as err:
        resolve_precision(asked, "cpu")
    message = str(err.value)
    assert message.startswith(f"trainer.precision={asked}: this CPU has no native bf16")
    assert "use trainer.precision=auto or 32-true" in message and "\n" not in message


def test_benchmark_runs_only_native_precisions(native, monkeypatch):
    monkeypatch.setattr(speed, "cpu_has_bf16", lambda: native)
    assert native_precisions() == (["32-true", "bf16-mixed"] if native else ["32-true"])
    if not native:  # refused before any matmul peak or training run
        monkeypatch.setattr(speed, "matmul_peak", lambda **_: pytest.fail("measured"))
        with pytest.raises(UserError, match="bf16-mixed: this CPU has no native bf16"):
            speed_benchmark("nowhere", ["A"], ["32-true", "bf16-mixed"])


def test_decoding_in_emulated_bf16_warns(native, caplog):
    with caplog.at_level(logging.WARNING, logger="seq2seq.precision"):
        warn_if_emulated(PRECISIONS["bf16"], "cpu")
        warn_if_emulated(PRECISIONS["32"], "cpu")
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == (0 if native else 1)
    if warned:  # only the bf16 weights
        assert warned[0].startswith("precision=bf16: this CPU has no native bf16")


def test_uses_bf16():
    assert uses_bf16("bf16-mixed") and uses_bf16("bf16-true")
    assert not uses_bf16("32-true") and not uses_bf16(32) and not uses_bf16("16-mixed")
