"""Train -> evaluate -> translate through the real scripts, on a tiny slice of the demo corpus.

The first training run, the interrupted ones and DDP start `python scripts/train.py` as a user
does; the other script calls run the same scripts in this process (`run_script`), which saves
each a new interpreter's start-up."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from seq2seq.checkpoint import load_checkpoint
from seq2seq.data.batching import BucketBatchSampler
from seq2seq.data.datamodule import TranslationDataModule
from seq2seq.data.sources import Demo
from seq2seq.metrics import corpus_bleu
from seq2seq.translate import translate_texts
from tests.helpers import ROOT, recorded, run_script

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
    # fp32: evaluate.py (fp32 by default) must then reproduce the logged validation BLEU exactly;
    # trainer.precision=auto validates under bf16 autocast on CPUs with bf16, a hair apart
    "trainer.precision=32-true",
]


def run(script, *args, stdin=None, ok=True, process=False):
    """The script's result; `process`: in an interpreter of its own."""
    if not process:
        proc = run_script(script, *args, stdin=stdin)
    else:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / script), *args],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},  # tests.helpers' callbacks, by _target_
            timeout=300,
        )
    assert (proc.returncode == 0) == ok, proc.stderr[-3000:]
    return proc


def error_of(script, *args):
    """The stderr of a script that must fail, stripped."""
    return run(script, *args, ok=False).stderr.strip()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    proc = run("train.py", *TINY, f"hydra.run.dir={run_dir}", process=True)
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
    # stdin's bytes, as a shell pipes them: a line that is not UTF-8 is named in one line
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "translate.py"),
                           f"ckpt={run_dir / 'best.ckpt'}"], input=b"Hello.\ncaf\xe9\n",
                          capture_output=True, cwd=ROOT, timeout=120)  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.decode().splitlines()[-1] == (
        "error: stdin:2: invalid UTF-8 (byte 10); re-encode as UTF-8"
    )


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
    lines = error_of("evaluate.py", f"ckpt={bad}", f"hydra.run.dir={tmp_path}").splitlines()
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

    error = error_of("evaluate.py", ckpt, "data=text_files", f"data.dir={data_dir}",
                     "data.tgt=de", "split=news", f"hydra.run.dir={out}")  # fmt: skip
    assert error.startswith("error: data.tgt=de but")


TINY_TRANSFORMER = [  # model=transformer on the demo corpus, with two checkpoints to average
    "model=transformer",
    "data.num_train=1000",
    "data.vocab_size=300",
    "data.batch_size=32",
    "model.d_model=32",
    "model.nhead=2",
    "model.dim_feedforward=64",
    "optim.optimizer.lr=0.005",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "checkpoint.keep_last=2",
]


@pytest.fixture(scope="module")
def transformer_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("transformer")
    run("train.py", *TINY_TRANSFORMER, f"hydra.run.dir={run_dir}")
    return run_dir


def test_transformer_train_average_evaluate_translate(transformer_run, tmp_path):
    run_dir = transformer_run
    config = (run_dir / "config.yaml").read_text()
    assert "TransformerSeq2Seq" in config and "share_embeddings: true" in config
    kept = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
    assert len(kept) == 2 and kept[0].startswith("step=")

    proc = run("average_checkpoints.py", f"run={run_dir}", "last=2")
    averaged = run_dir / "averaged_last2.ckpt"
    assert proc.stdout.strip() == f"averaged 2 checkpoints ({kept[0]} .. {kept[1]}) -> {averaged}"
    meta = torch.load(averaged, weights_only=True)["seq2seq"]
    assert [p.rsplit("/", 1)[-1] for p in meta["averaged_from"]] == kept

    out = tmp_path / "eval"
    proc = run("evaluate.py", f"ckpt={averaged}", "split=test", "decode=transformer",
               f"hydra.run.dir={out}")  # fmt: skip
    result = json.loads((out / "test.json").read_text())
    assert result["decode"]["length_penalty"] == "gnmt" and result["decode"]["beam_size"] == 4
    assert proc.stdout.startswith("test: BLEU ") and 0 <= result["bleu"] <= 100
    proc = run("translate.py", f"ckpt={averaged}", "decode=transformer",
               stdin="The museum opens on Monday at 9:00 AM.\n")  # fmt: skip
    assert len(proc.stdout.splitlines()) == 1


