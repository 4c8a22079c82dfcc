"""The README's "Bad input" table, one test per row: each asserts the exact message.

Rows whose message another test already asserts exactly cite that test instead (README).
In-process where the message comes from a function; a subprocess only where the entry point's
own handling (Hydra's errors, a `_target_`'s error) is what is tested.
"""

import errno
import io
import logging
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException, InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

from seq2seq import checkpoint
from seq2seq.checkpoint import load_models, read_checkpoint, save_checkpoint
from seq2seq.cli import number_type_errors, one_line
from seq2seq.data.batching import BucketBatchSampler
from seq2seq.data.datamodule import TranslationDataModule, length_filter
from seq2seq.data.sources import Demo, TextFiles
from seq2seq.data.tokenizer import TokenizerSpec, tokenizer_key
from seq2seq.errors import UserError
from seq2seq.models.lstm import LSTMSeq2Seq
from seq2seq.score import read_nbest
from seq2seq.train import CheckpointWriter, check_resumable, resume_from, train
from seq2seq.translate import translate_nbest, translate_texts
from tests.helpers import CONF, ROOT, tiny_setup, tokenizer_for


def error_of(script, *args):
    """stderr of a script that must fail, as lines."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    return proc.stderr.strip().splitlines()


def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def message(excinfo):
    return str(excinfo.value)


# --- data files --------------------------------------------------------------------------------


@pytest.fixture
def corpus(tmp_path):
    """A text-files directory with a good train/val split and the bad files of the table."""
    write(tmp_path / "train.en", ["a cat", "a dog", "the red house"])
    write(tmp_path / "train.fr", ["un chat", "un chien", "la maison rouge"])
    write(tmp_path / "val.en", ["a cat"])
    write(tmp_path / "val.fr", ["un chat"])
    write(tmp_path / "short.en", ["a", "b"])
    write(tmp_path / "short.fr", ["a"])
    write(tmp_path / "empty.en", [])
    write(tmp_path / "empty.fr", [])
    (tmp_path / "latin1.en").write_bytes("ok\ncaf\xe9\n".encode("latin-1"))
    write(tmp_path / "latin1.fr", ["ok", "café"])
    return tmp_path


def test_mismatched_line_counts(corpus):
    with pytest.raises(UserError) as e:
        TextFiles(str(corpus), "en", "fr").pairs("short")
    assert message(e) == (f"{corpus}/short.en has 2 lines but {corpus}/short.fr has 1; "
                          "parallel files must align line by line")  # fmt: skip


def test_empty_file(corpus):
    with pytest.raises(UserError) as e:
        TextFiles(str(corpus), "en", "fr").pairs("empty")
    assert message(e) == f"{corpus}/empty.en: empty file"


def test_directory_for_a_file(corpus):
    (corpus / "dir.en").mkdir()
    write(corpus / "dir.fr", ["un chat"])
    with pytest.raises(UserError) as e:
        TextFiles(str(corpus), "en", "fr").dataset("dir")
    assert message(e) == f"{corpus}/dir.en: a directory, not a text file"


def test_missing_split(corpus):
    with pytest.raises(UserError) as e:
        TextFiles(str(corpus), "en", "fr").pairs("test")
    assert message(e) == (f"{corpus}/test.en: no such file; splits with both .en and .fr in "
                          f"{corpus}: empty, latin1, short, train, val")  # fmt: skip


def test_missing_data_dir(tmp_path):
    with pytest.raises(UserError) as e:
        TextFiles(str(tmp_path / "nope"), "en", "fr")
    assert message(e) == f"data.dir={tmp_path / 'nope'}: not a directory"


def test_invalid_utf8(corpus):
    with pytest.raises(UserError) as e:
        TextFiles(str(corpus), "en", "fr").pairs("latin1")
    assert message(e) == f"{corpus}/latin1.en:2: invalid UTF-8 (byte 6); re-encode as UTF-8"


def test_unknown_language_through_the_script(tmp_path):
    """Demo() raises inside Hydra's instantiate; the script still prints one line."""
    assert error_of("train.py", "data.tgt=es", f"hydra.run.dir={tmp_path}") == [
        "error: data.tgt: unknown demo language 'es'; the demo corpus has en, fr, de"
    ]


