"""Text in, text out: tokenise, batch by length, search, detokenise, restore the input order."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from torch import nn

from seq2seq.data.batching import BucketBatchSampler, collate, encode_sources
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.errors import UserError
from seq2seq.search import beam_search, generate


@dataclass
class Translation:
    text: str
    score: float  # length-normalised, as the search ranked it
    logprob: float  # sum of token log-probabilities, EOS included


# Source tokens x beams per decoding batch: conf/decode/*.yaml's value for evaluate and translate,
# so that library callers (the speed benchmark among them) decode in the same batches.
MAX_TOKENS = 8000


def translate_nbest(
    model: nn.Module,
    tokenizer: Tokenizer,
    texts: list[str],
    reverse_source: bool,
    max_tokens: int = MAX_TOKENS,
    nbest: int = 1,
    **decode: Any,
) -> list[list[Translation]]:
    """The `nbest` best translations of every text, best first; an empty text gets [].

    A decoding batch holds at most `max_tokens` source tokens times beams (one over-long
    sentence still gets a batch of its own), which bounds the search's memory.
    """
    beam = decode.get("beam_size", 1)
    if beam < 1:
        raise UserError(f"decode.beam_size={beam}: must be at least 1")
    if nbest > beam:
        raise UserError(f"decode.nbest={nbest} needs decode.beam_size >= {nbest} (is {beam})")
    out: list[list[Translation]] = [[] for _ in texts]
    todo = [i for i, t in enumerate(texts) if t.strip()]
    if not todo:
        return out
    data = encode_sources(tokenizer, [texts[i] for i in todo], reverse_source)
    lengths = data.lengths()
    budget = max(max_tokens // beam, max(lengths))
    device = next(model.parameters()).device
    for batch_idx in BucketBatchSampler(lengths, max_tokens=budget, shuffle=False):
        batch = collate([data[i] for i in batch_idx])
        src, src_lens = batch["src"].to(device), batch["src_lens"].to(device)
        if nbest == 1:
            hyps = [[h] for h in generate(model, src, src_lens, **decode)]
        else:
            hyps = beam_search(model, src, src_lens, nbest=nbest, **decode)
        for i, sentence in zip(batch_idx, hyps):
            texts_out = tokenizer.decode_tgt([h.tokens for h in sentence])
            out[todo[i]] = [Translation(t, h.score, h.logprob) for t, h in zip(texts_out, sentence)]
    return out


def translate_texts(
    model: nn.Module,
    tokenizer: Tokenizer,
    texts: list[str],
    reverse_source: bool,
    max_tokens: int = MAX_TOKENS,
    **decode: Any,
) -> list[str]:
    """The best translation of every text ("" for an empty one); `decode` holds `generate`'s
    options (beam_size, max_len_a, max_len_b, min_len, length_penalty, alpha)."""
    decode.pop("nbest", None)
    best = translate_nbest(model, tokenizer, texts, reverse_source, max_tokens, **decode)
    return [t[0].text if t else "" for t in best]


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
