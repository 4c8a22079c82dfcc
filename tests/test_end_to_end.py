"""Train -> evaluate -> translate through the real scripts, on a tiny slice of the demo corpus."""

import json
import subprocess
import sys

import pytest
import torch

from tests.helpers import ROOT

TINY = [  # ~15 s on 2 cores; enough to produce non-empty (if poor) translations
    "data.num_train=2000",
    "data.vocab_size=400",
    "data.batch_size=32",
    "model.hidden_size=96",
    "model.embed_dim=64",
    "model.dropout=0",
    "optim.optimizer.lr=0.005",
    "trainer.max_epochs=3",
    "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=5",
]


def run(script, *args, stdin=None):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    proc = run("train.py", *TINY, f"hydra.run.dir={run_dir}")
    return run_dir, proc.stdout


def test_train_writes_run_directory(trained):
    run_dir, stdout = trained
    for name in ("best.ckpt", "last.ckpt", "tokenizer/spm.model", "config.yaml",
                 "logs/metrics.csv", ".hydra/config.yaml"):  # fmt: skip
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tb").rglob("events.out.tfevents*"))
    assert "best val BLEU" in stdout and str(run_dir / "best.ckpt") in stdout
    metrics = (run_dir / "logs" / "metrics.csv").read_text().splitlines()[0]
    for key in (
        "train/loss",
        "train/ppl",
        "train/tok_s",
        "train/lr",
        "val/bleu",
        "val/loss",
        "val/ppl",
    ):
        assert key in metrics


def test_evaluate_agrees_with_validation_bleu(trained, tmp_path):
    run_dir, stdout = trained
    run("evaluate.py", f"ckpt={run_dir / 'best.ckpt'}", "split=val", f"hydra.run.dir={tmp_path}")
    result = json.loads((tmp_path / "val.json").read_text())
    logged = [line for line in (run_dir / "logs" / "metrics.csv").read_text().splitlines()]
    header = logged[0].split(",")
    bleus = [float(r.split(",")[header.index("val/bleu")]) for r in logged[1:]
             if r.split(",")[header.index("val/bleu")]]  # fmt: skip
    assert result["bleu"] > 0 and result["bleu"] == pytest.approx(max(bleus), abs=1e-6)
    assert result["bleu_signature"].startswith("nrefs:1|case:mixed")
    hyps = (tmp_path / "val.hyp").read_text(encoding="utf-8").splitlines()
    assert len(hyps) == result["sentences"] == 500


def test_evaluate_test_split_with_beam(trained, tmp_path):
    run_dir, _ = trained
    proc = run("evaluate.py", f"ckpt={run_dir / 'best.ckpt'}", "split=test", "decode=beam",
               "decode.beam_size=3", f"hydra.run.dir={tmp_path}")  # fmt: skip
    assert proc.stdout.startswith("test: BLEU ")
    result = json.loads((tmp_path / "test.json").read_text())
    assert result["decode"]["beam_size"] == 3 and 0 <= result["bleu"] <= 100
    assert "chrf" in result and "chrf_signature" in result


def test_translate_stdin_to_stdout(trained):
    run_dir, _ = trained
    lines = "Tuesday, March 3, 2026\n\nThe meeting is at 3:45 PM.\n"
    proc = run("translate.py", f"ckpt={run_dir / 'best.ckpt'}", "chunk=2", stdin=lines)
    out = proc.stdout.split("\n")
    assert len(out) == 4 and out[3] == ""  # three lines in, three out (empty stays empty)
    assert out[0] and out[1] == "" and out[2]


class Unsafe:
    pass


@pytest.mark.parametrize(
    "content,message",
    [
        (b"not a checkpoint", "not a readable checkpoint (truncated or corrupt?)"),
        ({"seq2seq": Unsafe()}, "refused, loading it would unpickle tests.test_end_to_end.Unsafe"),
        ({"state_dict": {}}, "not a seq2seq checkpoint"),
    ],
)
def test_bad_checkpoint_is_one_line_error(tmp_path, content, message):
    bad = tmp_path / "bad.ckpt"
    if isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        torch.save(content, bad)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "evaluate.py"), f"ckpt={bad}",
         f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: ckpt={bad}: {message}")


def test_evaluate_on_other_data(trained, tmp_path):
    run_dir, _ = trained
    data_dir = tmp_path / "other"
    data_dir.mkdir()
    (data_dir / "news.en").write_text("The party is on Sunday, September 29, 1996.\nHello.\n")
    (data_dir / "news.fr").write_text("La fête a lieu le dimanche 29 septembre 1996.\nBonjour.\n")
    ckpt = f"ckpt={run_dir / 'best.ckpt'}"
    out = tmp_path / "out"
    run("evaluate.py", ckpt, "data=text_files", f"data.dir={data_dir}", "split=news",
        f"hydra.run.dir={out}")  # fmt: skip
    assert json.loads((out / "news.json").read_text())["sentences"] == 2
    assert len((out / "news.hyp").read_text(encoding="utf-8").splitlines()) == 2

    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "evaluate.py"), ckpt, "data=text_files",
         f"data.dir={data_dir}", "data.tgt=de", "split=news", f"hydra.run.dir={out}"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert proc.stderr.strip().startswith("error: data.tgt=de but")
