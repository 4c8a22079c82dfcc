"""Precision by hardware: `auto` picks bf16 only where it is native; bf16 asked for on a CPU
without it is a one-line error for training and a warning for decoding. int8 decoding: every
matmul layer quantized, log-probabilities close to fp32's, refused where it cannot run."""

import copy
import logging

import pytest
import torch

from seq2seq import precision
from seq2seq.benchmark import speed
from seq2seq.benchmark.speed import native_precisions, speed_benchmark
from seq2seq.checkpoint import PRECISIONS, pick_device
from seq2seq.data.tokenizer import BOS
from seq2seq.ensemble import Ensemble
from seq2seq.errors import UserError
from seq2seq.models.lstm import LSTMSeq2Seq
from seq2seq.models.transformer import TransformerSeq2Seq
from seq2seq.precision import (
    INT8_LAYERS,
    quantize_int8,
    resolve_precision,
    uses_bf16,
    warn_if_emulated,
)
from tests.helpers import random_batch, tiny_lstm
from tests.test_lstm import VARIANTS


@pytest.fixture(params=[True, False], ids=["native-bf16", "no-bf16"])
def native(request, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: request.param)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return request.param


def test_gpus_with_only_emulated_bf16_train_in_fp16(monkeypatch):
    """A pre-Ampere card (V100, T4): torch counts its emulated bf16 as supported unless asked
    for native bf16 only; it trains in fp16 mixed, as documented."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: (
        including_emulation))  # fmt: skip
    assert resolve_precision("bf16-mixed", "gpu") == "16-mixed"
    assert resolve_precision("auto", "gpu") == "16-mixed"


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


def lstm(**options: object) -> LSTMSeq2Seq:
    torch.manual_seed(0)  # weights small enough for the recurrence not to saturate
    return LSTMSeq2Seq(11, 13, 2, 64, 16, init_range=0.1, **options).eval()


def transformer() -> TransformerSeq2Seq:
    torch.manual_seed(0)
    return TransformerSeq2Seq(11, 13, 2, 2, 64, 2, 128, dropout=0.0).eval()


MODELS = {**{f"lstm{o}": lambda o=o: lstm(**o) for o in VARIANTS}, "transformer": transformer,
          "ensemble": lambda: Ensemble([lstm(), transformer()])}  # fmt: skip


@pytest.mark.parametrize("make", MODELS.values(), ids=MODELS.keys())
def test_int8_decoding_stays_close_to_fp32(make):
    model = make()
    int8 = quantize_int8(copy.deepcopy(model))
    left = [type(m).__name__ for m in int8.modules() if isinstance(m, INT8_LAYERS)]
    assert left == [] or set(left) == {"RNN"}  # torch has no int8 nn.RNN: it stays fp32
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in int8.modules())
    src, lens = random_batch(lens=(5, 3, 7, 1, 4, 6, 2, 5))
    tgt_in = torch.tensor([[BOS, 5, 6, 7]] * 8)
    with torch.no_grad():
        steps = []
        for m in (model, int8):
            lp, state = m.decode_step(torch.full((8,), BOS), m.encode(src, lens))
            steps.append(lp)
        full = [m(src, lens, tgt_in).log_softmax(-1) for m in (model, int8)]
    assert steps[1].dtype == torch.float32
    for fp32, q in (steps, full):  # step by step and teacher-forced (scoring)
        gap = (fp32.exp() - q.exp()).abs().max().item()
        assert 0 < gap < 0.02, gap  # changed (quantized), but little
    # Whole translations: README "Speed" (BLEU of trained models), test_checkpoint.py


def test_int8_runs_a_feed_forward_linear_and_its_relu_as_one_layer():
    modules = list(quantize_int8(transformer()).modules())
    fused = torch.ao.nn.intrinsic.quantized.dynamic.LinearReLU
    assert sum(isinstance(m, fused) for m in modules) == 4  # one per layer, 2 + 2
    assert not any(isinstance(m, torch.nn.ReLU) for m in modules)


@pytest.mark.skipif("onednn" not in torch.backends.quantized.supported_engines, reason="no oneDNN")
def test_int8_packs_wide_layers_for_onednn_on_vnni_cpus_with_the_same_numbers(monkeypatch):
    model = LSTMSeq2Seq(50, precision.WIDE_INT8 + 10, 2, 32, 32).eval()  # a wide vocabulary
    src, lens = random_batch(lens=(5, 3, 7, 1))
    calls, quantize = [], torch.ao.quantization.quantize_dynamic

    def recording(module, spec, **kwargs):
        calls.append((torch.backends.quantized.engine, sorted(map(str, spec))))
        return quantize(module, spec, **kwargs)

    monkeypatch.setattr(torch.ao.quantization, "quantize_dynamic", recording)
    logp, default = {}, torch.backends.quantized.engine
    for vnni in (False, True):
        monkeypatch.setattr(torch.cpu, "_is_vnni_supported", lambda v=vnni: v, raising=False)
        calls.clear()
        int8 = quantize_int8(copy.deepcopy(model))
        assert torch.backends.quantized.engine == default  # restored
        with torch.inference_mode():
            logp[vnni] = int8.decode_step(torch.full((4,), BOS), int8.encode(src, lens))[0]
        if vnni:  # the output layer alone first, for oneDNN; the narrow LSTM for the default
            assert calls[0] == ("onednn", ["out"]) and calls[1][0] == default
        else:
            assert [engine for engine, _ in calls] == [default]
    assert isinstance(int8.out, torch.ao.nn.quantized.dynamic.Linear)
    torch.testing.assert_close(logp[True], logp[False], atol=1e-5, rtol=0)  # rounding only


def test_int8_needs_torchs_dynamic_quantization(monkeypatch):
    monkeypatch.delattr(torch.ao.quantization, "quantize_dynamic")  # a torch without it
    with pytest.raises(UserError, match=r"^precision=int8: this torch \(.*\) has no torch.ao"):
        quantize_int8(tiny_lstm())


def test_auto_device_is_the_cpu_for_int8(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto", "int8") == "cpu"
    assert pick_device("auto", "32") == pick_device("auto") == "cuda"
    assert pick_device("cuda", "int8") == "cuda"  # asked for: load_models refuses it in one line
