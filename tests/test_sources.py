import os
import subprocess
import sys

import pytest

from seq2seq.data.sources import HFDataset, TextFiles
from seq2seq.errors import UserError
from tests.helpers import CONF


def write(dir, name, lines):
    (dir / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_text_files_pairs_and_splits(tmp_path):
    write(tmp_path, "train.en", ["a cat", "a dog"])
    write(tmp_path, "train.fr", ["un chat", "un chien"])
    write(tmp_path, "test_2016_flickr.en", ["hello"])
    write(tmp_path, "test_2016_flickr.fr", ["bonjour"])
    write(tmp_path, "only.en", ["x"])
    src = TextFiles(str(tmp_path), "en", "fr")
    assert src.splits() == ["test_2016_flickr", "train"]
    assert src.pairs("train") == [("a cat", "un chat"), ("a dog", "un chien")]
    assert TextFiles(str(tmp_path), "fr", "en").pairs("test_2016_flickr") == [("bonjour", "hello")]


def test_text_files_errors_name_the_file(tmp_path):
    write(tmp_path, "train.en", ["a", "b"])
    write(tmp_path, "train.fr", ["a"])
    src = TextFiles(str(tmp_path), "en", "fr")
    with pytest.raises(UserError, match=r"train\.en has 2 lines but .*train\.fr has 1"):
        src.pairs("train")
    with pytest.raises(UserError, match=r"test\.en: no such file; splits with both"):
        src.pairs("test")
    (tmp_path / "bad.en").write_bytes(b"ok\n\xff\xfe\n")
    write(tmp_path, "bad.fr", ["ok", "ok"])
    with pytest.raises(UserError, match=r"bad\.en:2: invalid UTF-8"):
        src.pairs("bad")
    write(tmp_path, "empty.en", [])
    write(tmp_path, "empty.fr", [])
    with pytest.raises(UserError, match="empty file"):
        src.pairs("empty")
    with pytest.raises(UserError, match="not a directory"):
        TextFiles(str(tmp_path / "nope"), "en", "fr")


@pytest.fixture
def hub_parquet(tmp_path):
    """Local parquet files in the hub's translation schema (as the wmt14 dataset has)."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    files = {}
    for split, n in (("train", 5), ("validation", 2)):
        rows = [{"en": f"sentence {i}", "fr": f"phrase {i}"} for i in range(n)]
        path = tmp_path / f"{split}.parquet"
        pq.write_table(pa.table({"translation": rows}), path)
        files[split] = str(path)
    return files


def test_hf_dataset_translation_schema(hub_parquet):
    src = HFDataset("parquet", "en", "fr", data_files=hub_parquet)
    assert src.splits() == ["train", "validation"]
    assert src.pairs("validation") == [("sentence 0", "phrase 0"), ("sentence 1", "phrase 1")]
    assert HFDataset("parquet", "fr", "en", data_files=hub_parquet).pairs("train")[4] == (
        "phrase 4",
        "sentence 4",
    )


def test_hf_dataset_unknown_language(hub_parquet):
    with pytest.raises(
        UserError, match=r"data.tgt=de: parquet split train has no 'de' \(languages: en, fr\)"
    ):
        HFDataset("parquet", "en", "de", data_files=hub_parquet).pairs("train")


def test_demo_source_caches_text_files(tmp_path):
    from seq2seq.data.sources import Demo

    demo = Demo("en", "de", num_train=50, cache_dir=str(tmp_path))
    assert demo.splits() == ["test", "train", "val"]
    pairs = demo.pairs("train")
    assert len(pairs) == 50 and (demo.dir / "train.de").is_file()
    assert Demo("en", "de", num_train=50, cache_dir=str(tmp_path)).pairs("train") == pairs
    with pytest.raises(UserError, match="unknown demo language 'es'"):
        Demo("en", "es")


NO_NETWORK = """
import socket, sys

def refuse(*args, **kwargs):
    raise AssertionError(f"network access: {args}")

socket.socket.connect = refuse
socket.create_connection = refuse
import hydra, seq2seq.analysis, seq2seq.evaluate, seq2seq.score, seq2seq.train  # noqa
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

with initialize_config_dir(config_dir=sys.argv[1], version_base="1.3"):
    for data in ("wmt14_en_fr", "wmt14_en_de", "hf", "demo"):
        cfg = compose("train", overrides=[f"data={data}"] + ["data.path=wmt14"] * (data == "hf"))
        source = instantiate(cfg.data.source)
print("ok")
"""


def test_no_network_at_import_or_config_time():
    # HF sources touch the hub only when pairs are read (prepare_data / setup), never earlier.
    online = {**os.environ, "HF_DATASETS_OFFLINE": "0", "HF_HUB_OFFLINE": "0"}
    proc = subprocess.run([sys.executable, "-c", NO_NETWORK, str(CONF)], capture_output=True,
                          text=True, timeout=120, env=online)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
