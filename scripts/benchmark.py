"""Benchmarks.

python scripts/benchmark.py data [--sizes 500000 2000000] [--base DIR] [--num-proc 2]
                                 [--workdir DIR] [--json FILE]
    Preprocessing of a synthetic corpus (DIR's train.en/train.fr repeated and perturbed; the demo
    corpus without --base): pairs/s and peak RSS per size, then the start-up time of a training
    run that finds the corpus cached. Prints a markdown table; --json writes the rows.

python scripts/benchmark.py speed --data-dir DIR [--models A B] [--precisions 32-true [bf16-mixed]]
                                  [--steps 60] [--repeats 2] [--json FILE]
    Training target tokens/s (Lightning and a plain PyTorch loop, same batches), MFU, peak RSS,
    and decoding sentences/s (greedy, beam 5, beam 12, outputs forced to 20 tokens) for the
    speed issue's models A (2x256 LSTM) and B (3+3 Transformer, d_model 256) on Multi30k en-fr.

python scripts/benchmark.py decode --data-dir DIR [--models A B] [--max-tokens 4000 8000]
                                   [--beams 1 5 12] [--precisions 32-true [bf16-mixed] [int8]]
                                   [--inter-threads auto [1 2]] [--repeats 2] [--json FILE]
    Decoding alone (as in `speed`), one row per model, precision, decoding batch budget
    (source tokens x beams per batch; default: that of evaluate.py and translate.py) and
    number of parts each batch is searched in at once (decode.inter_threads), all of them
    interleaved. int8: the fp32 model with int8 matmul weights (`precision=int8`).

python scripts/benchmark.py throughput [--experiment sutskever2014] [--device cpu|cuda]
                                       [--precision bf16-mixed] [--batch-size N] [--src-len 30]
                                       [--tgt-len 30] [--vocab SRC TGT] [--steps 20] [--warmup 5]
                                       [--json FILE] [OVERRIDE ...]
    Training throughput of an experiment's exact model on random token ids (no data needed):
    words/s (source + target tokens), target tokens/s, MFU over this device's measured matmul
    peak, peak memory. Batch size and vocabularies default to the experiment's; OVERRIDEs are
    Hydra overrides of the training config (e.g. model.num_layers=2).

python scripts/benchmark.py parity --data-dir DIR [--model A] [--epochs 6] [--workdir DIR]
    The same training run in fp32 and in bf16 autocast: the end of both validation-BLEU curves,
    the training time and the test BLEU of each final model (on a CPU with native bf16).
"""

import argparse
import json
import tempfile
from pathlib import Path

from seq2seq.benchmark.speed import DECODE_PRECISIONS
from seq2seq.cli import user_errors


