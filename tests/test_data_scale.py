"""Data at scale: hub configs on local files in the hub's schema, the Arrow token cache, the
subsample, strict mode, word vocabularies and the errors of each."""

import json
import logging
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from seq2seq.checkpoint import load_checkpoint, same_tokenizer
from seq2seq.data import preprocess
from seq2seq.data.datamodule import TranslationDataModule, build_datamodule
from seq2seq.data.preprocess import subsample
from seq2seq.data.sources import HFDataset, TextFiles, digest, pairs_dataset
from seq2seq.data.tokenizer import EOS, UNK, tokenizer_from_state_dict
from seq2seq.data.words import WordTokenizer, count_words
from seq2seq.errors import UserError
from tests.helpers import CONF, tokenizer_for
from tests.test_end_to_end import run

NOUNS = [("cat", "chat"), ("dog", "chien"), ("house", "maison"), ("car", "voiture"),
         ("tree", "arbre"), ("bird", "oiseau"), ("boat", "bateau"), ("book", "livre")]  # fmt: skip
ADJS = [("red", "rouge"), ("big", "grand"), ("old", "vieux"), ("small", "petit")]
LANG_NAMES = {"en": "English", "fr": "French", "de": "German"}


def sentence_pairs(n, offset=0):
    """n English/French pairs over a small vocabulary; German = French with a marker."""
    out = []
    for i in range(offset, offset + n):
        (en_n, fr_n), (en_a, fr_a) = NOUNS[i % 8], ADJS[(i // 8) % 4]
        out.append({"en": f"The {en_a} {en_n} sees {i % 13} birds, says Ann.",
                    "fr": f"Le {fr_n} {fr_a} voit {i % 13} oiseaux, dit Ann.",
                    "de": f"Der {fr_n} {fr_a} sieht {i % 13} Vögel, sagt Ann."})  # fmt: skip
    return out


def write_parquet(path, rows, langs, schema="translation"):
    if schema == "translation":
        table = pa.table({"translation": [{k: r[k] for k in langs} for r in rows]})
    else:  # one column per language, as bentrevett/multi30k
        table = pa.table({k: [r[k] for r in rows] for k in langs})
    pq.write_table(table, path)
    return str(path)


@pytest.fixture(scope="module")
def hub_files(tmp_path_factory):
    """Local parquet files in each hub dataset's schema and split names."""
    root = tmp_path_factory.mktemp("hub")
    sizes = {"train": 240, "validation": 20, "test": 16}
    files = {}
    for pair in (("fr", "en"), ("de", "en")):
        files[pair] = {split: write_parquet(root / f"{'-'.join(pair)}-{split}.parquet",
                                            sentence_pairs(n, 1000 * k), pair)
                       for k, (split, n) in enumerate(sizes.items())}  # fmt: skip
    files["flat"] = {split: write_parquet(root / f"flat-{split}.parquet",
                                          sentence_pairs(n, 1000 * k), ("en", "de"), "flat")
                     for k, (split, n) in enumerate(sizes.items())}  # fmt: skip
    return files


def composed(*overrides):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def local_overrides(files, cache_dir):
    """Point a hub config at local files: the code past the download is the same."""
    data_files = ",".join(f"{k}: '{v}'" for k, v in files.items())
    return ["data.path=parquet", "data.name=null", "data.revision=null", "data.data_dir=null",
            f"data.data_files={{{data_files}}}", f"data.cache_dir={cache_dir}",
            "data.vocab_size=60", "data.num_proc=1"]  # fmt: skip


@pytest.mark.parametrize(
    "config,files_key,src,tgt",
    [
        ("wmt14_en_fr", ("fr", "en"), "en", "fr"),
        ("wmt14_fr_en", ("fr", "en"), "fr", "en"),
        ("wmt14_en_de", ("de", "en"), "en", "de"),
        ("wmt14_de_en", ("de", "en"), "de", "en"),
        ("iwslt2017_de_en", ("de", "en"), "de", "en"),
        ("multi30k", "flat", "en", "de"),
    ],
)
def test_hub_configs_on_local_files(config, files_key, src, tgt, hub_files, tmp_path):
    cfg = composed(f"data={config}", *local_overrides(hub_files[files_key], tmp_path))
    assert (cfg.data.src, cfg.data.tgt) == (src, tgt)
    dm = build_datamodule(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_data) == 240 and len(dm.valid_data) == 20
    first_src, first_tgt = dm.source.pairs(dm.valid_split)[0]
    assert first_src.startswith(sentence_pairs(1, 1000)[0][src][:3])  # the right direction
    assert dm.valid_refs[0] == first_tgt
    test_split = "test_2016_flickr" if config == "multi30k" else "test"
    assert len(dm.source.pairs(test_split)) == 16


def test_both_directions_of_one_dataset_share_no_cache(hub_files, tmp_path):
    """wmt14_de_en after wmt14_en_de on the same files and cache: its own token ids, not the
    other direction's (the cache key names the direction)."""
    for config, tgt in (("wmt14_en_de", "de"), ("wmt14_de_en", "en")):
        cfg = composed(f"data={config}", *local_overrides(hub_files["de", "en"], tmp_path))
        dm = build_datamodule(cfg.data)
        dm.prepare_data()
        dm.setup("fit")
        decoded = dm.tokenizer.decode_tgt([list(dm.valid_data[0]["tgt"])])[0]
        assert decoded[:3] == sentence_pairs(1, 1000)[0][tgt][:3] == dm.valid_refs[0][:3], config


def test_local_files_edited_or_globbed_get_a_new_key(tmp_path):
    a = tmp_path / "a.parquet"
    a.write_bytes(b"one")
    globbed = HFDataset("parquet", "en", "fr", data_files={"train": str(tmp_path / "*.parquet")})
    listed = HFDataset("parquet", "en", "fr", data_files={"train": [str(a)]})
    before = globbed.key("train"), listed.key("train")
    a.write_bytes(b"two, longer")
    assert globbed.key("train") != before[0] and listed.key("train") != before[1]
    assert HFDataset("parquet", "fr", "en", data_files={"train": [str(a)]}).key("train") != (
        listed.key("train")
    )


def test_files_under_data_dir_edited_get_a_new_key(tmp_path):
    """data.data_dir's files, and data.data_files relative to it, are stamped too: editing
    them gave the old key, and the old tokenizer and token cache were reused."""
    (tmp_path / "train.parquet").write_bytes(b"one")
    by_dir = HFDataset("parquet", "en", "fr", data_dir=str(tmp_path))
    by_name = HFDataset("parquet", "en", "fr", data_dir=str(tmp_path), data_files="train.parquet")
    assert by_name.data_files == {"train": "train.parquet"}  # a bare file, as datasets takes it
    before = by_dir.key("train"), by_name.key("train")
    (tmp_path / "train.parquet").write_bytes(b"two, longer")
    assert by_dir.key("train") != before[0] and by_name.key("train") != before[1]
    listed = HFDataset("json", "en", "fr", data_files=OmegaConf.create(["a.json", "b.json"]))
    assert listed.data_files == {"train": ["a.json", "b.json"]} and type(listed.data_files) is dict
    hub = HFDataset("wmt/wmt14", "fr", "en", name="fr-en")  # no data_dir: its key as it was
    assert hub.key("train") == digest("hf", ["wmt/wmt14"], "fr-en", None, None, {}, "train",
                                      "fr", "en")  # fmt: skip


def test_hf_files_that_do_not_exist(tmp_path):
    source = HFDataset("parquet", "en", "fr", data_files={"train": str(tmp_path / "no.parquet")})
    with pytest.raises(UserError) as e:
        source.dataset("train")
    assert str(e.value).startswith("data.path=parquet: cannot load split 'train': ")
    assert "\n" not in str(e.value)


def test_hub_config_comments_state_source_size_and_licence():
    for name in ("wmt14_en_fr", "wmt14_fr_en", "wmt14_en_de", "wmt14_de_en", "iwslt2017_de_en",
                 "multi30k"):  # fmt: skip
        text = (CONF / "data" / f"{name}.yaml").read_text()
        assert "Licence" in text and "pairs" in text and "HF_DATASETS_OFFLINE=1" in text, name


def test_language_pair_the_dataset_lacks(hub_files, tmp_path):
    cfg = composed(
        "data=wmt14_en_fr", "data.tgt=de", *local_overrides(hub_files["fr", "en"], tmp_path)
    )
    with pytest.raises(UserError) as e:
        build_datamodule(cfg.data).prepare_tokenizer()
    assert str(e.value) == "data.tgt=de: parquet split train has no 'de' (languages: fr, en)"


def test_rows_without_a_side(tmp_path):
    """A null text, or (JSON lines) a row without one of the languages: one line each, not
    a traceback from the tokenizer or from `datasets`' inferred feature."""
    nulls = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"translation": [{"en": "a", "fr": "b"}, {"en": None, "fr": "c"}]}),
                   nulls)  # fmt: skip
    lacking = tmp_path / "lacking.jsonl"
    lacking.write_text('{"translation": {"en": "a", "fr": "b"}}\n{"translation": {"en": "c"}}\n')
    with pytest.raises(UserError) as e:
        HFDataset("parquet", "en", "fr", data_files={"train": str(nulls)}).dataset("train")
    assert str(e.value) == (
        "data.src=en: 1 rows of parquet split train have no 'en' text (null), the first row 1"
    )
    with pytest.raises(UserError) as e:
        HFDataset("json", "en", "fr", data_files={"train": str(lacking)}).dataset("train")
    assert str(e.value).startswith("data.") and "'fr'" in str(e.value)


