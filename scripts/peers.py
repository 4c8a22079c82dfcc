"""Training and decoding speed of the peers (OpenNMT-py, eole, JoeyNMT) on the speed issue's
models, on this machine.

python scripts/peers.py decode --data-dir DIR [--onmt-python PY] [--eole-python PY]
                               [--joeynmt-python PY] [--models A B] [--beams 1 5]
                               [--repeats 2] [--workdir DIR] [--ours 32-true bf16-mixed int8]
python scripts/peers.py train  --data-dir DIR [--onmt-python PY] [--eole-python PY]
                               [--joeynmt-python PY] [--models A B] [--warmup 20]
                               [--steps 40] [--repeats 2] [--workdir DIR]
                               [--ours 32-true bf16-mixed]

Each PY is the interpreter of an environment with that peer (at least one is needed). The
peers pin older torch versions; each runs on this project's torch when installed with
`pip install --no-deps` in a venv made with `--system-site-packages`, plus the modules it
imports:
  OpenNMT-py 3.5.1: OpenNMT-py==3.5.1 configargparse pyonmttok spacy pyahocorasick rapidfuzz
                    fasttext-wheel waitress flask
  eole 0.6.4:       eole==0.6.4 pyonmttok safetensors tokenizers rich uvicorn
                    fastapi==0.115.6 starlette==0.41.3 annotated_doc
  JoeyNMT 2.3.0:    joeynmt==2.3.0 importlib_metadata lazy_importer subword_nmt

(spacy with its own dependencies: `pip install spacy`).

Both commands build the speed benchmark's joint 8k sentencepiece vocabulary (`benchmark.py
speed`) and write DIR's training pairs and test_2016_flickr sources as pieces of it.

`decode` trains each model one step with each peer (random weights are enough: the outputs are
forced to 20 tokens, as in the benchmark, and checked) and times its decoding with the same
batch budget as ours: 8,000 source tokens / beams. Prints a markdown table of sentences/s, the
median of `--repeats` runs, from the time each peer reports for decoding (model loading
excluded): OpenNMT-py's and eole's `-report_time`, JoeyNMT's "Generation took".

`train` trains each model `--warmup` + `--steps` steps with each peer on all the training pairs,
as the benchmark trains ours: fp32, batches of 4,096 tokens (as the peer counts them), Adam at
our learning rate, our dropout, label smoothing (B: 0.1) and gradient clipping (5), each peer's
other defaults (OpenNMT-py and eole load data with 2 worker processes). Prints the median of
`--repeats` runs of the target (non-padding) tokens/s after the warm-up, from the rates each
peer logs every 10 steps (OpenNMT-py's and eole's `tok/s`, JoeyNMT's "Tokens per Sec"; their
harmonic mean, as the windows have the same number of steps), and each run's peak RSS (of the
peer's main process, as ours is measured: not its data loading workers; Linux only).

Models (the issue's): A, a 2 x 256 LSTM encoder-decoder without attention; B, a 3 + 3 layer
Transformer, d_model 256, 4 heads, FFN 1024, one embedding matrix. JoeyNMT cannot build A: its
row is A', its closest (a bidirectional 2 x 256 LSTM encoder, a decoder with Luong attention
and input feeding). Two peers are patched where they fail (see EOLE_TRAIN and JOEY_RUN): eole's
training of A, and JoeyNMT's minimum output length, which it ignores. eole's Transformer gives
NaN scores in some runs on a CPU (and then stops after one token): such runs are repeated and
counted, not timed; a round with no valid run in 3 tries has none, a beam size with none in
any round is reported as not timed, and the script goes on.

`--ours PRECISION...` measures this project beside them, each run in a fresh process as
`scripts/benchmark.py speed` runs it (Lightning training; decoding with fp32, bf16 or int8
weights), and adds to each of our rates its ratio to the fastest peer's for the same model (A'
counted with A). Everything is measured in rounds, per model (and per beam size): one run of
each contender, ours first, the next round in reverse order, so that a ratio compares runs
minutes apart, not hours (this machine's speed drifts by 20% within an hour).
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from functools import cached_property, partial
from pathlib import Path

from seq2seq.benchmark import in_fresh_process, markdown_table, rounds
from seq2seq.benchmark.speed import LENGTH, decode_run, model_overrides, train_child
from seq2seq.cli import user_errors
from seq2seq.errors import UserError
from seq2seq.translate import MAX_TOKENS

OURS = {"32-true": "fp32", "bf16-mixed": "bf16", "int8": "int8"}  # --ours: precision, label
ONMT = {  # the speed issue's sizes, as OpenNMT-py options
    "A": {"encoder_type": "rnn", "decoder_type": "rnn", "rnn_type": "LSTM", "layers": 2,
          "hidden_size": 256, "word_vec_size": 256, "global_attention": "none", "input_feed": 0,
          "dropout": [0.3]},
    "B": {"encoder_type": "transformer", "decoder_type": "transformer", "position_encoding": True,
          "layers": 3, "hidden_size": 256, "word_vec_size": 256, "transformer_ff": 1024,
          "heads": 4, "dropout": [0.1], "share_decoder_embeddings": True},
}  # fmt: skip
EOLE = {  # the same, as eole's `model` section (its dropout, ONMT's, goes in `training`)
    "A": {"architecture": "rnn", "rnn_type": "LSTM", "layers": 2, "hidden_size": 256,
          "input_feed": 0, "embeddings": {"word_vec_size": 256},
          "decoder": {"global_attention": None}},
    "B": {"architecture": "transformer", "layers": 3, "hidden_size": 256, "heads": 4,
          "transformer_ff": 1024, "share_decoder_embeddings": True, "share_embeddings": True,
          "add_qkvbias": True, "add_ffnbias": True,
          "embeddings": {"word_vec_size": 256, "position_encoding": True}},
}  # fmt: skip


def joey_model(name: str) -> dict:
    """JoeyNMT's `model` section: A' (see the docstring) or B."""
    if name == "A":
        rnn = {"rnn_type": "lstm", "num_layers": 2, "hidden_size": 256, "dropout": 0.3,
               "embeddings": {"embedding_dim": 256}}  # fmt: skip
        return {"encoder": {"type": "recurrent", "bidirectional": True, **rnn},
                "decoder": {"type": "recurrent", "attention": "luong", "input_feeding": True,
                            "init_hidden": "bridge", **rnn}}  # fmt: skip
    layers = {"type": "transformer", "num_layers": 3, "num_heads": 4, "hidden_size": 256,
              "ff_size": 1024, "dropout": 0.1, "layer_norm": "pre",
              "embeddings": {"embedding_dim": 256, "scale": True}}  # fmt: skip
    return {"tied_embeddings": True, "tied_softmax": True, "encoder": layers, "decoder": layers}


# eole's training on a CPU fails in its loss for an LSTM decoder without input feeding (a
# `view` of a non-contiguous output): its training (one step for `decode`, all of `train`)
# runs with that `view` made a `reshape` (the same values, and a copy where the view failed).
# Decoding is not patched.
EOLE_TRAIN = """import sys
from eole.utils.loss import LossCompute
LossCompute._bottle = lambda self, v: v.reshape(-1, v.size(2))
from eole.bin.main import main
sys.argv = ["eole", *sys.argv[1:]]
main()
"""
# JoeyNMT 2.3.0 logs its `min_output_length` but does not pass it to its search
# (prediction.py), so a model that emits EOS early stops early. Its decoding runs with the
# option passed, and so does the same work as the other tools.
JOEY_RUN = f"""import sys
from functools import partial
import joeynmt.prediction
joeynmt.prediction.search = partial(joeynmt.prediction.search, min_output_length={LENGTH})
from joeynmt.__main__ import main
sys.argv = ["joeynmt", *sys.argv[1:]]
main()
"""
ONMT_TIME = re.compile(r"Total translation time \(s\): ([0-9.]+)")
EOLE_TIMES = re.compile(
    r"Step 0 time \(s\): ([0-9.]+).*Subsequent prediction time including all \(s\): ([0-9.]+)",
    re.S,
)
JOEY_TIME = re.compile(r"Generation took ([0-9.]+)\[sec\]")
REPORT = 10  # training steps per logged rate
ONMT_RATE = re.compile(r"Step +(\d+)/ *\d+;.* \d+/(\d+) tok/s;")  # eole's too: source/target
JOEY_RATE = re.compile(r"Step: +(\d+),.*Tokens per Sec: +(\d+),")
# runs a peer's command and reports its process's peak RSS (Linux's VmHWM, polled; its data
# loading workers are not counted, as ours are not)
PEAK_RSS = """import re, subprocess, sys, time
peer, peak = subprocess.Popen(sys.argv[1:]), 0
while peer.poll() is None:
    try:
        with open(f"/proc/{peer.pid}/status") as status:
            peak = max(peak, int(re.search(r"VmHWM:\\s+(\\d+)", status.read()).group(1)))
    except (OSError, AttributeError):  # not started, exited, or no /proc
        pass
    time.sleep(0.1)
