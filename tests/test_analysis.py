"""The "LSTM = ResNet rotated 90°" analysis: its measures on hand-made numbers and tiny models,
and `scripts/analyze.py` end to end on a slice of the demo corpus."""

import csv
import json
import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from omegaconf.errors import InterpolationToMissingValueError

from seq2seq.analysis import (
    MIN_SENTENCES,
    by_source_position,
    decay_curve,
    first_last_ratio,
    gradient_profiles,
    recurrence_cost,
    source_gradients,
)
from seq2seq.cli import one_line
from seq2seq.data.batching import collate
from seq2seq.errors import UserError
from seq2seq.models.lstm import LSTMSeq2Seq
from seq2seq.models.transformer import TransformerSeq2Seq
from tests.helpers import CONF, ROOT, run_script


def batch_of(sources, seed=0):
    g = torch.Generator().manual_seed(seed)
    examples = [
        {"idx": i, "src": s, "tgt": torch.randint(4, 20, (5,), generator=g).tolist()}
        for i, s in enumerate(sources)
    ]
    return collate(examples)


def test_each_sentence_gets_its_own_gradients_whatever_its_batch():
    torch.manual_seed(0)
    model = LSTMSeq2Seq(20, 20, num_layers=2, hidden_size=16, embed_dim=8).eval()
    sources = [[5, 6, 7, 8], [9, 10], [11, 12, 13, 14, 15, 16]]
    batched = source_gradients(model, batch_of(sources))
    assert [len(g) for g in batched] == [4, 2, 6]  # one per token, EOS excluded
    for i, g in enumerate(batched):
        alone = batch_of(sources)
        alone = {k: v[i : i + 1] if torch.is_tensor(v) else v for k, v in alone.items()}
        alone["src"] = alone["src"][:, : len(sources[i]) + 1]
        torch.testing.assert_close(source_gradients(model, alone)[0], g)


def test_shared_embeddings_measure_the_source_call():
    torch.manual_seed(0)
    model = TransformerSeq2Seq(20, 20, 1, 1, d_model=16, nhead=2, dim_feedforward=32,
                               share_embeddings=True).eval()  # fmt: skip
    grads = source_gradients(model, batch_of([[5, 6, 7], [8, 9]]))
    assert [len(g) for g in grads] == [3, 2]  # source positions, not the 6 target ones


def halving(n):  # a gradient that halves at every step away from the last token read
    return torch.tensor([2.0**k for k in range(n - 1, -1, -1)])


def test_decay_curve_and_first_last_ratio():
    grads = [halving(4)] * MIN_SENTENCES + [halving(6)] * (MIN_SENTENCES - 1)
    # distances 5 and 6 have too few sentences to plot
    assert decay_curve(grads, 10) == pytest.approx([1, 2, 4, 8])
    assert first_last_ratio(grads) == 8.0  # the median sentence is a 4-token one


def test_by_source_position_undoes_the_reversal():
    grads = [torch.tensor([3.0, 1.0, 1.0, 3.0, 2.0])] * MIN_SENTENCES  # mean 2
    assert by_source_position(grads, False, 9) == pytest.approx([1.5, 0.5, 0.5, 1.5, 1.0])
    assert by_source_position(grads, True, 9) == pytest.approx([1.0, 1.5, 0.5, 0.5, 1.5])


def test_recurrences_order_as_the_rotated_resnet_view_predicts():
    # At the paper's initialisation a tanh RNN's gradient vanishes fastest with distance; the
    # forget-gate-free LSTM (a pure residual in time) keeps it; the Transformer has no distance.
    g = torch.Generator().manual_seed(0)
    batches = [batch_of([torch.randint(4, 20, (12,), generator=g).tolist() for _ in range(4)])]
    ratios = {}
    for cell in ("rnn", "lstm", "lstm_no_forget"):
        torch.manual_seed(0)
        model = LSTMSeq2Seq(20, 20, num_layers=2, hidden_size=32, embed_dim=16, cell=cell)
        ratios[cell] = first_last_ratio(gradient_profiles(model, batches, 4))
    torch.manual_seed(0)
    transformer = TransformerSeq2Seq(20, 20, 2, 2, d_model=16, nhead=2, dim_feedforward=32)
    ratios["transformer"] = first_last_ratio(gradient_profiles(transformer, batches, 4))
    assert ratios["rnn"] < 1e-3 * ratios["lstm"]
    assert ratios["lstm"] < 1e-2 * ratios["lstm_no_forget"]
    assert 0.1 < ratios["transformer"] < 10
    assert 0.1 < ratios["lstm_no_forget"]