def test_missing_split(hub_files, tmp_path):
    files = {"train": hub_files["fr", "en"]["train"]}
    cfg = composed("data=wmt14_en_fr", *local_overrides(files, tmp_path))
    dm = build_datamodule(cfg.data)
    with pytest.raises(UserError, match=r"^data.path=parquet: cannot load split 'validation'"):
        dm.prepare_data()


def text_corpus(dir, pairs, split="train"):
    dir.mkdir(exist_ok=True)
    for k, lang in enumerate(("en", "fr")):
        (dir / f"{split}.{lang}").write_text("".join(p[k] + "\n" for p in pairs))
    return dir


def small_pairs(n=200):
    return [(r["en"], r["fr"]) for r in sentence_pairs(n)]


def test_token_cache_is_reused_not_rebuilt(tmp_path, monkeypatch):
    corpus = text_corpus(tmp_path / "c", small_pairs())
    text_corpus(corpus, small_pairs(10), "val")

    def datamodule(**kw):
        source = TextFiles(str(corpus), "en", "fr")
        return TranslationDataModule(source, vocab_size=60, batch_size=8,
                                     cache_dir=str(tmp_path / "cache"), **kw)  # fmt: skip

    first = datamodule()
    first.prepare_data()
    first.setup("fit")
    entries = sorted((tmp_path / "cache" / "tokens").glob("*/meta.json"))
    assert [json.loads(p.read_text())["pairs"] for p in entries] == [200, 10]

    def refuse(*args, **kwargs):
        raise AssertionError("tokenised again")

    monkeypatch.setattr(preprocess, "_build", refuse)
    cut = int(np.median(first.train_data.lengths()))
    again = datamodule(max_len=cut)  # filtering is not part of the key
    again.prepare_data()
    again.setup("fit")
    assert sorted((tmp_path / "cache" / "tokens").glob("*/meta.json")) == entries
    assert 0 < len(again.train_data) < len(first.train_data)  # filtered from the same cache
    (corpus / "train.fr").write_text((corpus / "train.fr").read_text().replace("chat", "chatte"))
    with pytest.raises(AssertionError, match="tokenised again"):  # a changed file: a new key
        datamodule().prepare_data()


