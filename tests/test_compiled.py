import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters

from seq2seq.errors import UserError
from seq2seq.loss import teacher_forced_losses
from seq2seq.models.compiled import compile_backend, compile_features
from tests.helpers import tiny_lstm
from tests.test_transformer import tiny_transformer


@pytest.mark.parametrize(
    "setting,backend", [(False, None), (None, None), (True, "inductor"), ("eager", "eager")]
)
def test_compile_setting_names_a_backend(setting, backend):
    assert compile_backend(setting) == backend


@pytest.mark.parametrize("setting", ["nope", 1])
def test_unknown_compile_setting_is_one_line(setting):
    with pytest.raises(UserError, match=rf"^compile={setting!r}: expected true, false or a "
                                        r"torch.compile backend \(.*inductor"):  # fmt: skip
        compile_backend(setting)


def lstm_with_dropout() -> nn.Module:
    model = tiny_lstm(layers=3)  # its encoder holds its state through padding on a CPU
    model.encoder.dropout = model.decoder.dropout = 0.3  # between the layers
    return model


@pytest.mark.parametrize(
    "make", [lambda: tiny_transformer(dropout=0.1), lstm_with_dropout], ids=["transformer", "lstm"]
)
def test_compiled_training_step_equals_the_eager_one(make, recwarn):
    """`compile=eager` traces the teacher-forced pass with dynamo (no code generation, so the
    test stays fast): same loss and gradients, dropout included, and the same weights' names;
    the Transformer's positional encodings are computed in the graph, not read from their
    eager cache."""
    batch = {
        "src": torch.tensor([[5, 6, 7, 2], [8, 9, 2, 0]]),
        "src_lens": torch.tensor([4, 3]),
        "tgt_in": torch.tensor([[1, 5, 6], [1, 7, 0]]),
        "tgt_out": torch.tensor([[5, 6, 2], [7, 2, 0]]),
    }
    results = []
    for setting in (False, "eager"):
        model = compile_features(make().train(), setting)
        counters.clear()
        torch.manual_seed(0)
        loss, _ = teacher_forced_losses(model, batch, label_smoothing=0.1)
        loss.backward()
        results.append((loss, {n: p.grad for n, p in model.named_parameters()}))
        assert (counters["stats"]["unique_graphs"] > 0) == bool(setting)
    assert not [w for w in recwarn if "lru_cache" in str(w.message)]
    (eager_loss, eager_grads), (compiled_loss, compiled_grads) = results
    torch.testing.assert_close(compiled_loss, eager_loss)
    assert compiled_grads.keys() == eager_grads.keys()
    for name, grad in eager_grads.items():
        torch.testing.assert_close(compiled_grads[name], grad, msg=name)