def threads_option(value: str) -> int | str:
    """`--inter-threads` values: auto, or a number of parts."""
    if value == "auto" or (value.isdigit() and int(value) >= 1):
        return value if value == "auto" else int(value)
    raise argparse.ArgumentTypeError(f"{value!r}: expected auto or an integer >= 1")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    data = sub.add_parser("data", help="preprocessing throughput, memory and cached start-up")
    data.add_argument("--sizes", type=int, nargs="+", default=[500_000, 2_000_000])
    data.add_argument(
        "--base", type=Path, default=None, help="a directory with train.en/.fr and val.en/.fr"
    )
    data.add_argument("--num-proc", type=int, default=2)
    data.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="corpora and caches (default: a temporary directory)",
    )
    data.add_argument("--startup-repeats", type=int, default=3)
    data.add_argument("--json", type=Path, default=None)
    speed = sub.add_parser("speed", help="training and decoding speed of models A and B")
    speed.add_argument("--data-dir", required=True, help="Multi30k text files (train.en, ...)")
    speed.add_argument("--models", nargs="+", default=["A", "B"], choices=["A", "B"])
    speed.add_argument(
        "--precisions",
        nargs="+",
        choices=["32-true", "bf16-mixed"],
        help="default: 32-true, and bf16-mixed on CPUs with native bf16 (AVX512-BF16 or AMX)",
    )
    speed.add_argument("--steps", type=int, default=60)
    speed.add_argument("--warmup", type=int, default=20)
    speed.add_argument("--repeats", type=int, default=2)
    speed.add_argument("--json", type=Path, default=None)
    decode = sub.add_parser("decode", help="decoding speed per decoding batch budget")
    decode.add_argument("--data-dir", required=True, help="Multi30k text files (train.en, ...)")
    decode.add_argument("--models", nargs="+", default=["A", "B"], choices=["A", "B"])
    decode.add_argument("--max-tokens", type=int, nargs="+", default=None)
    decode.add_argument("--beams", type=int, nargs="+", default=[1, 5, 12])
    decode.add_argument(
        "--precisions", "--precision", nargs="+", choices=DECODE_PRECISIONS, default=["32-true"]
    )
    decode.add_argument(
        "--inter-threads", nargs="+", default=["auto"], type=threads_option,
        help="parts each batch is searched in at once (decode.inter_threads): auto or N",
    )  # fmt: skip
    decode.add_argument("--repeats", type=int, default=2)
    decode.add_argument("--json", type=Path, default=None)
    through = sub.add_parser("throughput", help="an experiment's training speed, random ids")
    through.add_argument("--experiment", default="sutskever2014")
    through.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    through.add_argument("--precision", choices=["32-true", "bf16-mixed"], default="bf16-mixed")
    through.add_argument("--batch-size", type=int, default=None, help="sentences per step")
    through.add_argument("--src-len", type=int, default=30)
    through.add_argument("--tgt-len", type=int, default=30)
    through.add_argument("--vocab", type=int, nargs=2, default=None, metavar=("SRC", "TGT"))
    through.add_argument("--steps", type=int, default=20)
    through.add_argument("--warmup", type=int, default=5)
    through.add_argument("--json", type=Path, default=None)
    through.add_argument("overrides", nargs="*", help="Hydra overrides of the training config")
    parity = sub.add_parser("parity", help="bf16 vs fp32: the same run's BLEU in each")
    parity.add_argument("--data-dir", required=True, help="Multi30k text files (train.en, ...)")
    parity.add_argument("--model", default="A", choices=["A", "B"])
    parity.add_argument("--epochs", type=int, default=6)
    parity.add_argument(
        "--workdir", type=Path, default=None, help="run directories (default: temporary)"
    )
    parity.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    with user_errors(), tempfile.TemporaryDirectory() as tmp:
        if args.what == "data":
            from seq2seq.benchmark.data import data_benchmark, markdown

            workdir = args.workdir or Path(tmp)
            rows = data_benchmark(args.sizes, workdir, args.base, args.num_proc,
                                  args.startup_repeats)  # fmt: skip
        elif args.what == "decode":
            from seq2seq.benchmark.speed import decode_benchmark
            from seq2seq.benchmark.speed import decode_markdown as markdown
            from seq2seq.translate import MAX_TOKENS

            budgets = args.max_tokens or [MAX_TOKENS]
            rows = decode_benchmark(args.data_dir, args.models, budgets, args.repeats,
                                    tuple(args.beams), tuple(args.precisions),
                                    inter_threads=tuple(args.inter_threads))  # fmt: skip
        elif args.what == "throughput":
            from seq2seq.benchmark.throughput import markdown, throughput_benchmark

            rows = [throughput_benchmark(
                args.experiment, args.device, args.precision, args.batch_size, args.src_len,
                args.tgt_len, args.vocab, args.steps, args.warmup, tuple(args.overrides),
            )]  # fmt: skip
        elif args.what == "parity":
            from seq2seq.benchmark.parity import markdown, parity_benchmark

            workdir = args.workdir or Path(tmp)
            rows = parity_benchmark(args.data_dir, args.model, args.epochs, workdir)
        else:
            from seq2seq.benchmark.speed import markdown, native_precisions, speed_benchmark

            precisions = args.precisions or native_precisions()
            rows = speed_benchmark(args.data_dir, args.models, precisions, args.steps,
                                   args.warmup, args.repeats)  # fmt: skip
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
