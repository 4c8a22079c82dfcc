"""The benchmark scripts: FLOP counts, the synthetic corpus, and both benchmarks end to end on
tiny data."""

import runpy
import subprocess
import sys

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from seq2seq import decode_speed
from seq2seq.benchmark import compose_train, rounds, speed
from seq2seq.benchmark.data import _perturb, data_benchmark, make_corpus
from seq2seq.benchmark.parity import markdown as parity_markdown
from seq2seq.benchmark.parity import train_and_test
from seq2seq.benchmark.speed import (
    decode_child,
    decode_markdown,
    markdown,
    train_child,
    train_flops_per_target_token,
)
from seq2seq.benchmark.throughput import (
    default_batch_size,
    random_batch,
    throughput_benchmark,
    vocab_sizes,
)
from seq2seq.benchmark.throughput import markdown as throughput_markdown
from seq2seq.data.demo import write_demo_corpus
from seq2seq.data.tokenizer import BOS, EOS
from seq2seq.errors import UserError
from seq2seq.loss import token_losses
from seq2seq.models.transformer import TransformerSeq2Seq
from tests.helpers import ROOT, SCRIPTS, run_script


def test_lstm_flops_match_the_closed_form_and_the_issue():
    cfg = {"tgt_vocab_size": 8000, "hidden_size": 256, "embed_dim": 256, "num_layers": 2}
    layer = 4 * 256 * (256 + 256)  # multiply-adds of one LSTM layer per token
    assert train_flops_per_target_token(cfg, 1.0, 20) == 6 * (2 * layer * 2 + 256 * 8000)
    # the speed issue's model A: 24.0 MFLOP per target token on Multi30k (src/tgt ~ 0.9)
    assert 23.5e6 < train_flops_per_target_token(cfg, 0.9, 13) < 24.5e6


def test_transformer_flops_match_torch_flop_counter():
    cfg = {"src_vocab_size": 50, "tgt_vocab_size": 50, "num_encoder_layers": 2,
           "num_decoder_layers": 2, "d_model": 32, "nhead": 4, "dim_feedforward": 64,
           "dropout": 0.0}  # fmt: skip
    model = TransformerSeq2Seq(**cfg)
    batch, src_len, tgt_len = 4, 12, 9
    src = torch.randint(4, 50, (batch, src_len))
    tgt = torch.randint(4, 50, (batch, tgt_len))
    # the math kernel runs attention as matmuls, which the counter sees
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        logits = model(src, torch.full((batch,), src_len), tgt)
        token_losses(logits, tgt, 0.0)[0].sum().backward()
    counted = counter.get_total_flops() / (batch * tgt_len)
    ours = train_flops_per_target_token(cfg, src_len / tgt_len, tgt_len)
    assert ours == pytest.approx(counted, rel=1e-6)


def test_synthetic_corpus_repeats_with_perturbations(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "train.en").write_text("a b c\nd e\n")
    (base / "train.fr").write_text("x y z\nu v\n")
    for lang in ("en", "fr"):
        (base / f"val.{lang}").write_text("v\n")
    out = make_corpus(tmp_path / "out", 5, base)
    assert (out / "train.en").read_text().splitlines() == ["a b c", "d e", "b c", "e", "a c"]
    assert (out / "train.fr").read_text().splitlines() == ["y z", "v", "x z", "u", "x y"]
    assert _perturb("one", 3) == "one"  # a single word is kept


