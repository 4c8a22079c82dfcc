import copy

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from seq2seq.data.tokenizer import BOS, PAD
from seq2seq.loss import token_losses
from seq2seq.models import lstm as lstm_module
from seq2seq.models.interface import Seq2Seq, prepare_for_inference, select
from seq2seq.models.lstm import (
    InferenceLSTM,
    NoForgetLSTM,
    ResidualStack,
    final_states,
    lstm_cell,
    recurrence,
    run_rnn,
)
from seq2seq.search import generate
from tests.helpers import CONF, random_batch, tiny_lstm


def test_implements_protocol_with_batch_first_state():
    model = tiny_lstm(layers=3, hidden=16)
    assert isinstance(model, Seq2Seq)
    src, lens = random_batch()
    state = model.encode(src, lens)
    assert state["h"].shape == state["c"].shape == (4, 3, 16)  # (B, L, H): every layer


def test_every_encoder_layer_seeds_its_decoder_layer():
    model = tiny_lstm(layers=2)
    src, lens = random_batch()
    state = model.encode(src, lens)
    prev = torch.full((4,), BOS)
    base, _ = model.decode_step(prev, state)
    for layer in range(2):
        changed = {k: v.clone() for k, v in state.items()}
        changed["c"][:, layer] += 1.0
        out, _ = model.decode_step(prev, changed)
        assert not torch.allclose(out, base)


# Every recurrence the model can be built with (README: "LSTM = ResNet rotated 90°").
VARIANTS = [
    {},
    {"residual": True},
    {"cell": "gru"},
    {"cell": "rnn", "residual": True},
    {"cell": "lstm_no_forget"},
    {"cell": "lstm_no_forget", "residual": True},
]


@pytest.mark.parametrize("options", VARIANTS)
def test_step_by_step_decoding_reproduces_teacher_forcing(options):
    model = tiny_lstm(layers=3, **options)
    src, lens = random_batch()
    tgt_in = torch.randint(4, 13, (4, 6))
    tgt_in[:, 0] = BOS
    forced = model(src, lens, tgt_in).log_softmax(-1)
    state = model.encode(src, lens)
    for t in range(tgt_in.size(1)):
        logp, state = model.decode_step(tgt_in[:, t], state)
        torch.testing.assert_close(logp, forced[:, t], rtol=1e-5, atol=1e-5)