def test_average_checkpoints_needs_a_source(tmp_path):
    assert error_of("average_checkpoints.py", f"run={tmp_path}") == (
        f"error: run={tmp_path}: asked for the last 5 checkpoints, {tmp_path / 'checkpoints'} "
        "has 0 (train with checkpoint.keep_last=N)"
    )


def test_decode_speed_table(transformer_run):
    proc = run("decode_speed.py", f"ckpt={transformer_run / 'best.ckpt'}", "limit=16",
               "forced_length=12", "per_sentence_limit=4", "beams=[1,3]")  # fmt: skip
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("test, ") and lines[1].split() == [
        "beam",
        "output",
        "batched",
        "per_sentence",
        "recompute",
    ]
    assert [line.split()[:2] for line in lines[2:]] == [
        ["1", "natural"],
        ["1", "forced"],
        ["3", "natural"],
        ["3", "forced"],
    ]
    for line in lines[2:]:  # batching and the cache change the speed, never the output
        assert line.count("(100.0%)") == 3, line


def test_ensemble_nbest_and_report(trained, tmp_path):
    run_dir, _ = trained
    best, last = run_dir / "best.ckpt", run_dir / "last.ckpt"
    single, copies = tmp_path / "single", tmp_path / "copies"
    run("evaluate.py", f"ckpt={best}", "split=test", f"hydra.run.dir={single}")
    run("evaluate.py", f"ckpt=[{best},{best}]", "split=test", f"hydra.run.dir={copies}")
    one = json.loads((single / "test.json").read_text())
    two = json.loads((copies / "test.json").read_text())
    assert two["ckpt"] == [str(best), str(best)] and two["bleu"] == pytest.approx(one["bleu"])

    out = tmp_path / "ensemble"
    proc = run("evaluate.py", f"ckpt=[{best},{last}]", "split=test", "decode=beam",
               "decode.beam_size=3", "decode.nbest=3", f"hydra.run.dir={out}")  # fmt: skip
    assert "tokenised BLEU" in proc.stdout and "TER" in proc.stdout
    result = json.loads((out / "test.json").read_text())
    assert {"ter", "ter_signature", "tokenised_bleu", "by_length", "by_rarity"} <= result.keys()
    assert sum(r["sentences"] for r in result["by_length"]) == 500
    assert sum(r["sentences"] for r in result["by_rarity"]) == 500
    assert (out / "test.png").stat().st_size > 1000 and (out / "test.buckets.md").is_file()
    nbest = (out / "test.nbest").read_text(encoding="utf-8").splitlines()
    hyps = (out / "test.hyp").read_text(encoding="utf-8").splitlines()
    firsts = {}
    for line in nbest:
        i, hyp, features, score = line.split(" ||| ")
        assert features.startswith("model= ")
        firsts.setdefault(int(i), hyp)
    assert len(nbest) <= 1500 and all(hyps[i] == h for i, h in firsts.items())

    proc = run("translate.py", f"ckpt=[{best},{last}]", stdin="Hello.\n")
    assert len(proc.stdout.splitlines()) == 1


def test_ensemble_members_must_share_vocabularies(trained, transformer_run, tmp_path):
    lstm, transformer = trained[0] / "best.ckpt", transformer_run / "best.ckpt"
    error = error_of("evaluate.py", f"ckpt=[{lstm},{transformer}]", f"hydra.run.dir={tmp_path}")
    assert error == (
        f"error: ckpt={transformer}: its tgt vocabulary differs from {lstm}'s; "
        "ensemble members must share their vocabularies"
    )


def test_score_script_rescores_an_nbest_list(trained, tmp_path):
    run_dir, _ = trained
    ckpt = f"ckpt={run_dir / 'best.ckpt'}"
    (tmp_path / "src").write_text("Hello.\nThe museum opens on Monday.\n")
    (tmp_path / "nbest").write_text("0 ||| Bonjour. ||| lm= -1 ||| -1\n"
                                    "1 ||| Le musée ouvre lundi. ||| lm= -1 ||| -2\n"
                                    "1 ||| Lundi. ||| lm= -1 ||| -30\n")  # fmt: skip
    proc = run("score.py", ckpt, f"src={tmp_path / 'src'}", f"nbest={tmp_path / 'nbest'}",
               "rescore=true")  # fmt: skip
    assert proc.stdout.splitlines() == ["Bonjour.", "Le musée ouvre lundi."]