print("peers.py: peak RSS", peak, "kB", file=sys.stderr)
sys.exit(peer.returncode)
"""
PEAK_RSS_LINE = re.compile(r"peers.py: peak RSS (\d+) kB")
TRAINING = {  # ours (conf/optim, conf/experiment/multi30k_*), as both peers' training options
    "A": {"optim": "adam", "learning_rate": 0.002, "label_smoothing": 0.0},
    "B": {"optim": "adam", "learning_rate": 0.001, "label_smoothing": 0.1},
}


def write_pieces(data_dir: Path, workdir: Path) -> None:
    """The benchmark's joint vocabulary as a peer's vocabulary file (`piece<TAB>count`), and the
    text as pieces."""
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
    for split in ("train", "test_2016_flickr"):
        for lang in ("en", "fr"):
            path = data_dir / f"{split}.{lang}"
            if not path.is_file():
                raise UserError(f"{path}: no such file")
            lines = path.read_text(encoding="utf-8").splitlines()
            pieces = sp.encode(lines, out_type=str)
            (workdir / f"{split}.{lang}").write_text("".join(" ".join(p) + "\n" for p in pieces))


def run(flag: str, python: str, args: list[str], what: str) -> str:
    """Run a peer's command; its output (ending in its peak RSS), or a one-line error naming
    the flag."""
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}  # their checkpoints pickle
    command = [sys.executable, "-c", PEAK_RSS, python, *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        lines = [x for x in done.stderr.splitlines() if x.strip() and not PEAK_RSS_LINE.match(x)]
        last = (lines or ["no output"])[-1]
        raise UserError(f"{flag} {python}: {what} failed: {last}")
    return done.stdout + done.stderr


def reported_seconds(tool: str, log: str) -> float:
    """The decoding time a peer reports: OpenNMT-py's total translation time, eole's step 0
    (encoding) plus the rest, JoeyNMT's generation time of its last data set (the test set)."""
    if tool == "onmt" and (found := ONMT_TIME.search(log)):
        return float(found.group(1))
    if tool == "eole" and (found := EOLE_TIMES.search(log)):
        return float(found.group(1)) + float(found.group(2))
    if tool == "joeynmt" and (found := JOEY_TIME.findall(log)):
        return float(found[-1])
    raise UserError(f"{TOOLS[tool][0]} did not report its decoding time")


