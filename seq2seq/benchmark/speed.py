"""Training and decoding speed, comparable with the peers' table in the speed issue.

Models: A = LSTM encoder-decoder without attention, 2 layers, 256 embed/hidden; B = Transformer
3+3 layers, d_model 256, 4 heads, FFN 1024. Data: Multi30k en->fr with one joint 8k
sentencepiece vocabulary, batches of ~4096 padded tokens. For each model and precision it
measures, each in a fresh process (peak RSS is per process):

- training target tokens/s in steady state (after `warmup` steps) through `Trainer.fit` (what
  `scripts/train.py` runs) and through a plain PyTorch loop on the same batches;
- model FLOPs utilisation: matmul FLOPs per target token, counted from the architecture
  (`train_flops_per_target_token`), times tokens/s, over the measured matmul peak;
- decoding sentences/s, greedy and beam 5 / 12, every output forced to exactly 20 tokens (and
  output tokens/s, 20 a sentence, in the JSON).

`decode_benchmark` measures decoding alone, for several decoding batch budgets and weight
precisions side by side (`int8`: the fp32 model with int8 matmul weights, `precision=int8`).
"""

from __future__ import annotations

import json
import statistics
import time

import torch

from seq2seq.benchmark import compose_train, in_fresh_process, markdown_table, peak_rss_mb, rounds
from seq2seq.errors import UserError
from seq2seq.models.interface import prepare_for_inference
from seq2seq.precision import (
    cpu_has_bf16,
    quantize_int8,
    refuse_emulated,
    resolve_precision,
    uses_bf16,
)
from seq2seq.translate import MAX_TOKENS

MODELS = {
    "A": ["experiment=multi30k_lstm", "model.hidden_size=256", "model.embed_dim=256",
          "data.batch_size=null", "data.max_tokens=4096"],
    "B": ["experiment=multi30k_transformer"],
}  # fmt: skip
RATES = ("_sent_s", "_tok_s")  # a decoding child's rates, per beam size
LENGTH = 20  # output tokens every decoding is forced to (the peers' too, `scripts/peers.py`)