def test_data_benchmark_end_to_end(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    pairs = [(f"the cat number {i} sleeps", f"le chat numéro {i} dort") for i in range(200)]
    for k, lang in enumerate(("en", "fr")):
        (base / f"train.{lang}").write_text("".join(p[k] + "\n" for p in pairs))
        (base / f"val.{lang}").write_text("".join(p[k] + "\n" for p in pairs[:10]))
    (row,) = data_benchmark([3000], tmp_path / "work", base, num_proc=2, startup_repeats=1,
                            extra=["data.vocab_size=60"])  # fmt: skip
    assert row["pairs"] == row["kept"] == 3000 and row["batches"] > 0
    assert row["pairs_per_s"] > 0 and row["peak_anon_main_mb"] > 0
    assert 0 < row["cached_startup_s"] < 120


def test_speed_children_on_tiny_data(tmp_path, monkeypatch):
    pairs = [(f"the cat number {i} sleeps", f"le chat numéro {i} dort") for i in range(300)]
    for k, lang in enumerate(("en", "fr")):
        (tmp_path / f"train.{lang}").write_text("".join(p[k] + "\n" for p in pairs))
        (tmp_path / f"val.{lang}").write_text("".join(p[k] + "\n" for p in pairs[:20]))
    overrides = ["experiment=multi30k_transformer", f"data.dir={tmp_path}",
                 f"data.cache_dir={tmp_path / 'cache'}", "data.vocab_size=60", "model.d_model=32",
                 "model.dim_feedforward=64", "data.max_tokens=512",
                 "trainer.enable_progress_bar=false"]  # fmt: skip
    trained = train_child(overrides, "plain", steps=3, warmup=1)
    assert trained["tok_s"] > 0 and trained["flops_per_token"] > 0
    decoded = decode_child(overrides, "val", length=5, beams=[1, 2])
    assert decoded["beam1_sent_s"] > 0 and decoded["beam2_sent_s"] > 0
    assert decoded["beam2_tok_s"] == pytest.approx(5 * decoded["beam2_sent_s"])  # 5 tokens each
    seen = []
    monkeypatch.setattr(decode_speed, "sentences_per_second", lambda *a, **kw: seen.append(
        (kw["max_tokens"], kw["inter_threads"])) or (1.0, []))  # fmt: skip
    decoded = decode_child(overrides, "val", 5, [1, 2], max_tokens=60, inter_threads=1)
    assert decoded["beam2_sent_s"] == 1.0
    assert seen == [(60, 1), (60, 1)]  # the batch budget and the parts reach the decoding
    monkeypatch.undo()
    assert decode_child(overrides, "val", 5, [1], int8=True)["beam1_sent_s"] > 0
    assert decode_markdown([{"model": "A", "precision": "32-true", "max_tokens": 4000,
                             "inter_threads": "auto", "beam1_sent_s": 3.0, "beam5_sent_s": 1.5,
                             "peak_rss_gb": 1.0}]) == (
        "| model | precision | max_tokens | inter_threads | greedy sent/s | beam-5 sent/s "
        "| peak RSS |\n"
        "|---|---|---|---|---|---|---|\n"
        "| A | 32-true | 4,000 | auto | 3.0 | 1.5 | 1.00 GB |"
    )  # fmt: skip
    row = {"model": "B", "precision": "bf16-mixed", "tok_s": 10, "plain_tok_s": 10,
           "vs_plain": 1.0, "train_mflop_per_token": 1.0, "mfu_fp32_peak": 0.5,
           "peak_rss_gb": 1.0, "beam1_sent_s": 3.0}  # fmt: skip
    assert markdown([row]).splitlines()[-1] == (
        "| B | bf16-mixed | 10 | 10 | 1.00 | 1.0 | 50% | 1.00 GB | 3.0 | - | - |"
    )


def test_decode_benchmark_interleaves_precisions_and_budgets(monkeypatch):
    calls = []

    def child(fn, overrides, split, length, beams, budget, int8, threads):
        calls.append((overrides[-2], budget, int8, threads))
        return {"beam1_sent_s": 10.0 * len(calls), "beam1_tok_s": 200.0, "peak_rss_gb": 1.0}

    monkeypatch.setattr(speed, "in_fresh_process", child)
    rows = speed.decode_benchmark("DIR", ["A"], [4000, 8000], 2, (1,), ("32-true", "int8"))
    runs = [("trainer.precision=32-true", b, q, "auto") for q in (False, True)
            for b in (4000, 8000)]  # fmt: skip
    assert calls == runs + runs[::-1]  # every case once, then again in reverse order
    # a rate that drifts steadily with the runs (10, 20, ..., 80) gives every case the same
    # median: 10 and 80, 20 and 70, ...
    assert [(r["precision"], r["max_tokens"], r["beam1_sent_s"]) for r in rows] == [
        ("32-true", 4000, 45.0),
        ("32-true", 8000, 45.0),
        ("int8", 4000, 45.0),
        ("int8", 8000, 45.0),
    ]
    assert {r["beam1_tok_s"] for r in rows} == {200.0}
    calls.clear()
    rows = speed.decode_benchmark("DIR", ["A"], [8000], 1, (1,), ("int8",), inter_threads=(1, 2))
    assert [c[-1] for c in calls] == [r["inter_threads"] for r in rows] == [1, 2]
    with pytest.raises(UserError, match="^--precisions int4: expected 32-true, bf16-mixed, int8$"):
        speed.decode_benchmark("DIR", ["A"], [4000], precisions=("int4",))


def test_speed_benchmark_runs_plain_and_lightning_in_rounds(monkeypatch):
    """Plain loop and Lightning alternate in rounds (P L, L P, P L): the first run of a
    series never always goes to the same loop; ours/plain is the ratio of the medians."""
    calls = []

    def child(fn, *args):
        if fn is speed.decode_child:
            return {"beam1_sent_s": 1.0, "beam1_tok_s": 20.0, "peak_rss_gb": 1.0}
        calls.append(args[1])
        rate = {"plain": 100.0, "lightning": 99.0}[args[1]] - len(calls)  # a machine slowing
        return {"tok_s": rate, "peak_rss_gb": 1.0, "flops_per_token": 1e6}

    monkeypatch.setattr(speed, "in_fresh_process", child)
    monkeypatch.setattr(speed, "matmul_peak", lambda dtype: 1e9)
    (row,) = speed.speed_benchmark("DIR", ["A"], ["32-true"], repeats=3, beams=(1,))
    assert calls == ["plain", "lightning", "lightning", "plain", "plain", "lightning"]
    assert row["plain_tok_s"] == 100 - 4 and row["tok_s"] == 99 - 3  # medians
    assert row["vs_plain"] == 1.0


def test_parity_run_reports_curve_end_and_test_bleu(tmp_path):
    write_demo_corpus(tmp_path, num_train=120, num_val=8, num_test=8)
    overrides = ["experiment=multi30k_lstm", f"data.dir={tmp_path}", "data.vocab_size=150",
                 f"data.cache_dir={tmp_path / 'cache'}", "model.hidden_size=16",
                 "model.embed_dim=16", "trainer.max_time=null", "trainer.max_epochs=1",
                 "trainer.enable_progress_bar=false"]  # fmt: skip
    result = train_and_test(overrides, str(tmp_path / "run"), "test")
    assert result["val_curve_end"][-1][0] == result["steps"] - 1  # the last validation
    assert 0 <= result["test_bleu"] <= 100 and result["train_seconds"] > 0
    row = {"model": "A", "precision": "bf16-mixed", "epochs": 1, **result}
    assert parity_markdown([row]).splitlines()[-1].startswith("| A | bf16-mixed | 1 | ")


TINY_LSTM = ("model.num_layers=2", "model.hidden_size=16", "model.embed_dim=16")


def test_throughput_trains_the_exact_experiment_on_random_ids():
    row = throughput_benchmark("sutskever2014", precision="32-true", batch_size=8, src_len=7,
                               tgt_len=5, vocab=(60, 50), steps=12, warmup=2,
                               overrides=TINY_LSTM)  # fmt: skip
    assert row["batch"] == "8 x (7 + 5)" and row["precision"] == "32-true"
    layer = 4 * 16 * (16 + 16) + 2 * 4 * 16  # an nn.LSTM layer's weights and two biases
    params = 60 * 16 + 50 * 16 + 2 * 2 * layer + 16 * 50 + 50
    assert row["parameters_m"] == round(params / 1e6, 1)
    # words count both sides, target tokens one: 12 words for every 5 target tokens
    assert row["words_s"] == pytest.approx(row["tgt_tok_s"] * 12 / 5, abs=3)
    # step_ms is rounded to 0.1 ms: on a fast CPU a step is a few ms, so allow that rounding
    step_ms = row["step_ms"]
    assert 8 * 12e3 / (step_ms + 0.05) - 1 <= row["words_s"] <= 8 * 12e3 / (step_ms - 0.05) + 1
    flops = train_flops_per_target_token({"tgt_vocab_size": 50, "hidden_size": 16,
                                          "embed_dim": 16, "num_layers": 2}, 7 / 5, 5)  # fmt: skip
    assert row["train_gflop_per_tgt_token"] == round(flops / 1e9, 3)
    assert 0 < row["mfu"] < 1
    # the paper's SGD (lr 0.7, per-sentence loss) memorises four random batches: it trains
    assert row["loss_last"] < row["loss_first"] - 0.2
    assert (
        throughput_markdown([row])
        .splitlines()[-1]
        .startswith("| sutskever2014 | cpu | 32-true | 8 x (7 + 5) | ")
    )


def test_throughput_defaults_are_the_experiments():
    paper = compose_train(["experiment=sutskever2014"])
    assert vocab_sizes(paper) == (160_000, 80_000) and default_batch_size(paper, 30, 30) == 128
    base = compose_train(["experiment=transformer_base_wmt14_en_de"])
    # 6,250-token batches x 4 accumulated: the paper's ~25,000 tokens per step
    assert vocab_sizes(base) == (37_000, 37_000) and default_batch_size(base, 25, 25) == 1000
    batch = random_batch(3, 6, 4, 30, 20, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert batch["src"].shape == (3, 6) and (batch["src"][:, -1] == EOS).all()
    assert (batch["src"][:, :-1] >= 4).all() and (batch["src"] < 30).all()
    assert (batch["tgt_in"][:, 0] == BOS).all() and (batch["tgt_out"][:, -1] == EOS).all()
    assert torch.equal(batch["tgt_in"][:, 1:], batch["tgt_out"][:, :-1])
    assert batch["src_lens"].tolist() == [6, 6, 6] and batch["ntokens"] == 12


def test_throughput_runs_without_the_datasets_package():
    """The GPU machine has no `datasets`: the benchmark must not import it. Bad input is one
    line."""
    code = ("import runpy, sys; sys.modules['datasets'] = None; "
            "sys.argv = ['benchmark.py', *sys.argv[1:]]; "
            "runpy.run_path('scripts/benchmark.py', run_name='__main__')")  # fmt: skip
    args = ["throughput", "--precision", "32-true", "--batch-size", "2", "--vocab", "30", "20",
            "--steps", "1", "--warmup", "0", *TINY_LSTM]  # fmt: skip
    ok = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                        text=True, check=False)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[0].startswith("| experiment | device | precision | batch |")
    bad = run_script("benchmark.py", "throughput", "--steps", "1", "model.hidden_size=abc")
    expected = "error: model.hidden_size=abc: expected an integer (the default is 1000)"
    assert bad.returncode == 1 and bad.stderr.strip() == expected
    bad = run_script("benchmark.py", "throughput", "--device", "cuda", "--steps", "1")
    if not torch.cuda.is_available():
        assert bad.stderr.strip() == "error: --device cuda: no CUDA device is visible to PyTorch"


def test_peers_read_each_peers_times_and_need_one(tmp_path):
    peer = runpy.run_path(str(SCRIPTS / "peers.py"))  # its functions, not its main
    seconds = peer["reported_seconds"]
    assert seconds("onmt", "[...] Total translation time (s): 3.4\n[...] Average ...") == 3.4
    eole = "Step 0 time (s): 0.46\n[...] INFO] Subsequent prediction time including all (s): 2.55"
    assert seconds("eole", eole) == pytest.approx(3.01)
    joey = "Generation took 0.1229[sec].\n[...]\nGeneration took 2.3575[sec].\n"
    assert seconds("joeynmt", joey) == 2.3575  # the last data set: the test set
    with pytest.raises(UserError, match="eole 0.6.4 did not report its decoding time"):
        seconds("eole", "Step 0 time (s): 0.46")  # half of it
    with pytest.raises(UserError, match="OpenNMT-py 3.5.1 did not report its decoding time"):
        seconds("onmt", "PRED SCORE: -6.7976")

    # training: the target rates (the second of source/target) of the windows after the warm-up
    onmt = "".join(
        f"[...] Step {step}/   40; acc: 9.4; ppl: 1725.7; xent: 7.5; lr: 0.00200; sents:    2162; "
        f"bsz: 2796/3482/216; {src}/{tgt} tok/s;     68 sec;\n"
        for step, src, tgt in ((10, 410, 511), (20, 705, 935), (30, 2929, 3000), (40, 3614, 6000))
    )
    rate = peer["reported_train_rate"]
    assert rate("onmt", onmt, 20) == pytest.approx(4000)  # harmonic mean of 3000 and 6000
    assert rate("eole", onmt.replace("lr: 0.00200", "aux: 0.000; lr: 2.00e-03"), 30) == 6000
    joey = "".join(
        f"Epoch   1, Step:       {s}, Batch Loss:   1.5, Batch Acc: 0.01, Tokens per Sec:     {r}, "
        "Lr: 0.002\n"
        for s, r in ((10, 100), (20, 1590))
    )
    assert rate("joeynmt", joey, 10) == 1590
    with pytest.raises(UserError, match="JoeyNMT 2.3.0 did not report its training speed after"):
        rate("joeynmt", joey, 20)
    assert peer["peak_rss_gb"]("x\npeers.py: peak RSS 1048576 kB\n") == 1.0
    if sys.platform == "linux":  # a peer's peak RSS: its process's, polled
        code = "import time; x = b'1' * (300 << 20); time.sleep(0.5); print('done')"
        log = peer["run"]("--x-python", sys.executable, ["-c", code], "allocating")
        assert log.startswith("done\n") and 0.29 < peer["peak_rss_gb"](log) < 0.5

    runs = iter([(1.0, False), (2.0, True), (3.0, False), (4.0, True)])
    assert peer["timed_runs"](lambda: next(runs), 2) == ([2.0, 4.0], 2)
    runs = iter([(1.0, True)] + [(9.0, False)] * 5)  # gives up after 5 invalid runs
    assert peer["timed_runs"](lambda: next(runs), 2) == ([1.0], 5)
    assert peer["timed_runs"](lambda: (1.0, False), 2) == ([], 5)
    fmt = peer["fmt"]
    assert fmt({"beam5_sent_s": 50.5}, "beam5_sent_s") == "50.5"
    assert fmt({"beam5_sent_s": 50.5, "beam5_invalid_runs": 1}, "beam5_sent_s") == (
        "50.5 (1 NaN run not timed)"
    )
    assert fmt({"beam1_sent_s": None, "beam1_invalid_runs": 5}, "beam1_sent_s") == (
        "not timed (5 NaN runs)"
    )
    assert fmt({"tok_s": 8348, "tok_s_vs_peers": 2.0714}, "tok_s") == "8,348 (2.07x)"

    python = sys.executable
    for command in ("decode", "train"):
        bad = run_script("peers.py", command, "--data-dir", tmp_path, "--onmt-python", python)
        assert bad.returncode == 1 and bad.stderr.strip() == (
            f"error: --onmt-python {sys.executable}: cannot import onmt (install OpenNMT-py 3.5.1)"
        )
        none = run_script("peers.py", command, "--data-dir", tmp_path)
        assert none.returncode == 1 and none.stderr.strip() == (
            "error: give at least one of --onmt-python, --eole-python, --joeynmt-python"
        )
    with pytest.raises(UserError, match="--warmup 15 --steps 40: the peers log their speed every"):
        peer["peer_train"](tmp_path, {}, ["A"], 15, 40, 1, tmp_path)


class _Contender:
    """A stand-in for a peer in `peers.py`: fixed rates, and a log of its runs."""

    def __init__(self, tool: str, rates: dict[str, float], log: list) -> None:
        self.tool, self.label, self.rates, self.log, self.sentences = tool, tool, rates, log, 100

    def train(self, name: str) -> None:
        pass

    def train_speed(self, name: str, warmup: int, steps: int) -> tuple[float, float]:
        self.log.append((self.tool, name))
        return self.rates[name], 1.0

    def decode(self, name: str, beam: int) -> tuple[float, bool]:
        self.log.append((self.tool, name, beam))
        return self.sentences / (self.rates[name] / beam), True


class _Ours(_Contender):
    """A stand-in for ours."""


def test_peers_measure_ours_in_rounds_beside_them(tmp_path):
    """`--ours`: every contender runs once per round, ours first, each round reversed; our
    rows get their ratio to the fastest peer of the same model (JoeyNMT's A' counts for A)."""
    peer = runpy.run_path(str(SCRIPTS / "peers.py"))
    assert list(rounds([1, 2, 3], 3)) == [1, 2, 3, 3, 2, 1, 1, 2, 3]
    namespace = peer["peer_train"].__globals__  # the functions' own module globals
    log: list = []
    every = [_Ours("ours bf16", {"A": 8000, "B": 5000}, log),
             _Contender("onmt", {"A": 4000, "B": 1800}, log),
             _Contender("joeynmt", {"A": 1000, "B": 2500}, log)]  # fmt: skip
    namespace["Ours"], namespace["TOOLS"] = _Ours, {"onmt": ("O",), "joeynmt": ("J",)}
    namespace["contenders"] = lambda *args: every
    rows = peer["peer_train"](tmp_path, {}, ["A", "B"], 10, 10, 2, tmp_path, ["bf16-mixed"])
    tools = ["ours bf16", "onmt", "joeynmt"]
    assert log == [(t, m) for m in "AB" for t in tools + tools[::-1]]
    assert [(r["tool"], r["model"], r["tok_s"]) for r in rows] == [
        ("ours bf16", "A", 8000), ("O", "A", 4000), ("J", "A'", 1000),
        ("ours bf16", "B", 5000), ("O", "B", 1800), ("J", "B", 2500),
    ]  # fmt: skip
    assert rows[0]["tok_s_vs_peers"] == 2.0 and rows[3]["tok_s_vs_peers"] == 2.0
    assert all("tok_s_vs_peers" not in r for r in rows if r["tool"] != "ours bf16")
    log.clear()
    rows = peer["peer_decode"](tmp_path, {}, ["A"], [1, 5], 1, tmp_path, ["bf16-mixed"])
    assert log == [(t, "A", b) for b in (1, 5) for t in tools]
    assert rows[0]["beam1_sent_s"] == 8000 and rows[0]["beam5_sent_s"] == 1600
    assert rows[0]["beam1_sent_s_vs_peers"] == rows[0]["beam5_sent_s_vs_peers"] == 2.0
