"""The deep LSTM encoder-decoder of Sutskever, Vinyals & Le (2014), "Sequence to Sequence
Learning with Neural Networks".

One LSTM reads the (optionally reversed) source; its final (h, c) of *every* layer becomes the
initial state of the matching decoder layer (§3.4: "deep LSTMs with 4 layers"; the paper
hands over the whole state, where many toolkits pass only the top layer); a second LSTM
predicts the target with a softmax over the target vocabulary. No attention.
Paper sizes (§3.4): 4 layers, 1000 cells, 1000-dim embeddings, 160k/80k vocabularies,
uniform init in [-0.08, 0.08] -> 384M parameters.

Two options beyond the paper, for the "LSTM = ResNet rotated 90°" analysis (README):
`residual` adds each stacked layer's input to its output (GNMT, Wu et al. 2016), and `cell`
swaps the recurrence: `gru`, `rnn` (tanh), or `lstm_no_forget`, the 1997 LSTM without a forget
gate, whose cell update c_t = c_{t-1} + i_t * g_t is a pure residual stream through time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cache

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from seq2seq.errors import UserError
from seq2seq.models.dropout import Dropout
from seq2seq.models.interface import State, output_log_probs

log = logging.getLogger(__name__)

Hidden = Tensor | tuple[Tensor, Tensor]  # nn.RNN/GRU: h; LSTMs: (h, c); each (L, B, H)


class NoForgetLSTM(nn.Module):
    """One layer of the 1997 LSTM (Hochreiter & Schmidhuber): input and output gates, no forget
    gate, so c_t = c_{t-1} + i_t * g_t and h_t = o_t * tanh(c_t). Takes and returns what a
    one-layer batch-first `nn.LSTM` does (tensor or packed input). FOR ANALYSIS ONLY: a Python
    loop over time steps (a training step took 1.27x `nn.LSTM`'s on a 2-core CPU in bf16; far
    more against cuDNN on a GPU, not measured). README: "LSTM = ResNet rotated 90°"."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.ih = nn.Linear(input_size, 3 * hidden_size)  # gates i, g, o
        self.hh = nn.Linear(hidden_size, 3 * hidden_size, bias=False)

    def forward(
        self, x: Tensor | PackedSequence, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor | PackedSequence, tuple[Tensor, Tensor]]:
        packed = isinstance(x, PackedSequence)
        if packed:
            sequence = x
            x, lens = pad_packed_sequence(x, batch_first=True)  # (B, T, E)
            lens = lens.to(x.device)
        else:
            lens = torch.full((x.size(0),), x.size(1), device=x.device)
        B, T, _ = x.shape
        if hx is None:
            h = c = x.new_zeros(B, self.hidden_size)
        else:
            h, c = hx[0][0], hx[1][0]  # (B, H): the one layer
        xs = self.ih(x)  # (B, T, 3H): the input projection for all steps at once
        ys = []
        for t in range(T):
            i, g, o = (xs[:, t] + self.hh(h)).chunk(3, dim=-1)
            c_t = c + torch.sigmoid(i) * torch.tanh(g)  # no forget gate: a residual in time
            h_t = torch.sigmoid(o) * torch.tanh(c_t)
            running = (t < lens).unsqueeze(1)  # (B, 1): past its end a sentence keeps its state
            h, c = torch.where(running, h_t, h), torch.where(running, c_t, c)
            ys.append(h_t)
        y = torch.stack(ys, dim=1)  # (B, T, H)
        if packed:  # back to packed rows: at step t, the batch_sizes[t] longest sentences
            order = sequence.sorted_indices
            order = torch.arange(B) if order is None else order.cpu()
            rows = [y[order[:n], t] for t, n in enumerate(sequence.batch_sizes.tolist())]
            y = sequence._replace(data=torch.cat(rows))
        return y, (h.unsqueeze(0), c.unsqueeze(0))


CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}

# Largest (vocabulary, 4 x hidden) float32 table `InferenceLSTM` precomputes: Multi30k's 8k x
# 1024 is 32 MiB; the paper's 80k x 4000 (1.3 GB) multiplies instead.
TABLE_BYTES = 256 * 2**20
WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")  # nn.LSTM's, per layer


