"""Shared test helpers: tiny models, random batches, repository paths."""

from pathlib import Path

import torch

from seq2seq.models.lstm import LSTMSeq2Seq

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
SCRIPTS = ROOT / "scripts"
MULTI30K = ROOT.parent / "shared" / "data" / "multi30k"


def tiny_lstm(src_vocab=11, tgt_vocab=13, layers=2, hidden=32, seed=0) -> LSTMSeq2Seq:
    """A small random LSTM with peaked output distributions, so searches face real choices."""
    torch.manual_seed(seed)
    model = LSTMSeq2Seq(src_vocab, tgt_vocab, layers, hidden, 8, dropout=0.0, init_range=1.0)
    with torch.no_grad():
        model.out.weight.mul_(3.0)
    return model.eval()


def random_batch(vocab=11, lens=(5, 3, 7, 1), seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.zeros(len(lens), max(lens), dtype=torch.long)
    for i, n in enumerate(lens):
        src[i, :n] = torch.randint(4, vocab, (n,), generator=g)
    return src, torch.tensor(lens)