def test_one_sigmoid_cell_is_the_lstm_update():
    gates, c = torch.randn(5, 4 * 8) * 3, torch.randn(5, 8)
    i, f, g, o = gates.chunk(4, dim=-1)
    c_ref = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_ref = torch.sigmoid(o) * torch.tanh(c_ref)
    doubled = torch.cat([i, f, 2 * g, o], dim=-1)  # the g rows doubled, as InferenceLSTM has them
    h, c_new = lstm_cell(doubled, c)
    torch.testing.assert_close(c_new, c_ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(h, h_ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("table", [True, False], ids=["table", "embedding_matmul"])
def test_model_prepared_for_inference_encodes_and_decodes_the_same(table, monkeypatch):
    if not table:  # a vocabulary too large for the precomputed first-layer table
        monkeypatch.setattr(lstm_module, "TABLE_BYTES", 0)
    model = tiny_lstm(layers=3)
    fast = prepare_for_inference(copy.deepcopy(model))
    assert isinstance(fast.fast["encoder"], InferenceLSTM)
    assert isinstance(fast.fast["decoder"].inputs[0], nn.Embedding) is table
    src, lens = random_batch(lens=(5, 3, 7, 1, 7, 2))  # final_states' segments
    tgt_in = torch.randint(4, 13, (6, 5), generator=torch.Generator().manual_seed(3))
    tgt_in[:, 0] = BOS
    with torch.no_grad():
        state, fast_state = model.encode(src, lens), fast.encode(src, lens)
        for t in range(tgt_in.size(1)):
            for key in ("h", "c"):
                torch.testing.assert_close(fast_state[key], state[key], rtol=1e-5, atol=1e-5)
            logp, state = model.decode_step(tgt_in[:, t], state)
            fast_logp, fast_state = fast.decode_step(tgt_in[:, t], fast_state)
            torch.testing.assert_close(fast_logp, logp, rtol=1e-5, atol=1e-5)
        for beam in (1, 3):  # the same translations, with states reordered by beam search
            for a, b in zip(generate(fast, src, lens, beam), generate(model, src, lens, beam)):
                assert a.tokens == b.tokens and a.score == pytest.approx(b.score, abs=1e-4)


def test_only_float32_lstms_on_a_cpu_are_rebuilt_and_only_for_inference():
    for options in VARIANTS[1:]:  # residual stacks, GRUs, RNNs, no-forget cells: as trained
        assert prepare_for_inference(tiny_lstm(**options)).fast is None
    assert prepare_for_inference(tiny_lstm().to(torch.bfloat16)).fast is None
    model = tiny_lstm()
    fast = prepare_for_inference(copy.deepcopy(model))
    with torch.no_grad():
        for layer in fast.fast["decoder"].hiddens:
            layer.weight.zero_()  # the rebuilt decoder now differs from the trained one
        fast.train()  # training mode (dropout 0 here) runs the trained recurrences
        src, lens = random_batch()
        prev = torch.full((4,), BOS)
        torch.testing.assert_close(
            fast.decode_step(prev, fast.encode(src, lens))[0],
            model.decode_step(prev, model.encode(src, lens))[0],
        )
    fast.eval()  # with autograd on (eval mode), too: gradients reach the trained weights
    for m in (model.eval(), fast):
        logp, _ = m.decode_step(prev, m.encode(src, lens))
        logp[:, 5].sum().backward()
    torch.testing.assert_close(fast.src_embed.weight.grad, model.src_embed.weight.grad)
    assert fast.src_embed.weight.grad.abs().sum() > 0


def test_select_reorders_state_rows():
    model = tiny_lstm()
    src, lens = random_batch()
    state = model.encode(src, lens)
    picked = select(state, torch.tensor([2, 2, 0]))
    torch.testing.assert_close(picked["h"][1], state["h"][2])
    torch.testing.assert_close(picked["c"][2], state["c"][0])


@pytest.mark.parametrize("options", VARIANTS)
def test_padding_never_changes_a_sentence_loss(options):
    model = tiny_lstm(**options)
    src, lens = random_batch(lens=(5, 2, 7))
    tgt_lens = [4, 6, 2]
    tgt = torch.full((3, 7), PAD)
    for i, n in enumerate(tgt_lens):
        tgt[i, :n] = torch.randint(4, 13, (n,))
    tgt_in = torch.cat([torch.full((3, 1), BOS), tgt[:, :-1]], 1).masked_fill(tgt == PAD, PAD)
    logits = model(src, lens, tgt_in)
    for i, n in enumerate(tgt_lens):
        alone = model(src[i : i + 1, : lens[i]], lens[i : i + 1], tgt_in[i : i + 1, :n])
        batched_loss, _ = token_losses(logits[i : i + 1], tgt[i : i + 1])
        alone_loss, _ = token_losses(alone, tgt[i : i + 1, :n])
        torch.testing.assert_close(batched_loss, alone_loss, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("options", VARIANTS)
@pytest.mark.parametrize("lens", [(5, 2, 7, 2, 5, 1, 7), (4, 4, 4), (3,)])
def test_final_states_by_length_segments_equal_packing(options, lens):
    # The CPU path runs the sentences in segments of time between distinct lengths; packing
    # is the reference. Repeated lengths, one length for all, and one sentence; values and
    # gradients (to the inputs and the weights) must agree.
    rnn = tiny_lstm(layers=3, **options).encoder
    g = torch.Generator().manual_seed(1)
    x = torch.randn(len(lens), max(lens), 8, generator=g)
    lens = torch.tensor(lens)
    seed = torch.randn(3, len(lens), 32, generator=g)  # weights the final states' sum

    def run(fn):
        x_ = x.clone().requires_grad_()
        rnn.zero_grad()
        final = fn(x_)
        finals = final if isinstance(final, tuple) else (final,)
        sum((f * seed).sum() for f in finals).backward()
        weights = [p.grad.clone() for p in rnn.parameters()]
        return [f.detach() for f in finals], x_.grad, weights

    packed = run(lambda x_: rnn(pack_padded_sequence(x_, lens, batch_first=True,
                                                     enforce_sorted=False))[1])  # fmt: skip
    segmented = run(lambda x_: final_states(rnn, x_, lens))
    for ours, ref in zip(segmented, packed):
        for a, b in zip(ours, ref):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for grad, n in zip(segmented[1], lens.tolist()):
        assert grad[n:].abs().sum() == 0  # padding gets no gradient


def test_a_stacked_lstm_holds_its_state_through_padding(monkeypatch):
    # On a CPU a stacked nn.LSTM's encoder runs each layer over the padded batch in one call,
    # padding steps holding the state (`_held_final_states`). Training, with dropout between
    # the layers, must give packing's values and gradients whatever the padding holds, and so
    # must bf16 autocast (against the segments, to bf16's precision).
    torch.manual_seed(0)
    rnn = nn.LSTM(8, 16, 3, batch_first=True, dropout=0.5).train()
    plain = nn.LSTM(8, 16, 3, batch_first=True).train()
    plain.load_state_dict(rnn.state_dict())
    lens = torch.tensor([5, 2, 7, 2, 1])
    pad = (torch.arange(7) >= lens[:, None]).unsqueeze(-1)
    x = torch.randn(5, 7, 8).masked_fill(pad, 0.0)
    seed = torch.randn(3, 5, 16)

    def run(module, fn, x):
        x = x.clone().requires_grad_()
        module.zero_grad()
        h, c = fn(x)
        ((h.float() * seed).sum() + (c.float() * seed).square().sum()).backward()
        return [h, c, x.grad] + [p.grad.clone() for p in module.parameters()]

    calls = []
    monkeypatch.setattr(lstm_module.Dropout, "forward", lambda self, t: calls.append(1) or t)
    held = run(rnn, lambda x_: final_states(rnn, x_, lens), x.masked_fill(pad, 1e6))
    assert len(calls) == 2  # between the 3 layers
    packed = run(plain, lambda x_: plain(pack_padded_sequence(x_, lens, True, False))[1], x)
    for got, want in zip(held, packed, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert held[2][pad.expand_as(x)].abs().sum() == 0  # padding gets no gradient
    with torch.autocast("cpu", torch.bfloat16):
        held = run(rnn, lambda x_: final_states(rnn, x_, lens), x)
        segments = run(rnn, lambda x_: lstm_module._segments(rnn, x_, lens), x)
    assert held[0].dtype == torch.bfloat16
    for got, want in zip(held, segments, strict=True):
        torch.testing.assert_close(got.float(), want.float(), rtol=2e-2, atol=2e-2)


def test_sutskever2014_has_384M_parameters():
    # §3.4: "The resulting LSTM has 384M parameters" with 160k source / 80k target words.
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=sutskever2014"])
    with torch.device("meta"):
        model = instantiate(cfg.model, src_vocab_size=160_000, tgt_vocab_size=80_000)
    n = sum(p.numel() for p in model.parameters())
    assert 383e6 < n < 385e6, n


def test_state_holds_what_the_cell_has():
    src, lens = random_batch()
    assert set(tiny_lstm(layers=3, cell="gru").encode(src, lens)) == {"h"}
    state = tiny_lstm(layers=3, cell="lstm_no_forget").encode(src, lens)
    assert state["h"].shape == state["c"].shape == (4, 3, 32)


def test_residual_stack_without_residuals_is_the_fused_lstm():
    torch.manual_seed(0)
    fused = nn.LSTM(8, 16, 3, batch_first=True)
    stack = recurrence("lstm", 8, 16, 3, dropout=0.0, residual=False)
    assert isinstance(stack, nn.LSTM)  # the fast path: one fused call
    layers = [nn.LSTM(8 if i == 0 else 16, 16, 1, batch_first=True) for i in range(3)]
    for i, layer in enumerate(layers):
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(layer, f"{name}_l0").data.copy_(getattr(fused, f"{name}_l{i}"))
    x = torch.randn(2, 5, 8)
    y_fused, (h_fused, c_fused) = fused(x)
    y, (h, c) = ResidualStack(layers, dropout=0.0, residual=False)(x)
    torch.testing.assert_close(y, y_fused)
    torch.testing.assert_close(h, h_fused)
    torch.testing.assert_close(c, c_fused)


def test_run_rnn_draws_a_stacked_lstms_dropout_between_layers(monkeypatch):
    torch.manual_seed(0)
    lstm = nn.LSTM(8, 16, 3, batch_first=True, dropout=0.5)
    plain = nn.LSTM(8, 16, 3, batch_first=True)
    plain.load_state_dict(lstm.state_dict())
    x = torch.randn(4, 5, 8)
    hx = (torch.randn(3, 4, 16), torch.randn(3, 4, 16))

    def results(rnn):
        rnn.zero_grad()
        y, (h, c) = run_rnn(rnn, x, hx)
        (y.square().sum() + h.sum() + c.sum()).backward()
        return [y, h, c] + [p.grad.clone() for p in rnn.parameters()]

    # Without the dropout itself, it is the same stacked LSTM, gradients included.
    calls = []
    monkeypatch.setattr(lstm_module.Dropout, "forward", lambda self, t: calls.append(1) or t)
    for got, want in zip(results(lstm), results(plain), strict=True):
        torch.testing.assert_close(got, want)
    assert len(calls) == 2  # between the 3 layers, not after the last
    monkeypatch.undo()
    # With it, the first layer is untouched and the layers above see dropped inputs.
    y, (h, c) = run_rnn(lstm, x, hx)
    y_plain, (h_plain, c_plain) = plain(x, hx)
    torch.testing.assert_close(h[0], h_plain[0])
    torch.testing.assert_close(c[0], c_plain[0])
    assert not torch.allclose(h[1:], h_plain[1:]) and not torch.allclose(y, y_plain)
    # Evaluating, it is nn.LSTM's own call.
    lstm.eval()
    for got, want in zip(run_rnn(lstm, x, hx), lstm(x, hx)):
        torch.testing.assert_close(got, want)


def test_residual_adds_each_stacked_layers_input():
    torch.manual_seed(0)
    stack = recurrence("gru", 8, 16, 3, dropout=0.0, residual=True)
    x = torch.randn(2, 5, 8)
    y0, _ = stack.layers[0](x)  # the first layer reads embeddings: no residual
    y1 = stack.layers[1](y0)[0] + y0
    y2 = stack.layers[2](y1)[0] + y1
    torch.testing.assert_close(stack(x)[0], y2)


def test_lstm_without_forget_gate_matches_a_hand_computed_step():
    torch.manual_seed(0)
    cell = NoForgetLSTM(3, 2)
    x, h0, c0 = torch.randn(1, 1, 3), torch.randn(1, 1, 2), torch.randn(1, 1, 2)
    W, b, U = cell.ih.weight, cell.ih.bias, cell.hh.weight  # rows: gates i, g, o
    z = x[0, 0] @ W.T + b + h0[0, 0] @ U.T
    i, g, o = torch.sigmoid(z[0:2]), torch.tanh(z[2:4]), torch.sigmoid(z[4:6])
    c1 = c0[0, 0] + i * g  # c_t = c_{t-1} + i_t * g_t: nothing is forgotten
    h1 = o * torch.tanh(c1)
    y, (h, c) = cell(x, (h0, c0))
    torch.testing.assert_close(c[0, 0], c1)
    torch.testing.assert_close(h[0, 0], h1)
    torch.testing.assert_close(y[0, 0], h1)


def test_unknown_cell_is_a_clear_error():
    with pytest.raises(ValueError, match="model.cell='lstmm': expected one of lstm, gru, rnn"):
        tiny_lstm(cell="lstmm")
