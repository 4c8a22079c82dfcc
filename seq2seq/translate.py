"""Text in, text out: tokenise, batch by length, search, detokenise, restore the input order."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from torch import nn

from seq2seq.data.batching import BucketBatchSampler, collate
from seq2seq.data.datamodule import encode_sources
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.search import generate


def translate_texts(
    model: nn.Module,
    tokenizer: Tokenizer,
    texts: list[str],
    reverse_source: bool,
    beam_size: int = 1,
    max_len_a: int = 10,
    max_len_b: float = 2.0,
    length_norm: float = 0.0,
    max_tokens: int = 4000,
) -> list[str]:
    """Translate `texts` in batches of <= `max_tokens` source tokens; empty lines stay empty."""
    out = [""] * len(texts)
    todo = [i for i, t in enumerate(texts) if t.strip()]
    if not todo:
        return out
    data = encode_sources(tokenizer, [texts[i] for i in todo], reverse_source)
    lengths = data.lengths()
    budget = max(max_tokens, max(lengths))  # one over-long sentence still gets a batch of its own
    device = next(model.parameters()).device
    for batch_idx in BucketBatchSampler(lengths, max_tokens=budget, shuffle=False):
        batch = collate([data[i] for i in batch_idx])
        hyps = generate(
            model,
            batch["src"].to(device),
            batch["src_lens"].to(device),
            beam_size=beam_size,
            max_len_a=max_len_a,
            max_len_b=max_len_b,
            length_norm=length_norm,
        )
        for i, text in zip(batch_idx, tokenizer.decode_tgt([h.tokens for h in hyps])):
            out[todo[i]] = text
    return out


def translate_stream(lines: Iterable[str], chunk: int = 64, **kwargs: object) -> Iterator[str]:
    """Translate a stream chunk by chunk (kwargs as `translate_texts`), yielding in input order."""
    buffer: list[str] = []
    for line in lines:
        buffer.append(line.rstrip("\n"))
        if len(buffer) == chunk:
            yield from translate_texts(texts=buffer, **kwargs)
            buffer = []
    if buffer:
        yield from translate_texts(texts=buffer, **kwargs)
