"""Decoding speed of a peer, OpenNMT-py, on the speed issue's models A and B, on this machine.

python scripts/peer_decode.py --data-dir DIR --onmt-python PYTHON [--models A B] [--beams 1 5]
                              [--repeats 2] [--workdir DIR]

PYTHON is the interpreter of an environment with OpenNMT-py 3.5.1. It pins torch<2.3; installed
with `pip install --no-deps OpenNMT-py==3.5.1 configargparse pyonmttok spacy pyahocorasick
rapidfuzz fasttext-wheel waitress flask` in a venv made with `--system-site-packages`, it runs
on this project's torch. The script builds the speed benchmark's joint 8k sentencepiece
vocabulary (`benchmark.py speed`), writes DIR's test_2016_flickr sources and 2,000 training
pairs as pieces, trains each model one step with OpenNMT-py (random weights are enough: the
outputs are forced to 20 tokens, as in the benchmark) and times `onmt_translate` with the same
batch budget as ours: 8,000 source tokens x beams. Prints a markdown table of sentences/s from
the translation time OpenNMT-py reports (model loading excluded), the median of `--repeats`.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import tempfile
from pathlib import Path

from seq2seq.benchmark import markdown_table
from seq2seq.cli import user_errors
from seq2seq.errors import UserError
from seq2seq.translate import MAX_TOKENS

MODELS = {  # the speed issue's sizes, as OpenNMT-py options
    "A": {"encoder_type": "rnn", "decoder_type": "rnn", "rnn_type": "LSTM", "layers": 2,
          "hidden_size": 256, "word_vec_size": 256, "global_attention": "none", "input_feed": 0,
          "dropout": [0.3]},
    "B": {"encoder_type": "transformer", "decoder_type": "transformer", "position_encoding": True,
          "layers": 3, "hidden_size": 256, "word_vec_size": 256, "transformer_ff": 1024,
          "heads": 4, "dropout": [0.1], "share_decoder_embeddings": True},
}  # fmt: skip
TIME = re.compile(r"Total translation time \(s\): ([0-9.]+)")


def write_pieces(data_dir: Path, workdir: Path) -> None:
    """The benchmark's joint vocabulary as an OpenNMT-py vocabulary file, and the text as pieces."""
    from seq2seq.benchmark import compose_train
    from seq2seq.benchmark.speed import model_overrides
    from seq2seq.overhead import datamodule_and_model

    overrides = model_overrides("B", str(data_dir), "32-true", None)
    datamodule, _ = datamodule_and_model(compose_train(overrides))
    sp = datamodule.tokenizer.src
    size = sp.get_piece_size()
    vocab = [f"{sp.id_to_piece(i)}\t{size - i}\n" for i in range(size)
             if not (sp.is_control(i) or sp.is_unknown(i))]  # fmt: skip
    (workdir / "vocab.txt").write_text("".join(vocab))
    for split, limit in (("train", 2000), ("test_2016_flickr", None)):
        for lang in ("en", "fr"):
            path = data_dir / f"{split}.{lang}"
            if not path.is_file():
                raise UserError(f"{path}: no such file")
            lines = path.read_text(encoding="utf-8").splitlines()[:limit]
            pieces = sp.encode(lines, out_type=str)
            (workdir / f"{split}.{lang}").write_text("".join(" ".join(p) + "\n" for p in pieces))


def onmt(python: str, module: str, *args: str) -> str:
    """Run an OpenNMT-py entry point; its output, or a one-line error."""
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}  # its checkpoints pickle args
    run = subprocess.run([python, "-m", f"onmt.bin.{module}", *args], env=env,
                         capture_output=True, text=True)  # fmt: skip
    if run.returncode:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"--onmt-python {python}: onmt_{module} failed: {last}")
    return run.stdout + run.stderr


def translation_seconds(log: str) -> float:
    """The translation time onmt_translate reports with -report_time."""
    found = TIME.search(log)
    if not found:
        raise UserError("onmt_translate did not report its translation time (-report_time)")
    return float(found.group(1))


def peer_decode(
    data_dir: Path, python: str, models: list[str], beams: list[int], repeats: int, workdir: Path
) -> list[dict]:
    check = subprocess.run([python, "-c", "import onmt"], capture_output=True, text=True)
    if check.returncode:
        raise UserError(f"--onmt-python {python}: cannot import onmt (install OpenNMT-py 3.5.1)")
    write_pieces(data_dir, workdir)
    rows = []
    for name in models:
        config = {"src_vocab": str(workdir / "vocab.txt"), "tgt_vocab": str(workdir / "vocab.txt"),
                  "share_vocab": True, "src_vocab_size": 8000, "tgt_vocab_size": 8000,
                  "data": {"corpus_1": {"path_src": str(workdir / "train.en"),
                                        "path_tgt": str(workdir / "train.fr")}},
                  "save_data": str(workdir / name), "save_model": str(workdir / name / "model"),
                  "train_steps": 1, "save_checkpoint_steps": 1, "batch_type": "tokens",
                  "batch_size": 4096, "world_size": 1, "gpu_ranks": [], **MODELS[name]}  # fmt: skip
        path = workdir / f"{name}.yaml"
        path.write_text(json.dumps(config))  # JSON is YAML
        onmt(python, "train", "-config", str(path))
        row = {"model": name}
        for beam in beams:
            out = workdir / f"{name}.beam{beam}.txt"
            seconds = []
            for _ in range(repeats):
                log = onmt(python, "translate", "-model", str(workdir / name / "model_step_1.pt"),
                           "-src", str(workdir / "test_2016_flickr.en"), "-output", str(out),
                           "-beam_size", str(beam), "-min_length", "20", "-max_length", "20",
                           "-max_length_ratio", "100", "-batch_type", "tokens", "-batch_size",
                           str(MAX_TOKENS // beam), "-report_time", "-gpu", "-1")  # fmt: skip
                seconds.append(translation_seconds(log))
            lines = out.read_text().splitlines()
            if any(len(line.split()) != 20 for line in lines):
                raise UserError(f"{out}: not every output has 20 tokens")
            row[f"beam{beam}_sent_s"] = round(len(lines) / statistics.median(seconds), 1)
            row[f"beam{beam}_runs"] = [round(len(lines) / s, 1) for s in seconds]
        rows.append(row)
        print(row, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="Multi30k text files")
    parser.add_argument("--onmt-python", required=True, help="a Python with OpenNMT-py 3.5.1")
    parser.add_argument("--models", nargs="+", default=["A", "B"], choices=["A", "B"])
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None, help="default: temporary")
    args = parser.parse_args()
    with user_errors(), tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        rows = peer_decode(args.data_dir, args.onmt_python, args.models, args.beams,
                           args.repeats, workdir)  # fmt: skip
    names = [f"beam-{b} sent/s" if b > 1 else "greedy sent/s" for b in args.beams]
    print(markdown_table(["tool", "model", *names], (
        ["OpenNMT-py 3.5.1", r["model"], *(r[f"beam{b}_sent_s"] for b in args.beams)] for r in rows
    )))  # fmt: skip


if __name__ == "__main__":
    main()