RESUMABLE = [*(a for a in TINY[:-3] if "dropout" not in a and "num_train" not in a),
             "data.num_train=1000", "model.dropout=0.2", "trainer.max_epochs=2",
             "trainer.enable_progress_bar=false", "checkpoint.keep_last=100",
             "checkpoint.every_n_steps=10"]  # fmt: skip


EPOCH_END = 32  # RESUMABLE's batches per epoch


@pytest.fixture(scope="module")
def uninterrupted_dir(tmp_path_factory):
    """RESUMABLE's run, never stopped; `epoch_end/` also holds its checkpoint at the last batch
    of the first epoch."""
    full = tmp_path_factory.mktemp("full")
    epoch_end = (f"{{_target_: pytorch_lightning.callbacks.ModelCheckpoint, save_top_k: -1, "
                 f"dirpath: {full / 'epoch_end'}, every_n_train_steps: {EPOCH_END}}}")  # fmt: skip
    run("train.py", *RESUMABLE, f"hydra.run.dir={full}", f"+callbacks.epoch_end={epoch_end}")
    return full


@pytest.fixture(scope="module")
def uninterrupted(uninterrupted_dir):
    return torch.load(uninterrupted_dir / "last.ckpt", weights_only=True)


def train_process(run_dir, *args):
    """`python scripts/train.py` in a process group of its own, as SLURM starts a job's tasks
    (under DDP, every rank is in it)."""
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), *args]
    return subprocess.Popen([*command, f"hydra.run.dir={run_dir}"], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip


def exit_status(proc, timeout=120):
    """The process's exit status; a run still going after `timeout` s is killed, and fails."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # SIGTERM may be held by a hung run
        raise AssertionError(f"the run did not end within {timeout} s") from None


def start_and_stop(run_dir, at_step, sig):
    """Start training into run_dir and send `sig` to it once checkpoint `at_step` exists."""
    proc = train_process(run_dir, *RESUMABLE)
    target = run_dir / "checkpoints" / f"step={at_step:08d}.ckpt"
    deadline = time.time() + 240
    while not target.exists() and time.time() < deadline:
        assert proc.poll() is None, f"the run ended before step {at_step}"
        time.sleep(0.02)
    assert target.exists(), f"no checkpoint at step {at_step} within 240 s"
    os.killpg(proc.pid, sig)
    exit_status(proc)


def same_weights(a, b, past_step=50):
    assert a["global_step"] == b["global_step"] > past_step
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k


def test_killed_run_resumes_to_the_same_weights(uninterrupted, tmp_path):
    """SIGKILL mid-epoch, corrupt the newest checkpoint, `resume=auto`: the final weights equal
    an uninterrupted run's (same data order mid-epoch, optimizer, schedule, RNG)."""
    killed = tmp_path / "killed"
    start_and_stop(killed, 50, signal.SIGKILL)  # epoch 2 starts near step 32
    assert not (killed / "checkpoints" / "step=00000060.ckpt").exists()
    newest = killed / "checkpoints" / "step=00000050.ckpt"
    newest.write_bytes(b"truncated")  # the newest checkpoint is unreadable: fall back
    run("train.py", *RESUMABLE, f"hydra.run.dir={killed}", "resume=auto")
    same_weights(uninterrupted, torch.load(killed / "last.ckpt", weights_only=True))
    assert (killed / "logs" / "metrics.csv").is_file()  # the interrupted run's log is kept
    assert (killed / "logs" / "resume1" / "metrics.csv").is_file()


def test_resumed_from_an_epochs_last_batch(uninterrupted_dir, uninterrupted, tmp_path):
    """A checkpoint written at the last batch of an epoch: Lightning goes on with the next epoch
    without `on_train_epoch_start`. The resumed run shuffles it as that epoch (it replayed the
    first epoch's order) and draws the same dropout masks (the data loaders' own generators),
    so it ends with the uninterrupted run's weights."""
    (ckpt,) = (uninterrupted_dir / "epoch_end").glob(f"*step={EPOCH_END}.ckpt")
    progress = torch.load(ckpt, weights_only=True)["loops"]["fit_loop"]
    assert progress["epoch_loop.batch_progress"]["current"]["processed"] == EPOCH_END
    assert progress["epoch_progress"]["current"]["completed"] == 0  # the epoch had not ended
    run("train.py", *RESUMABLE, f"hydra.run.dir={tmp_path}", f"resume='{ckpt}'")
    same_weights(uninterrupted, torch.load(tmp_path / "last.ckpt", weights_only=True))


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_signal_after_the_batch_was_handled_saves_at_the_next(uninterrupted, tmp_path, sig):
    """A SIGTERM, or a Ctrl-C (SIGINT, to the whole process group as a terminal sends it,
    DataLoader workers included), arriving after SaveOnStop has handled a batch's end (here
    sent by a later callback, at step 40) is held to the next batch's end: `last.ckpt` is
    written there, and resuming from it ends as the uninterrupted run does. Lightning's own
    SIGTERM handler stopped such a run with no `last.ckpt` of its own; Ctrl-C wrote none, and
    its worker died on it."""
    stopped = tmp_path / "late"
    group = sig == "SIGINT"
    kill = f"{{_target_: tests.helpers.SignalAfterBatch, step: 40, sig: {sig}, group: {group}}}"
    workers = ["data.num_workers=1"] if group else []
    assert exit_status(train_process(stopped, *RESUMABLE, *workers, f"+callbacks.kill={kill}")) == 0
    assert torch.load(stopped / "last.ckpt", weights_only=True)["global_step"] == 41
    name = {"SIGTERM": "SIGTERM", "SIGINT": "Ctrl-C"}[sig]
    log = (stopped / "train.log").read_text()
    assert f"{name}: saved {stopped / 'last.ckpt'}; rerun with resume=auto" in log
    assert not (stopped / "checkpoints" / "step=00000050.ckpt").exists()
    run("train.py", *RESUMABLE, f"hydra.run.dir={stopped}", "resume=auto")
    same_weights(uninterrupted, torch.load(stopped / "last.ckpt", weights_only=True))


@pytest.mark.parametrize("validation", [True, False])
def test_runs_stopped_by_their_limits_resume_to_the_same_weights(uninterrupted, tmp_path,
                                                                  validation):  # fmt: skip
    """A finished run (max_epochs=1), extended to 45 steps (max_steps, mid-epoch), to 1.5
    epochs (48 steps), rerun as it is (no further step), then extended to the uninterrupted
    run's two epochs, ends with its weights: each `last.ckpt` was written inside the loop.
    Written after `fit` returned, it counted the stopped epoch as finished, so the resumed run
    skipped the rest of that epoch. Without validation (which writes last.ckpt at the epoch's
    end too), a run resumed from the end of epoch 1 counted one epoch too few, and the next
    resume lost its place."""
    limits = ["trainer.max_epochs=1", "trainer.max_steps=45", "trainer.max_epochs=1.5",
              "trainer.max_epochs=1.5", "trainer.max_epochs=2"]  # fmt: skip
    for i, limit in enumerate(limits):
        args = [*(a for a in RESUMABLE if not a.startswith("trainer.max_epochs")), limit,
                *([] if validation else ["+trainer.limit_val_batches=0"])]  # fmt: skip
        run("train.py", *args, f"hydra.run.dir={tmp_path}", *(["resume=auto"] if i else []))
        step = torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"]
        assert step == [EPOCH_END, 45, 48, 48, 2 * EPOCH_END][i], limit
    same_weights(uninterrupted, torch.load(tmp_path / "last.ckpt", weights_only=True))


def test_a_stop_deferred_by_min_epochs_writes_last_checkpoint(tmp_path):
    """A stop asked for at step 10 with min_epochs=2 takes effect at the end of epoch 2
    (max_epochs is 3, no validation): `last.ckpt` is written there (it was not written)."""
    stop = "{_target_: tests.helpers.StopAtStep, step: 10}"
    args = [*(a for a in RESUMABLE if not a.startswith("trainer.max_epochs")),
            "trainer.max_epochs=3", "+trainer.min_epochs=2", "+trainer.limit_val_batches=0",
            "checkpoint.keep_last=0", f"+callbacks.stop={stop}"]  # fmt: skip
    run("train.py", *args, f"hydra.run.dir={tmp_path}")
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 2 * EPOCH_END


def test_last_checkpoint_at_every_validation(tmp_path):
    """`last.ckpt` is written at every validation, the best one or not (here none is better
    than the first: the learning rate is 0), so a killed run loses at most the steps since."""
    args = [
        *(a.replace("max_epochs=2", "max_epochs=1") for a in RESUMABLE),
        "optim.optimizer.lr=0",
        "trainer.val_check_interval=8",
        "checkpoint.keep_last=0",
    ]
    kill = "{_target_: tests.helpers.SignalAfterBatch, step: 30, sig: SIGKILL}"
    run("train.py", *args, f"hydra.run.dir={tmp_path}", f"+callbacks.kill={kill}", process=True,
        ok=False)  # fmt: skip
    assert torch.load(tmp_path / "best.ckpt", weights_only=True)["global_step"] == 8
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 24


def test_sigterm_waits_for_the_accumulated_step(tmp_path):
    """With gradients accumulated over 2 batches, a SIGTERM's `last.ckpt` is written only where
    the optimizer has just stepped (it was written at the next batch, mid-accumulation, and the
    resumed run stepped on half the gradients): resuming ends with the uninterrupted weights."""
    accumulating = [*(a.replace("max_epochs=2", "max_epochs=1") for a in RESUMABLE),
                    "trainer.accumulate_grad_batches=2"]  # fmt: skip
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    run("train.py", *accumulating, f"hydra.run.dir={full}")
    kill = "{_target_: tests.helpers.SignalAfterBatch, step: 10}"  # at batch 20 (and 21)
    run("train.py", *accumulating, f"hydra.run.dir={stopped}", f"+callbacks.kill={kill}",
        process=True)  # fmt: skip
    last = torch.load(stopped / "last.ckpt", weights_only=True)
    done = last["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["processed"]
    assert last["global_step"] == 11 and done == 22  # not batch 21's end
    run("train.py", *accumulating, f"hydra.run.dir={stopped}", "resume=auto")
    a, b = (torch.load(d / "last.ckpt", weights_only=True) for d in (full, stopped))
    same_weights(a, b, past_step=15)


def test_a_stop_between_optimizer_steps_waits_for_the_next(tmp_path):
    """Accumulating over 2 batches, a stop asked for once after batch 21 (between two steps)
    takes effect after batch 22, where the optimizer steps: last.ckpt holds no half-summed
    gradient."""
    stop = "{_target_: tests.helpers.StopAtStep, batch: 21}"
    args = [*(a.replace("max_epochs=2", "max_epochs=1") for a in RESUMABLE),
            "trainer.accumulate_grad_batches=2", "+trainer.limit_val_batches=0",
            "checkpoint.keep_last=0", f"+callbacks.stop={stop}"]  # fmt: skip
    run("train.py", *args, f"hydra.run.dir={tmp_path}")
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    done = last["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["processed"]
    assert (last["global_step"], done) == (11, 22)


def test_validation_checkpoints_wait_for_the_accumulated_step(tmp_path):
    """Accumulating over 2 batches and validating every 7 of an epoch's 16: validation, and
    the best and last checkpoints written there, come after batches 8 and 16, where the
    optimizer has just stepped (they came after batches 7 and 14, and a run resumed from
    them lost those batches' gradients)."""
    accumulating = [*(a.replace("max_epochs=2", "max_epochs=1") for a in RESUMABLE),
                    "data.num_train=500", "trainer.accumulate_grad_batches=2",
                    "trainer.val_check_interval=7", "checkpoint.keep_last=0"]  # fmt: skip
    epochs = (f"{{_target_: pytorch_lightning.callbacks.ModelCheckpoint, save_top_k: -1, "
              f"dirpath: {tmp_path / 'at_val'}, every_n_epochs: 1, save_on_train_epoch_end: false, "
              f"filename: '{{step}}'}}")  # fmt: skip
    run("train.py", *accumulating, f"hydra.run.dir={tmp_path}", f"+callbacks.val={epochs}")
    written = {}
    for path in (tmp_path / "at_val").glob("*.ckpt"):
        ckpt = torch.load(path, weights_only=True)
        progress = ckpt["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]
        written[ckpt["global_step"]] = progress["processed"]
    assert written == {4: 8, 8: 16}  # optimizer steps: batches processed


def test_ddp_on_two_cpu_processes(tmp_path):
    """A real 2-process DDP run (gloo) through the entry point: each rank trains on and
    validates its own shard of the length-bucketed batches, validation BLEU is over the whole
    set (gathered), one summary, one checkpoint, holding the weights every rank ended with.
    Stopped by a SIGTERM to one rank and resumed, it ends with the same weights."""
    record = tmp_path / "record"
    record.mkdir()
    callback = f"{{_target_: tests.helpers.RecordExamples, directory: {record}}}"
    args = ["trainer=ddp_cpu", "data.num_train=1000", "data.vocab_size=300",
            "data.batch_size=32", "data.valid_max_tokens=500", "model.hidden_size=32",
            "model.embed_dim=32", "model.dropout=0.2", "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false", "checkpoint.keep_last=5",
            "checkpoint.every_n_steps=6"]  # fmt: skip
    proc = run("train.py", *args, f"+callbacks.record={callback}", f"hydra.run.dir={tmp_path}",
               process=True)  # fmt: skip
    assert proc.stdout.count("best val BLEU") == 1  # rank 0 alone prints the summary
    assert (tmp_path / "train_ddp_process_1.log").is_file()  # the second process ran

    dm = TranslationDataModule(Demo(num_train=1000), vocab_size=300, batch_size=32)
    dm.prepare_tokenizer()
    dm.setup("fit")
    batches = BucketBatchSampler(dm.train_data.lengths(), batch_size=32).batches()
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == -(-len(batches) // 2)  # half the batches each, in lockstep
    train = [set(recorded(record, "train", rank)) for rank in (0, 1)]
    assert train[0] | train[1] == set(range(len(dm.train_data)))  # every example trained on
    assert len(batches) % 2 == 0  # no wrap-around batch repeated for rank 1: shards disjoint
    assert not train[0] & train[1]
    val = [recorded(record, "val", rank) for rank in (0, 1)]
    assert val[0] and val[1] and set(val[0]) | set(val[1]) == set(range(len(dm.valid_data)))
    for rank in (0, 1):  # the weights every rank ended with are the checkpoint's
        weights = torch.load(record / f"weights_rank{rank}.pt", weights_only=True)
        for name, value in weights.items():
            torch.testing.assert_close(value, ckpt["state_dict"][name], rtol=0, atol=0)

    # SIGTERM to rank 1 alone, after it handled step 6's end: it holds the signal to step 7's
    # end, where rank 0 learns of it too; both write last.ckpt there and stop (when rank 1 alone
    # stopped, the ranks waited on each other's mismatched collectives forever). Resumed from
    # it mid-epoch, both ranks continue their own data and dropout RNG: the final weights are
    # the uninterrupted run's.
    stopped = tmp_path / "stopped"
    kill = "{_target_: tests.helpers.SignalAfterBatch, step: 6, rank: 1}"
    assert exit_status(train_process(stopped, *args, f"+callbacks.kill={kill}")) == 0
    assert torch.load(stopped / "last.ckpt", weights_only=True)["global_step"] == 7
    run("train.py", *args, f"hydra.run.dir={stopped}", "resume=auto", process=True)
    for name, value in torch.load(stopped / "last.ckpt", weights_only=True)["state_dict"].items():
        torch.testing.assert_close(value, ckpt["state_dict"][name], rtol=0, atol=0)

    # Ctrl-C, as a terminal sends it: SIGINT to every rank at once. Both hold it to step 7's
    # end and stop there with last.ckpt (Lightning's handler passed the SIGINT on to rank 1,
    # which took it for a second Ctrl-C and died without one).
    ctrl_c = tmp_path / "ctrl_c"
    kill = "{_target_: tests.helpers.SignalAfterBatch, step: 6, rank: 0, sig: SIGINT, group: true}"
    assert exit_status(train_process(ctrl_c, *args, f"+callbacks.kill={kill}")) == 0
    assert torch.load(ctrl_c / "last.ckpt", weights_only=True)["global_step"] == 7

    # The logged BLEU is the whole validation set's: the same as decoding it in one process.
    loaded = load_checkpoint(tmp_path / "last.ckpt")
    sources, refs = zip(*Demo(num_train=1000).pairs("val"))
    hyps = translate_texts(loaded.model, loaded.tokenizer, list(sources), reverse_source=True)
    logged = [r["val/bleu"] for r in csv.DictReader(open(tmp_path / "logs" / "metrics.csv"))]
    assert float([b for b in logged if b][-1]) == pytest.approx(corpus_bleu(hyps, list(refs))[0])
