"""Benchmarks.

python scripts/benchmark.py data [--sizes 500000 2000000] [--base DIR] [--num-proc 2]
                                 [--workdir DIR] [--json FILE]
    Preprocessing of a synthetic corpus (DIR's train.en/train.fr repeated and perturbed; the demo
    corpus without --base): pairs/s and peak RSS per size, then the start-up time of a training
    run that finds the corpus cached. Prints a markdown table; --json writes the rows.
"""

import argparse
import json
import tempfile
from pathlib import Path

from seq2seq.cli import user_errors


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
    args = parser.parse_args()

    from seq2seq.benchmark_data import data_benchmark, markdown

    with user_errors(), tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        rows = data_benchmark(args.sizes, workdir, args.base, args.num_proc, args.startup_repeats)
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