def test_training_lines_longer_than_max_len(corpus, tmp_path, caplog):
    long = " ".join(["house"] * 50)
    write(corpus / "train.en", ["a cat", long, "a dog"])

    def setup(max_len):
        source = TextFiles(str(corpus), "en", "fr")
        dm = TranslationDataModule(source, vocab_size=24, max_len=max_len, batch_size=4,
                                   cache_dir=str(tmp_path))  # fmt: skip
        dm.setup("fit")
        return dm

    with caplog.at_level(logging.WARNING, logger="seq2seq"):
        assert len(setup(max_len=30).train_data) == 2
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "train: 2 of 3 pairs kept; dropped 0 with an empty side, 1 longer than data.max_len=30 "
        "tokens, 0 with a length ratio above data.max_len_ratio=None"
    ]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="seq2seq"):  # no limit: every pair, and the count
        assert len(setup(max_len=None).train_data) == 3
    assert (
        "train: 3 of 3 pairs kept; dropped 0 with an empty side, 0 longer than "
        "data.max_len=None tokens" in caplog.text
    )
    with pytest.raises(UserError) as e:
        setup(max_len=1)
    assert message(e) == ("data.max_len=1: every one of the 3 train pairs has an empty side or "
                          "one longer (in tokens); raise data.max_len")  # fmt: skip
    # a side of exactly max_len tokens with its EOS is kept, one more is dropped
    keep, dropped = length_filter(np.array([4, 2]), np.array([3, 5]), 5, None)
    assert keep.tolist() == [0] and dropped == {"empty": 0, "long": 1, "ratio": 0}


@pytest.mark.parametrize(
    "setting,expected",
    [
        ({"batch_size": 0}, "data.batch_size=0: expected an integer of at least 1 or null"),
        ({"batch_size": -5}, "data.batch_size=-5: expected an integer of at least 1 or null"),
        ({"batch_size": None}, "data.batch_size and data.max_tokens are both null: set one"),
        ({"max_tokens": "abc"}, "data.max_tokens=abc: expected an integer of at least 1 or null"),
        ({"max_train_pairs": 0},
         "data.max_train_pairs=0: expected an integer of at least 1 or null"),
        ({"max_len_ratio": "abc"}, "data.max_len_ratio=abc: expected a positive number or null"),
        ({"vocab_size": 0}, "data.vocab_size=0: expected an integer of at least 5"),
        ({"spm_model_type": "bpee"},
         "data.spm_model_type=bpee: expected one of unigram, bpe, char, word"),
        ({"num_workers": -1}, "data.num_workers=-1: expected an integer of at least 0"),
    ],
)  # fmt: skip
def test_batching_and_vocabulary_settings_out_of_range(setting, expected):
    """Values that used to mean something else (batch_size=0: the whole corpus in one batch;
    -5: 1; max_train_pairs=0: every pair) or failed deep inside numpy or sentencepiece."""
    with pytest.raises(UserError) as e:
        TranslationDataModule(Demo(num_train=10), **setting)
    assert message(e) == expected


def test_max_tokens_below_one_sentence():
    with pytest.raises(UserError) as e:
        BucketBatchSampler([5, 52, 7], max_tokens=10)
    assert message(e) == (
        "data.max_tokens=10 is below the longest example (52 tokens); "
        "raise it or lower data.max_len"
    )


def test_validation_line_over_valid_max_tokens():
    # Validation keeps every pair whatever its length (BLEU is over the whole set).
    dm = TranslationDataModule(Demo(num_train=200), vocab_size=100, batch_size=8,
                               valid_max_tokens=5)  # fmt: skip
    dm.setup("fit")
    with pytest.raises(UserError) as e:
        dm.val_dataloader()
    assert re.fullmatch(
        r"data\.valid_max_tokens=5 is below the longest example \(\d+ tokens\); raise it",
        message(e),
    )


