"""The deep LSTM encoder-decoder of Sutskever, Vinyals & Le (2014), "Sequence to Sequence
Learning with Neural Networks".

One LSTM reads the (optionally reversed) source; its final (h, c) of *every* layer becomes the
initial state of the matching decoder layer (§3.4: "deep LSTMs with 4 layers"; the paper
hands over the whole state, where many toolkits pass only the top layer); a second LSTM
predicts the target with a softmax over the target vocabulary. No attention.
Paper sizes (§3.4): 4 layers, 1000 cells, 1000-dim embeddings, 160k/80k vocabularies,
uniform init in [-0.08, 0.08] -> 384M parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from seq2seq.models.interface import State


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
    ) -> None:
        super().__init__()
        self.num_layers, self.hidden_size = num_layers, hidden_size
        self.src_embed = nn.Embedding(src_vocab_size, embed_dim, padding_idx=pad_id)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, embed_dim, padding_idx=pad_id)
        inter_layer = dropout if num_layers > 1 else 0.0
        self.encoder = nn.LSTM(embed_dim, hidden_size, num_layers, batch_first=True,
                               dropout=inter_layer)  # fmt: skip
        self.decoder = nn.LSTM(embed_dim, hidden_size, num_layers, batch_first=True,
                               dropout=inter_layer)  # fmt: skip
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, tgt_vocab_size)
        # §3.4: "We initialized all of the LSTM's parameters with the uniform distribution
        # between -0.08 and 0.08" (embeddings and softmax included).
        for p in self.parameters():
            nn.init.uniform_(p, -init_range, init_range)
        with torch.no_grad():  # keep padding rows at zero as nn.Embedding would
            self.src_embed.weight[pad_id].zero_()
            self.tgt_embed.weight[pad_id].zero_()

    def encode(self, src: Tensor, src_lens: Tensor) -> State:
        x = self.dropout(self.src_embed(src))  # (B, S, E)
        # Packing makes each sentence's final state the one at its own last token, so padding
        # never changes a real sentence's result.
        packed = pack_padded_sequence(x, src_lens.cpu(), batch_first=True, enforce_sorted=False)
        _, (h, c) = self.encoder(packed)  # (L, B, H) each
        return {"h": h.transpose(0, 1), "c": c.transpose(0, 1)}  # batch-first: (B, L, H)

    def _decode(self, tgt_in: Tensor, state: State) -> tuple[Tensor, State]:
        h0 = state["h"].transpose(0, 1).contiguous()  # (L, B, H)
        c0 = state["c"].transpose(0, 1).contiguous()
        y, (h, c) = self.decoder(self.dropout(self.tgt_embed(tgt_in)), (h0, c0))  # (B, T, H)
        logits = self.out(self.dropout(y))  # (B, T, V)
        return logits, {"h": h.transpose(0, 1), "c": c.transpose(0, 1)}

    def forward(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
        # The whole target in one nn.LSTM call; padding at the end of a target cannot reach
        # its earlier positions, so no packing is needed on this side.
        logits, _ = self._decode(tgt_in, self.encode(src, src_lens))
        return logits

    def decode_step(self, prev: Tensor, state: State) -> tuple[Tensor, State]:
        logits, state = self._decode(prev.unsqueeze(1), state)  # (B, 1, V)
        return logits.squeeze(1).log_softmax(-1), state
