"""Text in, text out: tokenise, batch by length, search, detokenise, restore the input order."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from seq2seq.data.batching import BucketBatchSampler, collate, encode_sources
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.errors import UserError
from seq2seq.search import Hypothesis, beam_search, generate


@dataclass
class Translation:
    text: str
    score: float  # length-normalised, as the search ranked it
    logprob: float  # sum of token log-probabilities, EOS included


# Source tokens x beams per decoding batch: conf/decode/*.yaml's value for evaluate and translate,
# so that library callers (the speed benchmark among them) decode in the same batches.
MAX_TOKENS = 8000


def parts_for(inter_threads: int | str, device: torch.device) -> int:
    """How many parts of each decoding batch run at once (`decode.inter_threads`): `auto` is
    2 on a CPU with at least 2 threads, else 1."""
    if inter_threads == "auto":
        return 2 if device.type == "cpu" and torch.get_num_threads() >= 2 else 1
    if not isinstance(inter_threads, int) or isinstance(inter_threads, bool) or inter_threads < 1:
        raise UserError(f"decode.inter_threads={inter_threads!r}: expected auto or an integer >= 1")
    return inter_threads


def inference(search: Callable[[Tensor, Tensor], list], src: Tensor, src_lens: Tensor) -> list:
    """`search(src, src_lens)` under inference mode, in a worker thread of `concurrently`."""
    with torch.inference_mode():  # thread-local: a worker thread does not inherit it
        return search(src, src_lens)


@contextmanager
def concurrently(parts: int) -> Iterator[Callable[..., list]]:
    """`run(search, src, src_lens)`: `search` on `parts` consecutive slices of a batch's sentences
    at once, in threads that share torch's intra-op threads (restored on exit); the results in
    order. A sentence's translation does not depend on its batch (with int8 weights, up to the
    per-batch scale of the quantized inputs), so this is the batch's search, faster on a CPU:
    each op runs on fewer threads, with less to synchronise, while the other part's Python and
    small ops fill the gaps (README "Speed")."""
    threads = torch.get_num_threads()
    if parts == 1:
        yield lambda search, src, src_lens: search(src, src_lens)
        return

    def run(search: Callable[[Tensor, Tensor], list], src: Tensor, src_lens: Tensor) -> list:
        slices = [(s[:, : int(n.max())], n) for s, n in
                  zip(src.tensor_split(parts), src_lens.tensor_split(parts)) if len(n)]  # fmt: skip
        return [h for out in pool.map(lambda a: inference(search, *a), slices) for h in out]

    torch.set_num_threads(max(1, threads // parts))
    try:
        with ThreadPoolExecutor(parts) as pool:
            yield run
    finally:
        torch.set_num_threads(threads)


def translate_nbest(
    model: nn.Module,
    tokenizer: Tokenizer,
    texts: list[str],
    reverse_source: bool,
    max_tokens: int = MAX_TOKENS,
    nbest: int = 1,
    inter_threads: int | str = "auto",
    **decode: Any,
) -> list[list[Translation]]:
    """The `nbest` best translations of every text, best first; an empty text gets [].

    A decoding batch holds at most `max_tokens` source tokens times beams (one over-long
    sentence still gets a batch of its own), which bounds the search's memory. Its sentences
    are searched in `inter_threads` parts at once (`parts_for`, `concurrently`).
    """
    beam = decode.get("beam_size", 1)
    if beam < 1:
        raise UserError(f"decode.beam_size={beam}: must be at least 1")
    if nbest < 1:
        raise UserError(f"decode.nbest={nbest}: must be at least 1")
    if nbest > beam:
        raise UserError(f"decode.nbest={nbest} needs decode.beam_size >= {nbest} (is {beam})")
    device = next(model.parameters()).device
    parts = parts_for(inter_threads, device)
    out: list[list[Translation]] = [[] for _ in texts]
    todo = [i for i, t in enumerate(texts) if t.strip()]
    if not todo:
        return out
    data = encode_sources(tokenizer, [texts[i] for i in todo], reverse_source)
    lengths = data.lengths()
    budget = max(max_tokens // beam, max(lengths))

    def search(src: Tensor, src_lens: Tensor) -> list[list[Hypothesis]]:
        if nbest == 1:
            return [[h] for h in generate(model, src, src_lens, **decode)]
        return beam_search(model, src, src_lens, nbest=nbest, **decode)

    with concurrently(parts) as run:
        for batch_idx in BucketBatchSampler(lengths, max_tokens=budget, shuffle=False):
            batch = collate([data[i] for i in batch_idx])
            hyps = run(search, batch["src"].to(device), batch["src_lens"].to(device))
            for i, sentence in zip(batch_idx, hyps):
                texts_out = tokenizer.decode_tgt([h.tokens for h in sentence])
                out[todo[i]] = [Translation(t, h.score, h.logprob)
                                for t, h in zip(texts_out, sentence)]  # fmt: skip
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