def test_nbest_below_one():
    tokenizer = tokenizer_for([("a cat", "un chat")], vocab_size=20, kind="word")
    model = LSTMSeq2Seq(tokenizer.src_vocab_size, tokenizer.tgt_vocab_size, 1, 8, 8)
    with pytest.raises(UserError) as e:  # not an empty list per sentence
        translate_nbest(model, tokenizer, ["a cat"], True, nbest=0, beam_size=2)
    assert message(e) == "decode.nbest=0: must be at least 1"


def test_nbest_file_missing_or_not_utf8(tmp_path):
    with pytest.raises(UserError) as e:
        read_nbest(tmp_path / "nope.nbest")
    assert message(e) == f"{tmp_path / 'nope.nbest'}: file not found"
    bad = tmp_path / "latin1.nbest"
    bad.write_bytes("0 ||| caf\u00e9 ||| lm= -1 ||| -1\n".encode("latin-1"))
    with pytest.raises(UserError) as e:
        read_nbest(bad)
    assert message(e).startswith(f"{bad}:1: invalid UTF-8")


def test_translate_blank_and_overlong_lines(tmp_path):
    """Blank lines give blank lines in place; a line over decode.max_tokens is decoded alone."""
    pairs = [(f"a cat number {i}", f"un chat {i}") for i in range(50)]
    tokenizer = tokenizer_for(pairs, vocab_size=30)
    torch.manual_seed(0)
    model = LSTMSeq2Seq(tokenizer.src_vocab_size, tokenizer.tgt_vocab_size, 1, 16, 8).eval()
    texts = ["a cat", "", "   ", " ".join(["cat number 7"] * 20)]
    roomy = translate_texts(model, tokenizer, texts, True, max_tokens=10_000, max_len_b=0)
    tight = translate_texts(model, tokenizer, texts, True, max_tokens=1, max_len_b=0)
    assert tight == roomy and roomy[1:3] == ["", ""] and roomy[0] and roomy[3]


# --- configuration ---------------------------------------------------------------------------


def test_unknown_group_option_lists_the_valid_ones():
    assert error_of("train.py", "model=lstmm") == [
        "error: model=lstmm: no such option; model is one of lstm, transformer"
    ]


@pytest.mark.parametrize(
    "override,expected",
    [
        ("data.nokey=3", "Could not override 'data.nokey'. To append to your config use "
                         "+data.nokey=3"),
        ("data.batch_size=[1", "data.batch_size=[1: no viable alternative at input '[1' See "
                               "https://hydra.cc/docs/1.2/advanced/override_grammar/basic for "
                               "details"),
    ],
)  # fmt: skip
def test_unknown_key_or_unparsable_override(override, expected):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        with pytest.raises(HydraException) as e:
            compose("train", overrides=[override])
    assert one_line(e.value) == expected