def test_a_built_cache_is_read_without_datasets_or_pandas(tmp_path):
    """Training from a built cache imports neither (their memory: seq2seq/data/preprocess.py),
    and reads the same ids and references."""
    corpus = text_corpus(tmp_path / "c", small_pairs())
    text_corpus(corpus, small_pairs(10), "val")
    kwargs = {"vocab_size": 60, "batch_size": 8, "cache_dir": str(tmp_path / "cache")}
    built = TranslationDataModule(TextFiles(str(corpus), "en", "fr"), **kwargs)
    built.prepare_data()
    built.setup("fit")
    code = (
        "import sys, json; from seq2seq.data.datamodule import TranslationDataModule; "
        "from seq2seq.data.sources import TextFiles; "
        f"dm = TranslationDataModule(TextFiles({str(corpus)!r}, 'en', 'fr'), **{kwargs!r}); "
        "dm.setup('fit'); print(json.dumps([[m for m in ('datasets', 'pandas') if m in "
        "sys.modules], dm.train_data[3]['tgt'], dm.valid_refs]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules, tgt, refs = json.loads(out.stdout.strip().splitlines()[-1])
    assert modules == []
    assert tgt == built.train_data[3]["tgt"]
    assert refs == built.valid_refs == [fr for _, fr in small_pairs(10)]


def test_subsample_is_deterministic_and_in_order():
    ds = pairs_dataset([(str(i), str(i)) for i in range(1000)])
    a, b = subsample(ds, 100), subsample(ds, 100)
    assert list(a["src"]) == list(b["src"]) and len(a) == 100
    rows = [int(s) for s in a["src"]]
    assert rows == sorted(rows) and rows != list(range(100))  # random, kept in corpus order
    assert subsample(ds, 5000) is ds and subsample(ds, None) is ds


def test_max_train_pairs_subsamples_training_only(tmp_path):
    corpus = text_corpus(tmp_path / "c", small_pairs())
    text_corpus(corpus, small_pairs(10), "val")
    dm = TranslationDataModule(TextFiles(str(corpus), "en", "fr"), vocab_size=50, batch_size=8,
                               max_train_pairs=50, cache_dir=str(tmp_path))  # fmt: skip
    dm.setup("fit")
    assert len(dm.train_data) == 50 and len(dm.valid_data) == 10


def test_empty_lines_dropped_with_a_count_or_an_error(tmp_path, caplog):
    pairs = small_pairs(100)
    pairs[7] = ("", pairs[7][1])
    pairs[9] = (pairs[9][0], "   ")
    corpus = text_corpus(tmp_path / "c", pairs)
    text_corpus(corpus, small_pairs(10), "val")

    def setup(strict):
        source = TextFiles(str(corpus), "en", "fr")
        dm = TranslationDataModule(source, vocab_size=50, batch_size=8, strict=strict,
                                   cache_dir=str(tmp_path))  # fmt: skip
        dm.setup("fit")
        return dm

    with caplog.at_level(logging.WARNING, logger="seq2seq"):
        assert len(setup(strict=False).train_data) == 98
    assert "train: 98 of 100 pairs kept; dropped 2 with an empty side" in caplog.text
    with pytest.raises(UserError) as e:
        setup(strict=True)
    assert str(e.value) == ("data.strict=true: train has 2 pairs with an empty side (the first "
                            "is pair 8); remove them or set data.strict=false")  # fmt: skip


def test_vocabulary_larger_than_the_corpus_supports():
    with pytest.raises(UserError) as e:
        tokenizer_for(small_pairs(50), vocab_size=5000)
    assert str(e.value) == ("data.vocab_size=5000: the training data supports at most 66 unigram "
                            "pieces; lower data.vocab_size")  # fmt: skip


def test_spm_trains_on_a_sample_only(monkeypatch):
    from seq2seq.data import tokenizer as tok

    seen = []
    real = tok.train_sentencepiece
    monkeypatch.setattr(tok, "train_sentencepiece",
                        lambda s, *a: seen.append(len(s)) or real(s, *a))  # fmt: skip
    tokenizer_for(small_pairs(200), vocab_size=60, sample=60)
    assert seen == [60]  # 30 pairs, both sides, for the joint model


def test_vocabulary_below_the_corpus_characters():
    with pytest.raises(UserError) as e:
        tokenizer_for(small_pairs(50), vocab_size=20)
    assert str(e.value) == (
        "data.vocab_size=20: the training data has 37 distinct characters, and each needs a "
        "piece (with 4 specials); raise data.vocab_size"
    )


# --- word vocabularies ---------------------------------------------------------------------


def test_word_vocabulary_is_the_most_frequent_words_then_unk():
    pairs = [("the cat sat .", "le chat .")] * 3 + [("the dog ran !", "le chien !")]
    t = WordTokenizer.train(pairs_dataset(pairs), "en", "fr", src_words=4, tgt_words=3)
    assert t.src.words[4:] == ["the", ".", "cat", "sat"]  # by count, ties alphabetical
    assert t.tgt.words[4:] == ["le", ".", "chat"]
    assert (t.src_vocab_size, t.tgt_vocab_size) == (8, 7)
    assert t.encode_src(["the dog sat ."]) == [[4, UNK, 7, 5]]


def test_word_tokens_are_moses_and_decoding_detokenises():
    pairs = [("Hello, world! It's 5 o'clock.", "L'homme dit : « bonjour », n'est-ce pas ?")] * 2
    t = WordTokenizer.train(pairs_dataset(pairs), "en", "fr")
    assert t.src.split("Hello, world!") == ["Hello", ",", "world", "!"]
    ids = t.encode_tgt([pairs[0][1]])[0]
    assert UNK not in ids
    assert t.decode_tgt([ids + [EOS]]) == [pairs[0][1]]  # Moses detokeniser, plain text again
    unknown = t.encode_tgt(["L'homme dit : « au revoir »"])[0]
    assert t.decode_tgt([unknown]) == ["L'homme dit : « UNK UNK »"]


def test_word_counts_stream_in_parallel_shards():
    ds = pairs_dataset(small_pairs(2400))
    assert count_words(ds, "en", "fr", num_proc=2) == count_words(ds, "en", "fr", num_proc=1)


def test_word_tokenizer_state_round_trip(tmp_path):
    t = WordTokenizer.train(pairs_dataset(small_pairs(50)), "en", "fr")
    state = t.state_dict()
    assert all(v.dtype == torch.uint8 for v in state.values())
    torch.save(state, tmp_path / "t.pt")
    back = tokenizer_from_state_dict(torch.load(tmp_path / "t.pt", weights_only=True))
    assert isinstance(back, WordTokenizer) and back.tgt.words == t.tgt.words
    spm = tokenizer_for(small_pairs(50), vocab_size=60).state_dict()
    assert same_tokenizer(back.state_dict(), state) and not same_tokenizer(spm, state, "tgt")
    text = ["The red cat sees 3 birds, says Ann."]
    assert back.encode_src(text) == t.encode_src(text)
    t.save(tmp_path / "tok")
    assert (tmp_path / "tok" / "tgt.vocab").read_text().splitlines() == t.tgt.words


def test_sutskever2014_selects_word_vocabularies():
    data = composed("experiment=sutskever2014").data
    assert (data.tokenizer, data.src_words, data.tgt_words) == ("word", 160000, 80000)
    assert data.max_train_pairs == 12_000_000 and (data.src, data.tgt) == ("en", "fr")


def test_word_vocabularies_end_to_end(hub_files, tmp_path):
    """The paper's experiment on a local WMT-schema corpus: train a few steps, evaluate."""
    run_dir = tmp_path / "run"
    shrink = ["model.num_layers=1", "model.hidden_size=32", "model.embed_dim=32",
              "trainer.max_steps=6", "trainer.enable_progress_bar=false", "data.batch_size=32",
              "trainer.num_sanity_val_steps=0"]  # fmt: skip
    run("train.py", "experiment=sutskever2014", *local_overrides(hub_files["fr", "en"], tmp_path),
        *shrink, f"hydra.run.dir={run_dir}")  # fmt: skip
    loaded = load_checkpoint(run_dir / "last.ckpt")
    assert isinstance(loaded.tokenizer, WordTokenizer)
    distinct_fr = {w for r in sentence_pairs(240) for w in loaded.tokenizer.tgt.split(r["fr"])}
    assert loaded.tokenizer.tgt_vocab_size == 4 + len(distinct_fr)  # all of them: < 80k
    assert (run_dir / "tokenizer" / "src.vocab").is_file()
    out = tmp_path / "eval"
    proc = run("evaluate.py", f"ckpt={run_dir / 'last.ckpt'}", "split=test", "decode.beam_size=2",
               f"hydra.run.dir={out}")  # fmt: skip
    assert proc.stdout.startswith("test: BLEU ")
    result = json.loads((out / "test.json").read_text())
    assert result["sentences"] == 16 and 0 <= result["bleu"] <= 100
    hyps = (out / "test.hyp").read_text().splitlines()
    assert len(hyps) == 16 and not any(" ," in h or " ." in h for h in hyps)  # detokenised


def test_arrow_rows_are_read_as_whole_batches(tmp_path):
    corpus = text_corpus(tmp_path / "c", small_pairs(64))
    text_corpus(corpus, small_pairs(4), "val")
    dm = TranslationDataModule(TextFiles(str(corpus), "en", "fr"), vocab_size=50, batch_size=16,
                               cache_dir=str(tmp_path))  # fmt: skip
    dm.setup("fit")
    loader = dm.train_dataloader()
    seen = np.concatenate([b["idx"].numpy() for b in loader])
    assert sorted(seen.tolist()) == list(range(64))