def lstm_cell(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """The LSTM update from (B, 4H) pre-activations in nn.LSTM's gate order (i, f, g, o), whose
    g quarter is doubled: tanh(x) = 2 sigmoid(2x) - 1, so one sigmoid covers all four gates
    (torch's CPU tanh ran ~4x slower than its sigmoid in a quick timing, 85k floats on 2 cores:
    310 against 75 us). `gates` is overwritten; returns the new (h, c)."""
    i, f, g, o = gates.sigmoid_().chunk(4, dim=-1)
    g.mul_(2).sub_(1)  # tanh of the g pre-activation
    c = torch.addcmul(f * c, i, g)
    h = torch.sigmoid(2 * c).mul_(2).sub_(1).mul_(o)  # o * tanh(c)
    return h, c


class InferenceLSTM(nn.Module):
    """A trained stacked `nn.LSTM` and its input embedding, rebuilt for inference on a CPU
    (`LSTMSeq2Seq.prepare_for_inference`). Called as the `nn.LSTM` on token ids instead of
    embeddings: (B, T) ids and optional (h, c) -> (B, T, H) outputs and the final (h, c), each
    (L, B, H). The same function, laid out for speed:

    - The first layer's input projection (both biases included) of every vocabulary entry is
      precomputed, a (V, 4H) table looked up instead of multiplied (when it fits in
      `TABLE_BYTES`; else the embedding is multiplied as nn.LSTM does).
    - Each layer projects its input at all T positions in one matmul; a step multiplies only h.
    - The g rows of weights and biases are doubled, for `lstm_cell`'s one sigmoid.

    The matmuls are `nn.Linear`s, so `quantize_int8` makes them int8 (the table stays float32).
    """

    def __init__(self, lstm: nn.LSTM, embed: nn.Embedding) -> None:
        super().__init__()
        H, weight = lstm.hidden_size, lstm.weight_hh_l0
        double = torch.ones(4 * H, 1, dtype=weight.dtype, device=weight.device)
        double[2 * H : 3 * H] = 2
        table = embed.num_embeddings * 4 * H * weight.element_size() <= TABLE_BYTES
        self.inputs, self.hiddens = nn.ModuleList(), nn.ModuleList()  # per layer: x, h -> gates
        with torch.no_grad():
            for i in range(lstm.num_layers):
                w_ih, w_hh, b_ih, b_hh = (getattr(lstm, f"{name}_l{i}") for name in WEIGHTS)
                w_ih, bias = w_ih * double, (b_ih + b_hh) * double[:, 0]
                if i == 0 and table:
                    rows = torch.addmm(bias, embed.weight, w_ih.t())  # (V, 4H)
                    self.inputs.append(nn.Embedding.from_pretrained(rows))
                else:
                    linear = _linear(w_ih, bias)
                    self.inputs.append(nn.Sequential(embed, linear) if i == 0 else linear)
                self.hiddens.append(_linear(w_hh * double))

    def forward(
        self, tokens: Tensor, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        y, hs, cs = tokens, [], []
        for i, (inputs, hiddens) in enumerate(zip(self.inputs, self.hiddens)):
            x = inputs(y)  # (B, T, 4H): the input's share of the gates, every position
            if hx is None:
                h = c = x.new_zeros(x.size(0), x.size(2) // 4)
            else:
                h, c = hx[0][i], hx[1][i]
            steps = []
            for t in range(x.size(1)):
                h, c = lstm_cell(hiddens(h).add_(x[:, t]), c)
                steps.append(h)
            y = torch.stack(steps, 1)
            hs.append(h)
            cs.append(c)
        return y, (torch.stack(hs), torch.stack(cs))


def _linear(weight: Tensor, bias: Tensor | None = None) -> nn.Linear:
    """An `nn.Linear` holding (copies of) `weight` (out, in) and `bias`."""
    linear = nn.Linear(weight.size(1), weight.size(0), bias=bias is not None,
                       device=weight.device, dtype=weight.dtype)  # fmt: skip
    linear.weight.copy_(weight)
    if bias is not None:
        linear.bias.copy_(bias)
    return linear


class ResidualStack(nn.Module):
    """Stacked one-layer recurrences with nn.LSTM's call signature, optionally with residual
    connections between layers: x_{l+1} = layer_l(dropout(x_l)) + x_l for every layer above the
    first (GNMT; the first layer's input is the embedding, a different space)."""

    def __init__(self, layers: list[nn.Module], dropout: float, residual: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.dropout = Dropout(dropout)
        self.residual = residual

    def forward(
        self, x: Tensor | PackedSequence, hx: Hidden | None = None
    ) -> tuple[Tensor | PackedSequence, Hidden]:
        finals = []
        for i, layer in enumerate(self.layers):
            layer_hx = None if hx is None else _layer(hx, i)
            inp = x if i == 0 else _map(x, self.dropout)
            y, final = layer(inp, layer_hx)
            if self.residual and i > 0:
                y = _map(y, lambda data, x=x: data + _data(x))
            finals.append(final)
            x = y
        if isinstance(finals[0], tuple):
            return x, (torch.cat([f[0] for f in finals]), torch.cat([f[1] for f in finals]))
        return x, torch.cat(finals)


@cache
def _between(p: float) -> Dropout:
    """The dropout between a stacked LSTM's layers (`run_rnn`, `_held_final_states`): one
    stateless module per probability, not one per call."""
    return Dropout(p)


def run_rnn(
    rnn: nn.Module, x: Tensor | PackedSequence, hx: Hidden | None = None
) -> tuple[Tensor | PackedSequence, Hidden]:
    """`rnn(x, hx)`, except for a stacked `nn.LSTM` training with dropout on a CPU: that one runs
    layer by layer, the same kernels (ATen's CPU LSTM goes layer by layer itself), with
    `Dropout` between the layers instead of nn.LSTM's own, whose `bernoulli_` cost about 4x as
    much per element (torch's profiler, model A of README "Speed": 18 ms of a 440 ms bf16 step).
    Same function; model A's bf16 training step ran 1.5-2.3% faster (three ad-hoc runs of 100
    steps in one process, alternating with the old path's)."""
    if not (_one_way_lstm(rnn) and rnn.training and rnn.dropout and rnn.num_layers > 1
            and isinstance(x, Tensor) and x.device.type == "cpu"):  # fmt: skip
        return rnn(x, hx)
    if hx is None:
        zeros = x.new_zeros(rnn.num_layers, x.size(0 if rnn.batch_first else 1), rnn.hidden_size)
        hx = (zeros, zeros)
    between = _between(rnn.dropout)
    hs, cs = [], []
    for i in range(rnn.num_layers):
        x, h, c = torch.lstm(between(x) if i else x, _layer(hx, i), _weights(rnn, i), rnn.bias, 1,
                             0.0, True, False, rnn.batch_first)  # fmt: skip
        hs.append(h)
        cs.append(c)
    return x, (torch.cat(hs), torch.cat(cs))


def _one_way_lstm(rnn: nn.Module) -> bool:
    """A stacked `nn.LSTM` whose layers `torch.lstm` can run one at a time (`_weights`)."""
    return type(rnn) is nn.LSTM and not rnn.bidirectional and not rnn.proj_size


def _weights(rnn: nn.LSTM, i: int) -> list[Tensor]:
    """Layer i's weights of a `_one_way_lstm`, as `torch.lstm` takes them."""
    return [getattr(rnn, f"{name}_l{i}") for name in (WEIGHTS if rnn.bias else WEIGHTS[:2])]


def _layer(hx: Hidden, i: int) -> Hidden:
    return _each(hx, lambda t: t[i : i + 1])


def _each(hx: Hidden, fn: Callable[[Tensor], Tensor]) -> Hidden:
    """`fn` applied to h, or to each of (h, c)."""
    return (fn(hx[0]), fn(hx[1])) if isinstance(hx, tuple) else fn(hx)


def final_states(rnn: nn.Module, x: Tensor, lens: Tensor) -> Hidden:
    """Every layer's final state of each sentence at its own last position, (L, B, H) as
    nn.LSTM returns it, from right-padded x (B, T, E) (or token ids, (B, T), for an
    `InferenceLSTM`) and lengths `lens` (B,) on the CPU.

    What packing gives, computed so that a CPU runs it fast. A GPU packs: cuDNN runs packed
    input natively. On a CPU packed input takes PyTorch's step-by-step path, where oneDNN runs
    a padded call as one fused kernel: a stacked `nn.LSTM` runs as `_held_final_states` (one
    call per layer over the padded batch), any other recurrence in `_segments`."""
    if x.device.type != "cpu":
        packed = pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
        return run_rnn(rnn, packed)[1]
    if _one_way_lstm(rnn) and rnn.batch_first:
        return _held_final_states(rnn, x, lens)
    return _segments(rnn, x, lens)


# What a padding step's flag adds to the forget gate's pre-activation and takes from the input
# gate's: their sigmoids are then exactly 1 and 0 in any float type (and 2**14 fits in fp16).
HOLD = 2.0**14


def _held_final_states(rnn: nn.LSTM, x: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
    """`final_states` of a stacked nn.LSTM: each layer is one call over the whole padded batch,
    its input widened by a flag, 1 at padding, whose weights shut the input gate (0) and open
    the forget gate (1) there. So from a sentence's end on its cell state c is held exactly
    (c = 1 * c + 0 * g) to the batch's last step, and its h is read at its last token; a
    padding step passes back a gradient of exactly zero, except c's, unchanged. (Exact while
    no gate's pre-activation reaches 2**14 - 104 without the flag.) Same values and gradients
    as packing (a test checks both), and in model A of README "Speed" 1.2x as fast
    as one call per distinct length, whose many short calls oneDNN runs far below its speed on
    long ones (bf16, the encoder's forward and backward over real batches, ad hoc)."""
    (B, T), H = x.shape[:2], rnn.hidden_size
    flag = (torch.arange(T, device=x.device) >= lens[:, None]).unsqueeze(-1)  # (B, T, 1)
    rows, last = torch.arange(B, device=x.device), lens - 1
    hold = rnn.weight_ih_l0.new_zeros(4 * H, 1)  # the flag's weights, gate rows i, f, g, o
    hold[:H], hold[H : 2 * H] = -HOLD, HOLD
    hs, cs = [], []
    for i in range(rnn.num_layers):
        w_ih, *weights = _weights(rnn, i)
        if i and rnn.training and rnn.dropout:
            x = _between(rnn.dropout)(x)
        x = torch.cat([x, flag.to(x.dtype)], -1)
        if i == 0:  # zeroed at padding; the layers above read h, |h| < 1 (before dropout)
            x[..., :-1].masked_fill_(flag, 0.0)
        zeros = x.new_zeros(1, B, H)
        x, _, c = torch.lstm(x, (zeros, zeros),
                             [torch.cat([w_ih, hold], 1), *weights], rnn.bias, 1, 0.0,
                             rnn.training, False, True)  # fmt: skip
        hs.append(x[rows, last])
        cs.append(c[0])
    return torch.stack(hs), torch.stack(cs)


def _segments(rnn: nn.Module, x: Tensor, lens: Tensor) -> Hidden:
    """`final_states` on a CPU for any recurrence: the sentences, longest first, go through
    `rnn` in segments of time between consecutive distinct lengths, each segment one call over
    the sentences still running, from the state the previous one left them in."""
    lens, order = lens.sort(descending=True, stable=True)
    x = x.index_select(0, order)
    ends, counts = torch.unique_consecutive(lens.flip(0), return_counts=True)
    ends = ends.tolist()
    # One split into the segments (views): its backward is one concatenation, where slicing x
    # itself for every segment made a zero gradient the size of all of x per segment.
    segments = x[:, : ends[-1]].split([b - a for a, b in zip([0, *ends], ends)], dim=1)
    finals, hx, running = [], None, x.size(0)
    for segment, count in zip(segments, counts.tolist()):
        _, final = run_rnn(rnn, segment[:running], hx)
        finals.append(_each(final, lambda t, a=running - count, b=running: t[:, a:b]))
        running -= count  # the last `count` sentences ended with this segment
        hx = _each(final, lambda t, b=running: t[:, :b])
    inverse = order.argsort()  # from longest-first back to the batch's order
    parts = zip(*(f if isinstance(f, tuple) else (f,) for f in reversed(finals)))
    joined = tuple(torch.cat(p, 1).index_select(1, inverse) for p in parts)
    return joined if isinstance(final, tuple) else joined[0]


def _data(x: Tensor | PackedSequence) -> Tensor:
    return x.data if isinstance(x, PackedSequence) else x


def _map(x: Tensor | PackedSequence, fn: Callable[[Tensor], Tensor]) -> Tensor | PackedSequence:
    """Apply an elementwise `fn` to a tensor, or to a packed sequence's data (same layout)."""
    return x._replace(data=fn(x.data)) if isinstance(x, PackedSequence) else fn(x)


def recurrence(
    cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float, residual: bool
) -> nn.Module:
    """A stacked recurrence with nn.LSTM's call signature: the fused multi-layer `nn.LSTM`/`GRU`/
    `RNN` (cuDNN on GPU) when it can be, else a `ResidualStack` of one-layer recurrences."""
    if cell not in (*CELLS, "lstm_no_forget"):
        raise UserError(f"model.cell={cell!r}: expected one of {', '.join(CELLS)}, lstm_no_forget")
    if cell == "lstm_no_forget":
        log.warning("model.cell=lstm_no_forget is for analysis: a Python loop over time steps")
    dropout = dropout if num_layers > 1 else 0.0
    if cell in CELLS and not residual:
        return CELLS[cell](input_size, hidden_size, num_layers, batch_first=True, dropout=dropout)
    layers = [
        NoForgetLSTM(size, hidden_size)
        if cell == "lstm_no_forget"
        else CELLS[cell](size, hidden_size, 1, batch_first=True)
        for size in [input_size] + [hidden_size] * (num_layers - 1)
    ]
    return ResidualStack(layers, dropout, residual)


class LSTMSeq2Seq(nn.Module):
    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        num_layers: int = 4,
        hidden_size: int = 1000,
        embed_dim: int = 1000,
        dropout: float = 0.0,
        init_range: float = 0.08,
        pad_id: int = 0,
        cell: str = "lstm",
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.num_layers, self.hidden_size = num_layers, hidden_size
        self.src_embed = nn.Embedding(src_vocab_size, embed_dim, padding_idx=pad_id)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, embed_dim, padding_idx=pad_id)
        args = (cell, embed_dim, hidden_size, num_layers, dropout, residual)
        self.encoder = recurrence(*args)
        self.decoder = recurrence(*args)
        self.dropout = Dropout(dropout)
        self.out = nn.Linear(hidden_size, tgt_vocab_size)
        self.fast: nn.ModuleDict | None = None  # prepare_for_inference
        # §3.4: "We initialized all of the LSTM's parameters with the uniform distribution
        # between -0.08 and 0.08" (embeddings and softmax included).
        for p in self.parameters():
            nn.init.uniform_(p, -init_range, init_range)
        with torch.no_grad():  # keep padding rows at zero as nn.Embedding would
            self.src_embed.weight[pad_id].zero_()
            self.tgt_embed.weight[pad_id].zero_()

    def encode(self, src: Tensor, src_lens: Tensor) -> State:
        # Each sentence's final state is the one at its own last token, so padding never
        # changes a real sentence's result.
        if self.inferring():  # it embeds the ids itself
            return _state(final_states(self.fast["encoder"], src, src_lens.cpu()))
        x = self.dropout(self.src_embed(src))  # (B, S, E)
        return _state(final_states(self.encoder, x, src_lens.cpu()))

    def _decode(self, tgt_in: Tensor, state: State) -> tuple[Tensor, State]:
        """Decoder features (before the softmax's projection) for tgt_in, and the next state."""
        h0 = state["h"].transpose(0, 1).contiguous()  # (L, B, H)
        hx = (h0, state["c"].transpose(0, 1).contiguous()) if "c" in state else h0
        y, final = run_rnn(self.decoder, self.dropout(self.tgt_embed(tgt_in)), hx)  # (B, T, H)
        return self.dropout(y), _state(final)

    def features(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing up to the output projection: (B, T, H); `self.out` gives logits."""
        # The whole target in one recurrence call; padding at the end of a target cannot reach
        # its earlier positions, so no packing is needed on this side.
        return self._decode(tgt_in, self.encode(src, src_lens))[0]

    def forward(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
        return self.out(self.features(src, src_lens, tgt_in))  # (B, T, V)

    def prepare_for_inference(self) -> None:
        """For decoding only, after training (interface.py): float32 `nn.LSTM`s on a CPU are
        rebuilt as `InferenceLSTM`s, which encoding and decoding steps then run. Elsewhere (a
        GPU: cuDNN; bf16; other cells) they keep running the trained recurrences."""
        w = self.decoder.weight_hh_l0 if type(self.decoder) is nn.LSTM else None  # as encoder
        cpu_fp32 = w is not None and w.dtype == torch.float32 and w.device.type == "cpu"
        if self.fast is None and cpu_fp32:
            self.fast = nn.ModuleDict({
                "encoder": InferenceLSTM(self.encoder, self.src_embed),
                "decoder": InferenceLSTM(self.decoder, self.tgt_embed),
            })  # fmt: skip

    def inferring(self) -> bool:
        """Whether encoding and decoding steps run the `InferenceLSTM`s: prepared, in eval
        mode, and without autograd (the rebuilt cells update their gates in place; with
        gradients enabled, as for a saliency map of a loaded model, the trained recurrences
        run)."""
        return self.fast is not None and not self.training and not torch.is_grad_enabled()

    def decode_step(self, prev: Tensor, state: State) -> tuple[Tensor, State]:
        if self.inferring():
            hx = (state["h"].transpose(0, 1), state["c"].transpose(0, 1))
            y, final = self.fast["decoder"](prev.unsqueeze(1), hx)
            return output_log_probs(self.out, y[:, 0]), _state(final)
        y, state = self._decode(prev.unsqueeze(1), state)  # (B, 1, H)
        return output_log_probs(self.out, y.squeeze(1)), state


def _state(final: Hidden) -> State:
    """Batch-first decoder state from a recurrence's final hidden state: h (and c), (B, L, H)."""
    if isinstance(final, tuple):
        return {"h": final[0].transpose(0, 1), "c": final[1].transpose(0, 1)}
    return {"h": final.transpose(0, 1)}