def test_bad_override_fails_before_lightning_is_imported(tmp_path):
    """train.py and analyze.py check their overrides before importing Lightning (~10 s of
    start-up on 2 cores): a typo costs about a second."""
    code = (
        "import runpy, sys\n"
        "run_dir = 'hydra.run.dir=' + sys.argv[1]\n"
        "for script, arg in (('train.py', 'data.batch_size=abc'), ('analyze.py', 'part=speed')):\n"
        "    sys.argv = [script, arg, run_dir]\n"
        "    try:\n"
        "        runpy.run_path('scripts/' + script, run_name='__main__')\n"
        "    except SystemExit as e:\n"
        "        print(e.code)\n"
        "print('pytorch_lightning' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)  # fmt: skip
    assert proc.stdout.splitlines() == [
        "error: data.batch_size=abc: expected an integer (the default is 64)",
        "error: part='speed': expected all, gradient_flow, depth or recurrence",
        "False",
    ], proc.stderr[-2000:]


def test_required_value_or_bad_setting_not_given():
    assert error_of("evaluate.py") == ["error: ckpt: required, and not given; add ckpt=..."]
    with pytest.raises(MissingMandatoryValue) as e:
        str(OmegaConf.create({"data": {"dir": "???"}}).data.dir)
    assert one_line(e.value) == "data.dir: required, and not given; add data.dir=..."
    with pytest.raises(InstantiationException) as e:  # a value the model's code refuses
        instantiate({"_target_": "seq2seq.models.lstm.LSTMSeq2Seq", "src_vocab_size": 9,
                     "tgt_vocab_size": 9, "num_layers": 0})  # fmt: skip
    assert one_line(e.value) == (
        "cannot build seq2seq.models.lstm.LSTMSeq2Seq: num_layers must be greater than zero "
        "(its settings: --cfg job)"
    )


def test_text_for_a_number(tmp_path):
    assert error_of("train.py", "data.batch_size=abc", f"hydra.run.dir={tmp_path}") == [
        "error: data.batch_size=abc: expected an integer (the default is 64)"
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        defaults = compose("train", overrides=["model=transformer"])
        keys = ["optim.optimizer.lr", "trainer.devices", "model.d_model", "data.reverse_source",
                "data.joint_vocab", "compile", "trainer.deterministic"]  # fmt: skip
        overrides = ["model=transformer", "optim.optimizer.lr=fast", "trainer.devices=auto",
                     "model.d_model=512", "data.reverse_source=yes", "data.joint_vocab=0",
                     "compile=eager", "trainer.deterministic=warn"]  # fmt: skip
        given = compose("train", overrides=overrides)
    assert number_type_errors(given, defaults, keys) == [
        "optim.optimizer.lr=fast: expected a number (the default is 0.002)",
        "data.reverse_source=yes: expected true or false (the default is true)",
        "data.joint_vocab=0: expected true or false (the default is true)",
    ]  # devices=auto is Lightning's; compile=eager a backend, deterministic=warn Lightning's


def test_unknown_compile_backend(tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["compile=nope"])
    with pytest.raises(UserError) as e:
        train(cfg, tmp_path)
    assert message(e) == (
        "compile='nope': expected true, false or a torch.compile backend "
        "(cudagraphs, inductor, openxla, tvm, or a debugging one such as eager)"
    )
    assert list(tmp_path.iterdir()) == []  # before the data and the tokenizer


# --- checkpoints -------------------------------------------------------------------------------


def test_int8_on_a_gpu(tmp_path):
    with pytest.raises(UserError) as e:  # before the checkpoint is read, or a GPU touched
        load_models(tmp_path / "nope.ckpt", device="cuda", precision="int8")
    assert message(e) == (
        "precision=int8 runs on a CPU only, not on cuda: use device=cpu, or precision=bf16"
    )


@pytest.mark.parametrize("device", ["gpu", "cuda"])
def test_unusable_device(tmp_path, device):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UserError) as e:  # before the checkpoint is read
        load_models(tmp_path / "nope.ckpt", device=device)
    assert re.fullmatch(rf"device={device}: not usable here \(.+\); use cpu, cuda or auto",
                        message(e))  # fmt: skip


def test_resuming_another_model_or_tokenizer(tmp_path, caplog):
    """resume= with a checkpoint whose weights do not fit (other sizes) or whose tokenizer
    differs: one line each; other settings with the same weights: a warning, and it goes on."""
    module = tiny_setup(300, hidden=32)[1]
    path = tmp_path / "m.ckpt"

    def write(tokenizer):
        meta = {"model": module.model_config, "tokenizer": tokenizer, "data": {}}
        torch.save({"seq2seq": meta, "state_dict": module.state_dict()}, path)

    write(module.tokenizer.state_dict())
    wider = tiny_setup(300, hidden=48)[1]
    with pytest.raises(UserError) as e:
        check_resumable(str(path), wider)
    assert message(e) == (
        f"resume={path}: its weights do not fit this run's model (17 differ, e.g. "
        "model.decoder.bias_hh_l0; hidden_size: 32 there, 48 here); resume with its settings, "
        "or train into a new run directory"
    )
    module.model_config = {**module.model_config, "dropout": 0.3}
    with caplog.at_level(logging.WARNING, logger="seq2seq.train"):
        check_resumable(str(path), module)
    assert "other model settings than it had (dropout: None there, 0.3 here)" in caplog.text
    write({k: v.flip(0) for k, v in module.tokenizer.state_dict().items()})
    with pytest.raises(UserError) as e:
        check_resumable(str(path), module)
    assert message(e) == (
        f"resume={path}: trained with another tokenizer than this run's (other data or data.* "
        "vocabulary settings); resume with its settings, or train into a new run directory"
    )


def test_missing_checkpoint(tmp_path):
    with pytest.raises(UserError) as e:
        read_checkpoint(tmp_path / "nope.ckpt")
    assert message(e) == f"ckpt={tmp_path / 'nope.ckpt'}: no such file"
    with pytest.raises(UserError) as e:
        resume_from(str(tmp_path / "nope.ckpt"), tmp_path)
    assert message(e) == f"resume={tmp_path / 'nope.ckpt'}: no such file"


class FullDisk(io.FileIO):
    """A file on a disk that fills up after 100 bytes of a write."""

    def write(self, data):
        super().write(bytes(data[:100]))
        raise OSError(errno.ENOSPC, "No space left on device")


def fill_disk_after(monkeypatch, n):
    """`seq2seq.checkpoint` opens files normally `n` times, then on a full disk."""
    opened = []

    def fake_open(path, mode="r", *args, **kwargs):
        opened.append(path)
        if len(opened) > n:
            return FullDisk(path, mode.replace("b", ""))
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "open", fake_open, raising=False)