def reported_train_rate(tool: str, log: str, warmup: int) -> float:
    """Target tokens/s after `warmup` steps: the harmonic mean of the rates the peer logged for
    the windows after it."""
    pattern = JOEY_RATE if tool == "joeynmt" else ONMT_RATE
    rates = [float(rate) for step, rate in pattern.findall(log) if int(step) > warmup]
    if not rates:
        raise UserError(f"{TOOLS[tool][0]} did not report its training speed after step {warmup}")
    return statistics.harmonic_mean(rates)


def peak_rss_gb(log: str) -> float:
    """The peak RSS `run` appended to a log."""
    return int(PEAK_RSS_LINE.findall(log)[-1]) / 1024**2


class Peer:
    """One tool, its models and outputs in `workdir/<tool>`."""

    def __init__(self, tool: str, python: str, workdir: Path) -> None:
        self.tool, self.python, self.dir = tool, python, workdir / tool
        self.flag = f"--{tool}-python"
        self.dir.mkdir(parents=True, exist_ok=True)
        module = TOOLS[tool][1]
        check = subprocess.run([python, "-c", f"import {module}"], capture_output=True)
        if check.returncode:
            raise UserError(f"{self.flag} {python}: cannot import {module} "
                            f"(install {TOOLS[tool][0]})")  # fmt: skip
        self.src, self.vocab = workdir / "test_2016_flickr.en", workdir / "vocab.txt"
        self.data = {"path_src": str(workdir / "train.en"), "path_tgt": str(workdir / "train.fr")}

    def _config(self, name: str, config: dict) -> Path:
        path = self.dir / f"{name}.yaml"
        path.write_text(json.dumps(config))  # JSON is YAML
        return path

    def _vocab(self) -> dict:
        return {"src_vocab": str(self.vocab), "tgt_vocab": str(self.vocab), "share_vocab": True,
                "src_vocab_size": 8000, "tgt_vocab_size": 8000,
                "data": {"corpus_1": self.data}}  # fmt: skip

    def _out(self, name: str, beam: int) -> Path:
        return self.dir / f"{name}.beam{beam}.txt"

    def train(self, name: str) -> None:
        """Train model `name` one step, unless done in this workdir (for `decode`)."""
        if not self._trained(name).exists():
            getattr(self, f"_train_{self.tool}")(name, 1)

    def train_speed(self, name: str, warmup: int, steps: int) -> tuple[float, float]:
        """Train model `name` `warmup` + `steps` steps: target tokens/s after the warm-up, and
        peak RSS in GB."""
        log = getattr(self, f"_train_{self.tool}")(name, warmup + steps)
        return reported_train_rate(self.tool, log, warmup), peak_rss_gb(log)

    def _trained(self, name: str) -> Path:
        """The file that training model `name` one step leaves."""
        return self.dir / name / {"onmt": "model_step_1.pt", "eole": "model/config.json",
                                  "joeynmt": "best.ckpt"}[self.tool]  # fmt: skip

    def _model_dir(self, name: str, steps: int) -> Path:
        """Where the one-step model (for `decode`) or a `train` run's model goes."""
        return self.dir / (name if steps == 1 else f"{name}.speed")

    def _training(self, name: str, steps: int) -> dict:
        """OpenNMT-py's and eole's training options."""
        return {"train_steps": steps, "save_checkpoint_steps": steps, "batch_type": "tokens",
                "batch_size": 4096, "world_size": 1, "gpu_ranks": [], "max_grad_norm": 5.0,
                "report_every": min(steps, REPORT), **TRAINING[name]}  # fmt: skip

    def decode(self, name: str, beam: int) -> tuple[float, bool]:
        """Decode once: the seconds the peer reports, and whether the run is valid."""
        log = getattr(self, f"_decode_{self.tool}")(name, beam)
        seconds = reported_seconds(self.tool, log)
        lines = self._out(name, beam).read_text().splitlines()
        if self.tool == "eole" and "PRED SCORE: nan" in log:
            return seconds, False  # its CPU Transformer's NaNs: repeated, not timed
        if len(lines) != self.sentences or any(len(x.split()) != LENGTH for x in lines):
            raise UserError(f"{self._out(name, beam)}: not every output has {LENGTH} tokens")
        return seconds, True

    @cached_property
    def sentences(self) -> int:
        return len(self.src.read_text().splitlines())

    # OpenNMT-py
    def _train_onmt(self, name: str, steps: int) -> str:
        out = self._model_dir(name, steps)
        config = {**self._vocab(), "save_data": str(out), "save_model": str(out / "model"),
                  **self._training(name, steps), **ONMT[name]}  # fmt: skip
        args = ["-m", "onmt.bin.train", "-config", str(self._config(out.name, config))]
        return run(self.flag, self.python, args, "training")

    def _decode_onmt(self, name: str, beam: int) -> str:
        return run(self.flag, self.python, [
            "-m", "onmt.bin.translate", "-model", str(self._trained(name)),
            "-src", str(self.src), "-output", str(self._out(name, beam)), "-beam_size", str(beam),
            "-min_length", str(LENGTH), "-max_length", str(LENGTH), "-max_length_ratio", "100",
            "-batch_type", "tokens", "-batch_size", str(MAX_TOKENS // beam), "-report_time",
            "-gpu", "-1"], "decoding")  # fmt: skip

    # eole
    def _train_eole(self, name: str, steps: int) -> str:
        out = self._model_dir(name, steps)
        training = self._training(name, steps)
        config = {**self._vocab(), "save_data": str(out), "overwrite": True,
                  "report_every": training.pop("report_every"),
                  "training": {"model_path": str(out / "model"), **training,
                               "dropout": ONMT[name]["dropout"]},
                  "model": EOLE[name]}  # fmt: skip
        args = ["-c", EOLE_TRAIN, "train", "-config", str(self._config(out.name, config))]
        return run(self.flag, self.python, args, "training")

    def _decode_eole(self, name: str, beam: int) -> str:
        return run(self.flag, self.python, [
            "-m", "eole.bin.main", "predict", "-model_path", str(self.dir / name / "model"),
            "-src", str(self.src), "-output", str(self._out(name, beam)), "-beam_size", str(beam),
            "-min_length", str(LENGTH), "-max_length", str(LENGTH), "-max_length_ratio", "0",
            "-batch_type", "tokens", "-batch_size", str(MAX_TOKENS // beam),
            "-report_time"], "decoding")  # fmt: skip

    # JoeyNMT
    def _joey_config(self, name: str, beam: int, steps: int = 1) -> Path:
        """Its config for decoding with `beam` or training `steps` steps (one: a 100-pair
        subset, validated and saved; more: all pairs, logged every REPORT steps, not
        validated)."""
        vocab, dev = self.dir / "vocab.txt", self.dir / "dev"  # written by _train_joeynmt
        side = {"level": "word", "tokenizer_type": "none", "voc_file": str(vocab),
                "lowercase": False, "max_length": 200}  # fmt: skip
        prefix = str(self.src.with_suffix(""))
        out = self._model_dir(name, steps)
        training = TRAINING[name]
        config = {
            "name": name, "joeynmt_version": "2.3.0", "model_dir": str(out), "use_cuda": False,
            "data": {"train": self.data["path_src"][: -len(".en")], "dev": str(dev),
                     "test": prefix, "dataset_type": "plain",
                     "sample_train_subset": 100 if steps == 1 else -1,
                     "src": {"lang": "en", **side},
                     "trg": {"lang": "fr", **side}},
            "testing": {"beam_size": beam, "batch_size": MAX_TOKENS // beam, "batch_type": "token",
                        "min_output_length": LENGTH, "max_output_length": LENGTH,
                        "eval_metrics": ["bleu"]},
            "training": {"random_seed": 1, "optimizer": "adam",
                         "learning_rate": training["learning_rate"],
                         "label_smoothing": training["label_smoothing"], "clip_grad_norm": 5.0,
                         "scheduling": "warmupinversesquareroot", "learning_rate_warmup": 100,
                         "batch_size": 4096, "batch_type": "token", "epochs": 100,
                         "updates": steps, "validation_freq": 1 if steps == 1 else steps + REPORT,
                         "logging_freq": min(steps, REPORT), "overwrite": True,
                         "keep_best_ckpts": 1},
            "model": {"initializer": "xavier_uniform", **joey_model(name)},
        }  # fmt: skip
        return self._config(f"{out.name}.beam{beam}", config)

    def _train_joeynmt(self, name: str, steps: int) -> str:
        # its vocabulary: one piece per line (it adds its specials); its dev set: 10 sentences,
        # as `test` decodes it too
        vocab = self.vocab.read_text().splitlines()
        (self.dir / "vocab.txt").write_text("".join(x.split("\t")[0] + "\n" for x in vocab))
        for lang in ("en", "fr"):
            lines = self.src.with_suffix(f".{lang}").read_text().splitlines(keepends=True)
            (self.dir / f"dev.{lang}").write_text("".join(lines[:10]))
        config = self._joey_config(name, 1, steps)
        return run(self.flag, self.python, ["-m", "joeynmt", "train", str(config), "--skip-test"],
                   "training")  # fmt: skip

    def _decode_joeynmt(self, name: str, beam: int) -> str:
        prefix = self.dir / f"{name}.beam{beam}"
        log = run(self.flag, self.python, ["-c", JOEY_RUN, "test",
                                           str(self._joey_config(name, beam)), "--output-path",
                                           str(prefix)], "decoding")  # fmt: skip
        (prefix.parent / f"{prefix.name}.test").replace(self._out(name, beam))
        return log


TOOLS = {  # --NAME-python: (label, module to import)
    "onmt": ("OpenNMT-py 3.5.1", "onmt"),
    "eole": ("eole 0.6.4", "eole"),
    "joeynmt": ("JoeyNMT 2.3.0", "joeynmt"),
}


def timed_runs(decode: Callable[[], tuple[float, bool]], repeats: int) -> tuple[list[float], int]:
    """Up to `repeats` valid runs' seconds and how many runs were invalid: it gives up after
    2 x repeats + 1 invalid runs, with the valid runs it has (possibly none)."""
    seconds, invalid = [], 0
    while len(seconds) < repeats and invalid <= 2 * repeats:
        took, valid = decode()
        if valid:
            seconds.append(took)
        else:
            invalid += 1
    return seconds, invalid


class Ours:
    """This project, in the role of a peer: each measurement a fresh process of `scripts/
    benchmark.py speed`'s (its Lightning training run; its decoding of the same sentences,
    forced to the same length, with `precision` bf16-mixed or int8 weights where asked)."""

    def __init__(self, precision: str, data_dir: Path) -> None:
        self.precision, self.data_dir = precision, data_dir
        self.label = f"ours {OURS[precision]}"
        self.sentences = len((data_dir / "test_2016_flickr.en").read_text().splitlines())

    def train(self, name: str) -> None:
        """Nothing: decoding uses a randomly initialised model, its outputs forced."""

    def train_speed(self, name: str, warmup: int, steps: int) -> tuple[float, float]:
        overrides = model_overrides(name, str(self.data_dir), self.precision, None)
        run = in_fresh_process(train_child, overrides, "lightning", steps, warmup)
        return run["tok_s"], run["peak_rss_gb"]

    def decode(self, name: str, beam: int) -> tuple[float, bool]:
        run = decode_run(name, str(self.data_dir), self.precision, [beam])  # as the peers decode
        return self.sentences / run[f"beam{beam}_sent_s"], True


def contenders(
    data_dir: Path, pythons: dict[str, str], ours: Sequence[str], workdir: Path
) -> list[Peer | Ours]:
    """Ours (one per precision), then each peer, once the pieces are written."""
    peers = [Peer(tool, python, workdir) for tool, python in pythons.items()]
    write_pieces(data_dir, workdir)
    return [*(Ours(precision, data_dir) for precision in ours), *peers]


def label(contender: Peer | Ours, name: str) -> dict:
    """A row's first columns: the tool and the model (JoeyNMT's A is A')."""
    if isinstance(contender, Ours):
        return {"tool": contender.label, "model": name}
    model = "A'" if contender.tool == "joeynmt" and name == "A" else name
    return {"tool": TOOLS[contender.tool][0], "model": model}


def versus_peers(rows: list[dict], key: str) -> None:
    """Each of our rows gets, under `key`_vs_peers, its `key` over the fastest peer's for the
    same model (A' counted with A)."""
    for row in rows:
        if not row["tool"].startswith("ours"):
            continue
        peers = [r[key] for r in rows if not r["tool"].startswith("ours")
                 and r["model"].rstrip("'") == row["model"] and r[key]]  # fmt: skip
        if peers and row[key]:
            row[f"{key}_vs_peers"] = round(row[key] / max(peers), 2)


def peer_train(
    data_dir: Path, pythons: dict[str, str], models: list[str], warmup: int, steps: int,
    repeats: int, workdir: Path, ours: Sequence[str] = (),
) -> list[dict]:  # fmt: skip
    """One row per (contender, model): target tokens/s after the warm-up (median of `repeats`
    runs, in rounds over the contenders) and the largest peak RSS."""
    if warmup % REPORT or steps % REPORT or steps < REPORT:
        raise UserError(f"--warmup {warmup} --steps {steps}: the peers log their speed every "
                        f"{REPORT} steps; give multiples of {REPORT}")  # fmt: skip
    rows, every = [], contenders(data_dir, pythons, ours, workdir)
    for name in models:
        measured = {c: [] for c in every}
        for contender in rounds(every, repeats):
            measured[contender].append(contender.train_speed(name, warmup, steps))
        model_rows = []
        for contender, runs in measured.items():
            row = label(contender, name)
            row["tok_s"] = round(statistics.median(tok_s for tok_s, _ in runs))
            row["peak_rss_gb"] = round(max(rss for _, rss in runs), 2)
            row["runs"] = [round(tok_s) for tok_s, _ in runs]
            model_rows.append(row)
        versus_peers(model_rows, "tok_s")
        for row in model_rows:
            print(json.dumps(row), flush=True)
        rows += model_rows
    return rows


def peer_decode(
    data_dir: Path, pythons: dict[str, str], models: list[str], beams: list[int], repeats: int,
    workdir: Path, ours: Sequence[str] = (),
) -> list[dict]:  # fmt: skip
    """One row per (contender, model): sentences/s per beam (median of `repeats` valid runs,
    in rounds over the contenders)."""
    rows, every = [], contenders(data_dir, pythons, ours, workdir)
    for name in models:
        for contender in every:
            contender.train(name)
        model_rows = {c: label(c, name) for c in every}
        for beam in beams:
            seconds, invalid = {c: [] for c in every}, dict.fromkeys(every, 0)
            for contender in rounds(every, repeats):
                took, bad = timed_runs(partial(contender.decode, name, beam), 1)
                seconds[contender] += took
                invalid[contender] += bad
            for contender, row in model_rows.items():
                times, n = seconds[contender], contender.sentences
                rate = round(n / statistics.median(times), 1) if times else None
                row[f"beam{beam}_sent_s"] = rate  # None: not timed
                row[f"beam{beam}_runs"] = [round(n / s, 1) for s in times]
                if invalid[contender]:
                    row[f"beam{beam}_invalid_runs"] = invalid[contender]
        for beam in beams:
            versus_peers(list(model_rows.values()), f"beam{beam}_sent_s")
        for row in model_rows.values():
            print(json.dumps(row), flush=True)
        rows += model_rows.values()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    decode, train = commands.add_parser("decode"), commands.add_parser("train")
    for command in (decode, train):
        command.add_argument("--data-dir", type=Path, required=True, help="Multi30k text files")
        for tool, (label, _) in TOOLS.items():
            command.add_argument(f"--{tool}-python", help=f"a Python with {label}")
        command.add_argument("--models", nargs="+", default=["A", "B"], choices=["A", "B"])
        command.add_argument("--repeats", type=int, default=2)
        command.add_argument("--workdir", type=Path, default=None, help="default: temporary")
    decode.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    train.add_argument("--warmup", type=int, default=20, help=f"a multiple of {REPORT}")
    train.add_argument("--steps", type=int, default=40, help=f"a multiple of {REPORT}")
    for command, precisions in ((decode, list(OURS)), (train, list(OURS)[:2])):  # int8 decodes
        text = "also measure ours at these precisions, in rounds with the peers"
        command.add_argument("--ours", nargs="+", default=[], choices=precisions, help=text)
    args = parser.parse_args()
    pythons = {t: p for t in TOOLS if (p := getattr(args, f"{t}_python")) is not None}
    with user_errors(), tempfile.TemporaryDirectory() as tmp:
        if not pythons:
            raise UserError("give at least one of --onmt-python, --eole-python, --joeynmt-python")
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        common = (args.data_dir, pythons, args.models)
        if args.command == "train":
            rows = peer_train(*common, args.warmup, args.steps, args.repeats, workdir, args.ours)
        else:
            rows = peer_decode(*common, args.beams, args.repeats, workdir, args.ours)
    if args.command == "train":
        print(markdown_table(["tool", "model", "train tok/s", "peak RSS"], (
            [r["tool"], r["model"], fmt(r, "tok_s"), f"{r['peak_rss_gb']:.2f} GB"] for r in rows
        )))  # fmt: skip
        return
    names = [f"beam-{b} sent/s" if b > 1 else "greedy sent/s" for b in args.beams]
    print(markdown_table(["tool", "model", *names], (
        [r["tool"], r["model"], *(fmt(r, f"beam{b}_sent_s") for b in args.beams)] for r in rows
    )))  # fmt: skip


def fmt(row: dict, key: str) -> str:
    """A rate, with its ratio to the fastest peer's for ours (`versus_peers`) and the count of
    invalid runs where there were any ("not timed" if all were)."""
    rate = row[key]
    text = f"{rate:,}" if rate is not None else "not timed"
    if f"{key}_vs_peers" in row:
        text += f" ({row[f'{key}_vs_peers']:.2f}x)"
    invalid = row.get(key.removesuffix("_sent_s") + "_invalid_runs")
    if not invalid:
        return text
    runs = f"{invalid} NaN run{'s' if invalid > 1 else ''}"
    return f"{text} ({runs} not timed)" if rate is not None else f"{text} ({runs})"


if __name__ == "__main__":
    main()