def matmul_peak(device: str = "cpu", dtype: torch.dtype = torch.float32, n: int = 2048) -> float:
    """Measured FLOP/s of an n x n matmul (best of 5 after a warm-up)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for i in range(6):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        if i:
            best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def train_flops_per_target_token(model_cfg: dict, src_per_tgt: float, tgt_len: float) -> float:
    """Matmul FLOPs of one training step (forward + backward = 3 x forward, 2 FLOPs a
    multiply-add) per target token, with `src_per_tgt` source tokens per target token and
    target sentences of `tgt_len` tokens (for attention scores)."""
    vocab = model_cfg["tgt_vocab_size"]
    if "d_model" in model_cfg:
        d, f = model_cfg["d_model"], model_cfg["dim_feedforward"]
        n_enc, n_dec = model_cfg["num_encoder_layers"], model_cfg["num_decoder_layers"]
        src_len = tgt_len * src_per_tgt
        enc = n_enc * (4 * d * d + 2 * d * f + 2 * d * src_len)  # per source token
        # self-attention scores over the whole (masked) prefix, as dense kernels compute them
        dec = n_dec * (4 * d * d + 2 * d * d + 2 * d * f + 2 * d * tgt_len + 2 * d * src_len)
        cross_kv = n_dec * 2 * d * d  # per source token
        macs = (enc + cross_kv) * src_per_tgt + dec + d * vocab
    else:
        h, e, n = model_cfg["hidden_size"], model_cfg["embed_dim"], model_cfg["num_layers"]
        stack = 4 * h * (e + h) + (n - 1) * 4 * h * (h + h)
        macs = stack * src_per_tgt + stack + h * vocab
    return 6 * macs


def native_precisions() -> list[str]:
    """fp32, and bf16 autocast where this CPU multiplies bf16 natively."""
    return ["32-true", "bf16-mixed"] if cpu_has_bf16() else ["32-true"]


def _peak_rss_gb() -> float:
    return peak_rss_mb()["peak_rss_mb"] / 1024


def train_child(overrides: list[str], loop: str, steps: int, warmup: int) -> dict:
    """In a fresh process: tokens/s of `loop` ('plain' or 'lightning'), peak RSS, FLOPs."""
    from seq2seq.overhead import (
        datamodule_and_model,
        lightning_tokens_per_second,
        plain_tokens_per_second,
    )

    cfg = compose_train(overrides)
    measure = plain_tokens_per_second if loop == "plain" else lightning_tokens_per_second
    tok_s = measure(cfg, steps, warmup)
    datamodule, model_cfg = datamodule_and_model(cfg)
    data = datamodule.train_data  # token counts with EOS (source) and EOS/BOS (target)
    src, tgt = int(data.src_lens.sum()) + len(data), int(data.tgt_lens.sum()) + len(data)
    flops = train_flops_per_target_token(dict(model_cfg), src / tgt, tgt / len(data))
    return {"tok_s": tok_s, "peak_rss_gb": _peak_rss_gb(), "flops_per_token": flops}


def decode_child(
    overrides: list[str], split: str, length: int, beams: list[int], max_tokens: int = MAX_TOKENS,
    int8: bool = False, inter_threads: int | str = "auto",
) -> dict:  # fmt: skip
    """In a fresh process: sentences/s of a (randomly initialised) model, outputs forced to
    `length` tokens, for each beam size (median of 2), and output tokens/s (`length` tokens a
    sentence, EOS not counted), in decoding batches of `max_tokens`
    source tokens x beams; bf16 runs decode with bf16 weights, and `int8` with int8 matmul
    weights (`precision=bf16` and `precision=int8` of evaluate.py and translate.py)."""
    from hydra.utils import instantiate

    from seq2seq.decode_speed import sentences_per_second
    from seq2seq.overhead import datamodule_and_model
    from seq2seq.search import forced_length

    cfg = compose_train(overrides)
    datamodule, model_cfg = datamodule_and_model(cfg)
    torch.manual_seed(0)
    precision = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    bf16 = uses_bf16(precision)  # as the training side resolves it
    model = instantiate(model_cfg).eval().to(torch.bfloat16 if bf16 else torch.float32)
    model = quantize_int8(model) if int8 else prepare_for_inference(model)
    texts = [s for s, _ in datamodule.source.pairs(split)]
    common = {"tokenizer": datamodule.tokenizer, "reverse_source": cfg.data.reverse_source,
              **forced_length(length)}  # fmt: skip
    out = {}
    with torch.inference_mode():
        for beam in beams:
            rate, _ = sentences_per_second(2, model, [texts], beam_size=beam,
                                           max_tokens=max_tokens, inter_threads=inter_threads,
                                           **common)  # fmt: skip
            out[f"beam{beam}_sent_s"], out[f"beam{beam}_tok_s"] = rate, rate * length
    out["peak_rss_gb"] = _peak_rss_gb()
    return out


def model_overrides(name: str, data_dir: str, precision: str, cache_dir: str | None) -> list[str]:
    """The training config overrides of model `name` ("A" or "B") on Multi30k in `data_dir`."""
    overrides = [*MODELS[name], f"data.dir={data_dir}", f"trainer.precision={precision}",
                 "trainer.enable_progress_bar=false"]  # fmt: skip
    return [*overrides, f"data.cache_dir={cache_dir}"] if cache_dir else overrides


def decode_run(
    name: str, data_dir: str, precision: str, beams: list[int], max_tokens: int = MAX_TOKENS,
    inter_threads: int | str = "auto", split: str = "test_2016_flickr",
    cache_dir: str | None = None,
) -> dict:  # fmt: skip
    """`decode_child` of model `name` on Multi30k in `data_dir`, in a fresh process, with
    `precision` 32-true, bf16-mixed or int8 (the fp32 model with int8 matmul weights)."""
    trained = "32-true" if precision == "int8" else precision
    overrides = model_overrides(name, data_dir, trained, cache_dir)
    return in_fresh_process(decode_child, overrides, split, LENGTH, beams, max_tokens,
                            precision == "int8", inter_threads)  # fmt: skip


def speed_benchmark(
    data_dir: str, models: list[str], precisions: list[str], steps: int = 60, warmup: int = 20,
    repeats: int = 2, beams: tuple[int, ...] = (1, 5, 12), split: str = "test_2016_flickr",
    cache_dir: str | None = None,
) -> list[dict]:  # fmt: skip
    """One row per (model, precision): medians of `repeats` plain and Lightning runs, in
    `rounds` (plain first, then Lightning first, ...). A precision this CPU cannot run
    natively (bf16 without AVX512-BF16 or AMX) is refused before anything runs."""
    refuse_emulated(precisions)
    dtypes = {"32-true": torch.float32, "bf16-mixed": torch.bfloat16}
    peaks = {p: matmul_peak(dtype=dtypes[p]) for p in {"32-true", *precisions}}
    rows = []
    for name in models:
        for precision in precisions:
            overrides = model_overrides(name, data_dir, precision, cache_dir)
            runs = {"plain": [], "lightning": []}
            for loop in rounds(list(runs), repeats):
                runs[loop].append(in_fresh_process(train_child, overrides, loop, steps, warmup))
            plain = statistics.median(r["tok_s"] for r in runs["plain"])
            ours = statistics.median(r["tok_s"] for r in runs["lightning"])
            flops = runs["lightning"][0]["flops_per_token"]
            decode = decode_run(name, data_dir, precision, list(beams), split=split,
                                cache_dir=cache_dir)  # fmt: skip
            row = {
                "model": name, "precision": precision, "tok_s": round(ours),
                "plain_tok_s": round(plain), "vs_plain": round(ours / plain, 3),
                "train_mflop_per_token": round(flops / 1e6, 1),
                "mfu_fp32_peak": round(ours * flops / peaks["32-true"], 3),
                "mfu_own_peak": round(ours * flops / peaks[precision], 3),
                "peak_rss_gb": round(max(r["peak_rss_gb"] for r in runs["lightning"]), 2),
                **{k: round(v, 1) for k, v in decode.items() if k.endswith(RATES)},
                "matmul_peak_gflops": {k: round(v / 1e9) for k, v in peaks.items()},
                "runs": runs,
            }  # fmt: skip
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "runs"}), flush=True)
    return rows


DECODE_PRECISIONS = ("32-true", "bf16-mixed", "int8")


def decode_benchmark(
    data_dir: str, models: list[str], budgets: list[int], repeats: int = 2,
    beams: tuple[int, ...] = (1, 5, 12), precisions: tuple[str, ...] = ("32-true",),
    split: str = "test_2016_flickr", cache_dir: str | None = None,
    inter_threads: tuple[int | str, ...] = ("auto",),
) -> list[dict]:  # fmt: skip
    """Decoding alone, one row per (model, precision, batch budget `max_tokens`, number of
    parts a batch is searched in at once, `inter_threads`): medians of `repeats` fresh
    processes, in `rounds` (every case once, then again in reverse order), so that a
    machine's drift does not favour one of them. `int8` is the fp32 model with int8 matmul
    weights."""
    for precision in precisions:
        if precision not in DECODE_PRECISIONS:
            raise UserError(f"--precisions {precision}: expected {', '.join(DECODE_PRECISIONS)}")
    refuse_emulated([p for p in precisions if p != "int8"])
    rows = []
    for name in models:
        cases = [(p, b, t) for p in precisions for b in budgets for t in inter_threads]
        runs: dict[tuple, list[dict]] = {case: [] for case in cases}
        for precision, budget, threads in rounds(cases, repeats):
            run = decode_run(name, data_dir, precision, list(beams), budget, threads, split,
                             cache_dir)  # fmt: skip
            runs[precision, budget, threads].append(run)
        for (precision, budget, threads), case_runs in runs.items():
            rates = {k: round(statistics.median(r[k] for r in case_runs), 1)
                     for k in case_runs[0] if k.endswith(RATES)}  # fmt: skip
            peak = max(r["peak_rss_gb"] for r in case_runs)
            rows.append({"model": name, "precision": precision, "max_tokens": budget,
                         "inter_threads": threads, **rates, "peak_rss_gb": round(peak, 2),
                         "runs": case_runs})  # fmt: skip
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "runs"}), flush=True)
    return rows


def decode_markdown(rows: list[dict]) -> str:
    beams = [k for k in rows[0] if k.endswith("_sent_s")] if rows else []
    names = ["greedy" if k == "beam1_sent_s" else "beam-" + k[4:].removesuffix("_sent_s")
             for k in beams]  # fmt: skip
    header = ["model", "precision", "max_tokens", "inter_threads",
              *(f"{n} sent/s" for n in names), "peak RSS"]  # fmt: skip
    return markdown_table(header, (
        [r["model"], r["precision"], f"{r['max_tokens']:,}", r["inter_threads"],
         *(r[k] for k in beams), f"{r['peak_rss_gb']:.2f} GB"] for r in rows
    ))  # fmt: skip


def markdown(rows: list[dict]) -> str:
    header = ["model", "precision", "train tok/s", "plain loop tok/s", "ours/plain", "MFLOP/tok",
              "share of fp32 peak", "peak RSS", "greedy sent/s", "beam-5 sent/s",
              "beam-12 sent/s"]  # fmt: skip
    return markdown_table(header, (
        [r["model"], r["precision"], f"{r['tok_s']:,}", f"{r['plain_tok_s']:,}",
         f"{r['vs_plain']:.2f}", r["train_mflop_per_token"], f"{r['mfu_fp32_peak']:.0%}",
         f"{r['peak_rss_gb']:.2f} GB",
         *(r.get(f"beam{b}_sent_s", "-") for b in (1, 5, 12))] for r in rows
    ))  # fmt: skip