def test_disk_full_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    last = tmp_path / "last.ckpt"
    save_checkpoint({"step": torch.tensor(1)}, last)
    before = last.read_bytes()
    fill_disk_after(monkeypatch, 0)
    for write_it in (save_checkpoint, CheckpointWriter().save_checkpoint):  # ours, Lightning's
        with pytest.raises(UserError) as e:
            write_it({"step": torch.tensor(2)}, last)
        assert message(e) == (f"{last}: cannot write the checkpoint (No space left on device); "
                              "the previous last.ckpt is unchanged")  # fmt: skip
        assert last.read_bytes() == before and sorted(tmp_path.iterdir()) == [last]


def test_disk_full_while_training(tmp_path, monkeypatch):
    """A periodic checkpoint fails to write at step 2: one line, step 1's checkpoint intact."""
    overrides = ["data.num_train=300", "data.vocab_size=200", "model.hidden_size=16",
                 "model.embed_dim=16", "trainer.max_steps=3", "trainer.enable_progress_bar=false",
                 "checkpoint.keep_last=5",
                 "checkpoint.every_n_steps=1", "trainer.num_sanity_val_steps=0"]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    fill_disk_after(monkeypatch, 1)
    with pytest.raises(UserError) as e:
        train(cfg, tmp_path)
    step2 = tmp_path / "checkpoints" / "step=00000002.ckpt"
    assert message(e) == (f"{step2}: cannot write the checkpoint (No space left on device); "
                          "no partial file left")  # fmt: skip
    kept = list((tmp_path / "checkpoints").iterdir())
    assert [p.name for p in kept] == ["step=00000001.ckpt"]
    assert read_checkpoint(kept[0])["global_step"] == 1


# --- tokenizer cache ---------------------------------------------------------------------------


def test_tokenizer_cache_from_another_corpus_is_rebuilt(tmp_path, caplog):
    ours = [(f"a cat number {i}", f"un chat {i}") for i in range(40)]
    theirs = [(f"the dog {i} runs", f"le chien {i} court") for i in range(40)]
    built = tokenizer_for(theirs, tmp_path, vocab_size=30)
    their_key = tokenizer_key(repr(theirs), TokenizerSpec(vocab_size=30))
    our_key = tokenizer_key(repr(ours), TokenizerSpec(vocab_size=30))
    entry = tmp_path / "tokenizers" / our_key[:16]
    shutil.copytree(tmp_path / "tokenizers" / their_key[:16], entry)  # another corpus's entry
    with caplog.at_level(logging.WARNING, logger="seq2seq"):
        rebuilt = tokenizer_for(ours, tmp_path, vocab_size=30)
    assert [r.getMessage() for r in caplog.records] == [
        f"tokenizer cache {entry} was built from other data (key {their_key[:16]}..., "
        f"this corpus {our_key[:16]}...); retraining it"
    ]
    assert rebuilt.src_model != built.src_model
    assert (entry / "sha256").read_text().strip() == our_key
    assert rebuilt.src_model == tokenizer_for(ours, vocab_size=30).src_model  # as if never cached