TINY = [
    "data_dir=unused",
    'train.common=["trainer.max_steps=6","trainer.max_epochs=100","trainer.max_time=null",'
    '"trainer.enable_progress_bar=false","trainer.val_check_interval=3","data.num_train=300",'
    '"data.vocab_size=200"]',
    'train.lstm=["experiment=demo","model.hidden_size=16","model.embed_dim=16"]',
    'train.transformer=["experiment=demo","model=transformer","model.d_model=16",'
    '"model.nhead=2","model.dim_feedforward=32"]',
    "gradient_flow.sentences=40",
    "depth.layers=[1,2]",
    "depth.overrides=[]",
    "recurrence.lengths=[4,8]",
    "recurrence.decode_lengths=[4]",
    "recurrence.repeats=1",
    "recurrence.vocab_size=50",
    "recurrence.cell_length=4",
    "recurrence.lstm={num_layers: 1, hidden_size: 16, embed_dim: 16}",
    "recurrence.transformer={num_encoder_layers: 1, num_decoder_layers: 1, d_model: 16,"
    " nhead: 2, dim_feedforward: 32}",
]


def analyze(out, *extra, process=False):
    """The script's result, in this process or (`process`) an interpreter of its own."""
    args = [f"out={out}", *TINY, *extra]
    if not process:
        return run_script("analyze.py", *args)
    return subprocess.run([sys.executable, ROOT / "scripts" / "analyze.py", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)  # fmt: skip


def test_analyze_script_end_to_end(tmp_path):
    out = tmp_path / "analysis"
    done = analyze(out)
    assert done.returncode == 0, done.stderr[-2000:]
    for part in ("gradient_flow", "depth", "recurrence"):
        for ext in ("png", "csv", "json"):
            assert (out / f"{part}.{ext}").stat().st_size > 0
    flow = json.loads((out / "gradient_flow.json").read_text())
    assert set(flow) == {"rnn", "gru", "lstm", "lstm_no_forget", "lstm_forward", "transformer"}
    assert (
        flow["rnn"]["init"]["first_last_ratio"] < flow["lstm_no_forget"]["init"]["first_last_ratio"]
    )
    assert flow["lstm"]["reverse_source"] and not flow["lstm_forward"]["reverse_source"]
    rows = list(csv.DictReader(open(out / "depth.csv")))
    assert [(r["layers"], r["residual"]) for r in rows] == [
        ("1", "False"), ("1", "True"), ("2", "False"), ("2", "True")]  # fmt: skip
    assert rows[0]["val_loss"] == rows[1]["val_loss"]  # one layer: the same run for both rows
    assert rows[2]["val_loss"] != rows[3]["val_loss"]
    cost = json.loads((out / "recurrence.json").read_text())
    assert list(cost["models"]["lstm"]["train"]) == ["4", "8"]
    assert set(cost["cells"]["seconds"]) == {
        "lstm",
        "gru",
        "rnn",
        "lstm_no_forget",
        "lstm+residual",
    }
    assert "gradient flow" in done.stdout and "cost of recurrence" in done.stdout

    # Stopped by max_steps=6 after its last validation (step 3): last.ckpt is still step 6.
    last = torch.load(out / "runs" / "lstm" / "last.ckpt", weights_only=True, mmap=True)
    assert last["global_step"] == 6

    # A rerun reuses every finished training run and only redraws.
    stamp = (out / "runs" / "depth2" / "last.ckpt").stat().st_mtime
    again = analyze(out, "part=depth")
    assert again.returncode == 0, again.stderr[-2000:]
    assert (out / "runs" / "depth2" / "last.ckpt").stat().st_mtime == stamp
    assert list(csv.DictReader(open(out / "depth.csv"))) == rows


def test_analyze_rejects_an_unknown_part(tmp_path):
    done = analyze(tmp_path, "part=speed", process=True)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "error: part='speed': expected all, gradient_flow, depth or recurrence"
    )


@pytest.mark.parametrize(
    "setting,expected",
    [
        ("recurrence.precision=16-mixed",
         "recurrence.precision=16-mixed: expected one of auto, bf16-mixed, 32-true"),
        ("recurrence.device=mps", "recurrence.device=mps: expected one of cpu, cuda"),
    ],
)  # fmt: skip
def test_recurrence_settings_it_cannot_run(tmp_path, setting, expected):
    """A precision it would not run (it labelled fp32 timings 16-mixed) or a device it has no
    code for: one line. A missing data_dir: one line too (an interpolation read it)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("analyze", overrides=["data_dir=x", setting])
    with pytest.raises(UserError) as e:
        recurrence_cost(cfg, tmp_path)
    assert str(e.value) == expected
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("analyze")
    with pytest.raises(InterpolationToMissingValueError) as e:
        OmegaConf.to_container(cfg, resolve=True)
    assert one_line(e.value) == "data_dir: required, and not given; add data_dir=..."
