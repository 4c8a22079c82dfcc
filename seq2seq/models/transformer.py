"""The Transformer of Vaswani et al. (2017), "Attention Is All You Need", behind `Seq2Seq`.

Paper names throughout (§3, §5.4): `d_model`, `nhead`, `dim_feedforward`, sinusoidal positions
(§3.5), embeddings multiplied by sqrt(d_model) (§3.4), residual dropout on every sub-layer and on
the embedding sums, post-norm (LayerNorm(x + Sublayer(x)), the paper's choice) or pre-norm
(`norm_first`, more stable for deep or high-learning-rate runs). The softmax shares its weights with
the target embedding (§3.4); `share_embeddings` also shares them with the source embedding, which
needs a joint vocabulary. Attention runs through `F.scaled_dot_product_attention`, so GPUs use
their fused kernels.

Incremental decoding: `encode` projects the encoder output to keys/values once per decoder layer,
one row per source sentence (`src_k<i>`, `src_v<i>`): a sentence's hypotheses (beams) attend to
them as extra query positions of one attention call, so the keys are never copied per beam.
`decode_step` appends one position to a per-layer key/value cache held in the returned state
(`past_k<i>`, `past_v<i>`, batch-first: `lazy` entries, which the generic `select` reorders
through the state's `rows` and `extend` gathers as they grow, one copy per step). The prefix
is never recomputed; `RecomputePrefix` does recompute it, for tests and for measuring what the
cache saves.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.models.dropout import Dropout
from seq2seq.models.interface import State, extend, hypotheses_per_sentence, output_log_probs


def sinusoids(start: int, length: int, d_model: int, device: torch.device | None = None) -> Tensor:
    """(length, d_model) positional encodings for positions start.. (§3.5, sin/cos interleaved).

    Rows of a table computed once per size (a power of two), width and device, since a decoding
    step needs one row; under torch.compile they are computed in the graph instead.
    """
    if torch.compiler.is_compiling():
        return _sinusoids(start, length, d_model, device)
    size = max(64, 1 << (start + length - 1).bit_length())
    return _position_table(size, d_model, torch.device(device or "cpu"))[start : start + length]


@functools.lru_cache(maxsize=16)
def _position_table(size: int, d_model: int, device: torch.device) -> Tensor:
    with torch.inference_mode(False), torch.no_grad():  # usable by training after decoding
        return _sinusoids(0, size, d_model, device)


def _sinusoids(start: int, length: int, d_model: int, device: torch.device | None) -> Tensor:
    pos = torch.arange(start, start + length, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(
        torch.arange(0, d_model, 2, device=device, dtype=torch.float32)
        * (-math.log(10000.0) / d_model)
    )  # (D/2,)
    pe = torch.zeros(length, d_model, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: d_model // 2])
    return pe


SHORT_QUERY = 16  # query positions up to which a CPU decoding step skips the fused kernel


def plain_attention(q: Tensor) -> bool:
    """Whether `attend` runs in plain matmuls rather than `F.scaled_dot_product_attention`.

    On a CPU, for 16-bit tensors: PyTorch's math kernel widens q, k and v to float32 and its
    flash kernel is slow at NMT lengths (a quick timing on 2 cores, 200 x 4 heads x 20 x 20,
    bf16, forward + backward: 9 ms plain, 20 math, 50 flash; a one-query decoding step with a
    padding mask, 0.7 against 5 ms). And on a CPU without gradients for queries of at most
    `SHORT_QUERY` positions, as in decoding (a new position, or a sentence's beams over its
    source): float32, 570 rows x 4 heads of one query over 10 keys took 0.8 ms plain against
    2.2 fused, 114 x 4 x 5 queries over 14 keys 0.63 against 0.81; from 20 x 20 on, and in
    training, the fused kernel is faster.
    """
    if q.device.type != "cpu":
        return False
    if q.dtype in (torch.bfloat16, torch.float16):
        return True
    return q.size(-2) <= SHORT_QUERY and not q.requires_grad


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    dropout: float = 0.0,
    is_causal: bool = False,
) -> Tensor:
    """Scaled dot-product attention (§3.2.1); `attn_mask` is boolean, True = attend.

    PyTorch's fused kernels, except on a CPU for 16-bit tensors and for decoding steps
    (`plain_attention`): there the two matmuls run as plain matmuls in the inputs' dtype
    (float32 accumulation) and only the scores' softmax in float32.
    """
    if not plain_attention(q):
        return F.scaled_dot_product_attention(q, k, v, attn_mask, dropout, is_causal)
    scores = (q @ k.transpose(-2, -1)).float() * q.size(-1) ** -0.5  # (B, H, T, S)
    if is_causal:
        T, S = scores.shape[-2:]  # query i sees keys 0..i, as F.scaled_dot_product_attention
        future = torch.ones(T, S, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    weights = F.dropout(scores.softmax(-1), dropout) if dropout else scores.softmax(-1)
    return weights.to(q.dtype) @ v


def split_heads(x: Tensor, nhead: int) -> Tensor:
    B, T, D = x.shape
    return x.view(B, T, nhead, D // nhead).transpose(1, 2)  # (B, H, T, D/H)


def merge_heads(x: Tensor) -> Tensor:
    B, H, T, Dh = x.shape
    return x.transpose(1, 2).reshape(B, T, H * Dh)  # (B, T, D)


class SelfAttention(nn.Module):
    """Multi-head self-attention; with `past` (keys, values, rows: see `extend`) one new
    position x attends over the past's rows `rows` and itself."""

    def __init__(self, d_model: int, nhead: int, dropout: float) -> None:
        super().__init__()
        if d_model % nhead:
            raise ValueError(f"model.d_model={d_model} is not divisible by model.nhead={nhead}")
        self.nhead, self.dropout = nhead, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)  # one matmul for queries, keys and values
        self.out = nn.Linear(d_model, d_model)

    def forward(
        self,
        x: Tensor,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        past: tuple[Tensor, Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        q, k, v = (split_heads(t, self.nhead) for t in self.qkv(x).chunk(3, dim=-1))
        if past is not None:  # one new position attends to every earlier one: no mask needed
            k, v = extend(past[0], past[2], k), extend(past[1], past[2], v)
        y = attend(q, k, v, attn_mask, self.dropout if self.training else 0.0, is_causal)
        return self.out(merge_heads(y)), (k, v)


class CrossAttention(nn.Module):
    """Multi-head attention from the decoder to encoder keys/values computed once by `memory_kv`,
    one row per source sentence; x may hold several hypotheses (consecutive rows) per sentence."""

    def __init__(self, d_model: int, nhead: int, dropout: float) -> None:
        super().__init__()
        self.nhead, self.dropout = nhead, dropout
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def memory_kv(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        k, v = self.kv(memory).chunk(2, dim=-1)  # contiguous: every decoding step reads them
        return split_heads(k, self.nhead).contiguous(), split_heads(v, self.nhead).contiguous()

    def forward(self, x: Tensor, memory_kv: tuple[Tensor, Tensor], attn_mask: Tensor) -> Tensor:
        rows, T, D = x.shape
        n = memory_kv[0].size(0)
        width = hypotheses_per_sentence(rows, n)
        # a sentence's hypotheses become extra query positions over its one copy of the keys
        q = split_heads(self.q(x).reshape(n, width * T, D), self.nhead)
        y = attend(q, *memory_kv, attn_mask, self.dropout if self.training else 0.0)
        return self.out(merge_heads(y).reshape(rows, T, D))


class Sublayers(nn.Module):
    """The residual wiring shared by both layer types: post-norm (paper) or pre-norm."""

    def __init__(self, d_model: int, count: int, dropout: float, norm_first: bool) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(count))
        self.drop, self.norm_first = Dropout(dropout), norm_first

    def enter(self, i: int, x: Tensor) -> Tensor:
        """The sub-layer's input: normalised first under pre-norm."""
        return self.norms[i](x) if self.norm_first else x

    def leave(self, i: int, x: Tensor, y: Tensor) -> Tensor:
        """Residual add of the sub-layer's output y (§5.4 dropout), then post-norm."""
        x = x + self.drop(y)
        return x if self.norm_first else self.norms[i](x)


def feed_forward(d_model: int, dim_feedforward: int) -> nn.Sequential:
    """Position-wise FFN (§3.3); the ReLU runs in place on the first layer's fresh output (one
    (tokens, dim_feedforward) buffer fewer; int8 fuses the two, `fuse_linear_relu`)."""
    return nn.Sequential(
        nn.Linear(d_model, dim_feedforward),
        nn.ReLU(inplace=True),
        nn.Linear(dim_feedforward, d_model),
    )


class Layer(nn.Module):
    """An encoder layer (self-attention, feed-forward) or, with `cross`, a decoder layer
    (masked self-attention, attention over the encoder, feed-forward), §3.1."""

    def __init__(
        self, d_model: int, nhead: int, dim_ff: int, dropout: float, attn_dropout: float,
        norm_first: bool, cross: bool,
    ) -> None:  # fmt: skip
        super().__init__()
        self.self_attn = SelfAttention(d_model, nhead, attn_dropout)
        self.cross_attn = CrossAttention(d_model, nhead, attn_dropout) if cross else None
        self.ff = feed_forward(d_model, dim_ff)
        self.sub = Sublayers(d_model, 3 if cross else 2, dropout, norm_first)

    def forward(
        self,
        x: Tensor,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        past: tuple[Tensor, Tensor, Tensor] | None = None,
        memory_kv: tuple[Tensor, Tensor] | None = None,
        src_attn_mask: Tensor | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x after this layer, and its self-attention keys/values (the decoder's cache)."""
        y, kv = self.self_attn(self.sub.enter(0, x), attn_mask, is_causal, past)
        x = self.sub.leave(0, x, y)
        if self.cross_attn is not None:
            y = self.cross_attn(self.sub.enter(1, x), memory_kv, src_attn_mask)
            x = self.sub.leave(1, x, y)
        last = len(self.sub.norms) - 1
        return self.sub.leave(last, x, self.ff(self.sub.enter(last, x))), kv


class TransformerSeq2Seq(nn.Module):
    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        d_model: int = 512,
        nhead: int = 8,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        norm_first: bool = False,
        share_embeddings: bool = False,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        self.d_model, self.nhead, self.norm_first = d_model, nhead, norm_first
        self.tgt_embed = nn.Embedding(tgt_vocab_size, d_model, padding_idx=pad_id)
        if share_embeddings:
            if src_vocab_size != tgt_vocab_size:
                raise ValueError(
                    f"model.share_embeddings=true needs one joint vocabulary, got "
                    f"{src_vocab_size} source and {tgt_vocab_size} target types "
                    "(set data.joint_vocab=true)"
                )
            self.src_embed = self.tgt_embed
        else:
            self.src_embed = nn.Embedding(src_vocab_size, d_model, padding_idx=pad_id)
        args = (d_model, nhead, dim_feedforward, dropout, attention_dropout, norm_first)
        self.encoder = nn.ModuleList(Layer(*args, cross=False) for _ in range(num_encoder_layers))
        self.decoder = nn.ModuleList(Layer(*args, cross=True) for _ in range(num_decoder_layers))
        # Pre-norm leaves the residual stream unnormalised: one final LayerNorm per stack.
        self.encoder_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.drop = Dropout(dropout)
        self.out = nn.Linear(d_model, tgt_vocab_size, bias=False)
        self.out.weight = self.tgt_embed.weight  # §3.4: softmax tied to the target embedding
        self._init(pad_id)

    def _init(self, pad_id: int) -> None:
        # Xavier for projections; embeddings N(0, d^-1/2), so scaled by sqrt(d) they have unit
        # variance and, tied to the softmax, give logits of unit scale at initialisation.
        for name, p in self.named_parameters():
            if p.dim() == 2 and "embed" not in name:
                nn.init.xavier_uniform_(p)
            elif name.endswith(".bias"):
                nn.init.zeros_(p)
        shared = self.src_embed is self.tgt_embed
        for embed in [self.tgt_embed] if shared else [self.src_embed, self.tgt_embed]:
            nn.init.normal_(embed.weight, std=self.d_model**-0.5)
            with torch.no_grad():
                embed.weight[pad_id].zero_()

    def _embed(self, embed: nn.Embedding, tokens: Tensor, start: int = 0) -> Tensor:
        x = embed(tokens) * math.sqrt(self.d_model)  # (B, T, D)
        pe = sinusoids(start, tokens.size(1), self.d_model, tokens.device)
        return self.drop(x + pe.to(x.dtype))

    def encode(self, src: Tensor, src_lens: Tensor) -> State:
        src_pad = torch.arange(src.size(1), device=src.device) >= src_lens.unsqueeze(1)  # (B, S)
        attn_mask = ~src_pad[:, None, None, :]  # (B, 1, 1, S): True = attend
        x = self._embed(self.src_embed, src)
        for layer in self.encoder:
            x, _ = layer(x, attn_mask)
        memory = self.encoder_norm(x)  # (B, S, D)
        state = {"src_pad": src_pad}
        for i, layer in enumerate(self.decoder):  # src_*: one row per sentence (interface.py)
            state[f"src_k{i}"], state[f"src_v{i}"] = layer.cross_attn.memory_kv(memory)
            B, H, S, Dh = state[f"src_k{i}"].shape
            empty = memory.new_zeros(B, H, 0, Dh)  # the self-attention cache, filled by steps
            state[f"past_k{i}"], state[f"past_v{i}"] = empty, empty
        state["rows"] = torch.arange(B, device=memory.device)  # the caches' row per hypothesis
        return state

    def _decode(self, tgt_in: Tensor, state: State, cached: bool) -> tuple[Tensor, State]:
        """Decoder features (before the softmax's projection) for tgt_in given the state;
        `cached`: tgt_in continues the cached prefix."""
        start = state["past_k0"].size(2) if cached and self.decoder else 0
        x = self._embed(self.tgt_embed, tgt_in, start)
        src_attn_mask = ~state["src_pad"][:, None, None, :]
        new_state = dict(state)
        for i, layer in enumerate(self.decoder):
            memory_kv = (state[f"src_k{i}"], state[f"src_v{i}"])
            past = (state[f"past_k{i}"], state[f"past_v{i}"], state["rows"]) if cached else None
            x, (new_state[f"past_k{i}"], new_state[f"past_v{i}"]) = layer(
                x, is_causal=past is None, past=past, memory_kv=memory_kv,
                src_attn_mask=src_attn_mask,
            )  # fmt: skip
        if cached:  # the grown caches are in row order
            new_state["rows"] = torch.arange(x.size(0), device=x.device)
        return self.decoder_norm(x), new_state  # (B, T, D)

    def features(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing up to the output projection: (B, T, D); `self.out` gives logits."""
        return self._decode(tgt_in, self.encode(src, src_lens), cached=False)[0]

    def forward(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
        return self.out(self.features(src, src_lens, tgt_in))  # (B, T, V)

    def decode_step(self, prev: Tensor, state: State) -> tuple[Tensor, State]:
        y, state = self._decode(prev.unsqueeze(1), state, cached=True)  # (B, 1, D)
        return output_log_probs(self.out, y.squeeze(1)), state


class RecomputePrefix(nn.Module):
    """A Transformer decoded without its cache: every step reruns the decoder over the prefix.

    Slower by design; it exists to test the cache (identical outputs) and to measure its gain.
    """

    def __init__(self, model: TransformerSeq2Seq) -> None:
        super().__init__()
        self.model = model

    def forward(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
        return self.model(src, src_lens, tgt_in)

    def encode(self, src: Tensor, src_lens: Tensor) -> State:
        state = self.model.encode(src, src_lens)
        state["prefix"] = src.new_zeros(src.size(0), 0)  # (B, 0): tokens fed so far
        return state

    def decode_step(self, prev: Tensor, state: State) -> tuple[Tensor, State]:
        prefix = torch.cat([state["prefix"], prev.unsqueeze(1)], dim=1)  # (B, t)
        y, _ = self.model._decode(prefix, state, cached=False)  # (B, t, D)
        logp = output_log_probs(self.model.out, y[:, -1])
        return logp, {**state, "prefix": prefix}
