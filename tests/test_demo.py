"""Tests for the embedded demo parallel corpus (seq2seq.data.demo)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from seq2seq.data import demo
from seq2seq.data.demo import LANGS, SPLITS, generate_demo_pairs, write_demo_corpus

DIRECTIONS = [("en", "fr"), ("en", "de"), ("fr", "en"), ("de", "en")]
SMALL = {"num_train": 1500, "num_val": 100, "num_test": 100}
REPO_ROOT = Path(__file__).resolve().parents[1]

EN_MONTHS = "January February March April May June July August September October November December"
FR_MONTHS = "janvier février mars avril mai juin juillet août septembre octobre novembre décembre"


@pytest.fixture(scope="module")
def default_en_fr() -> dict[str, list[tuple[str, str]]]:
    """The corpus at its default size, generated once for the module."""
    return generate_demo_pairs("en", "fr")


def _digest(pairs: dict[str, list[tuple[str, str]]]) -> str:
    """Stable digest of a generated corpus."""
    text = "\n".join(f"{split}\t{a}\t{b}" for split in SPLITS for a, b in pairs[split])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_public_constants() -> None:
    assert LANGS == ("en", "fr", "de")
    assert SPLITS == ("train", "val", "test")


def test_deterministic() -> None:
    first = generate_demo_pairs("en", "de", **SMALL)
    second = generate_demo_pairs("en", "de", **SMALL)
    assert first == second
    assert list(first) == list(SPLITS)


def test_seed_changes_output() -> None:
    assert generate_demo_pairs(seed=1, **SMALL) != generate_demo_pairs(seed=2, **SMALL)


def test_independent_of_hash_seed() -> None:
    code = (
        "import hashlib; from seq2seq.data.demo import generate_demo_pairs as g; "
        "p = g('en', 'fr', num_train=300, num_val=50, num_test=50); "
        "t = '\\n'.join(f'{s}\\t{a}\\t{b}' for s in ('train', 'val', 'test') for a, b in p[s]); "
        "print(hashlib.sha256(t.encode('utf-8')).hexdigest())"
    )
    digests = set()
    for hash_seed in ("0", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        digests.add(out.stdout.strip())
    expected = _digest(generate_demo_pairs("en", "fr", num_train=300, num_val=50, num_test=50))
    assert digests == {expected}


def test_sizes_as_requested() -> None:
    pairs = generate_demo_pairs("en", "fr", num_train=1234, num_val=56, num_test=78)
    assert {split: len(pairs[split]) for split in SPLITS} == {"train": 1234, "val": 56, "test": 78}
    empty = generate_demo_pairs("en", "fr", num_train=0, num_val=0, num_test=0)
    assert empty == {"train": [], "val": [], "test": []}


def test_default_size(default_en_fr: dict[str, list[tuple[str, str]]]) -> None:
    assert [len(default_en_fr[s]) for s in SPLITS] == [30000, 500, 500]


def test_val_and_test_do_not_depend_on_num_train() -> None:
    small = generate_demo_pairs("en", "fr", num_train=200)
    large = generate_demo_pairs("en", "fr", num_train=3000)
    assert small["val"] == large["val"]
    assert small["test"] == large["test"]
    assert large["train"][:200] != [] and small["train"] != large["train"]


@pytest.mark.parametrize(("src", "tgt"), DIRECTIONS)
def test_no_source_overlap_between_splits(src: str, tgt: str) -> None:
    pairs = generate_demo_pairs(src, tgt, **SMALL)
    sources = {split: [s for s, _ in pairs[split]] for split in SPLITS}
    for split in SPLITS:
        assert len(set(sources[split])) == len(sources[split]), f"duplicates in {split}"
    assert not set(sources["train"]) & set(sources["val"])
    assert not set(sources["train"]) & set(sources["test"])
    assert not set(sources["val"]) & set(sources["test"])


def test_no_overlap_at_default_size(default_en_fr: dict[str, list[tuple[str, str]]]) -> None:
    train = {s for s, _ in default_en_fr["train"]}
    held_out = [s for split in ("val", "test") for s, _ in default_en_fr[split]]
    assert len(train) == 30000
    assert len(set(held_out)) == 1000
    assert not train & set(held_out)


@pytest.mark.parametrize(("src", "tgt"), DIRECTIONS)
def test_every_direction_works(src: str, tgt: str) -> None:
    pairs = generate_demo_pairs(src, tgt, num_train=50, num_val=5, num_test=5)
    for split in SPLITS:
        for s, t in pairs[split]:
            assert s and t and s != t
            assert "\n" not in s + t and "\r" not in s + t
            assert "\u00a0" not in s + t and "\u202f" not in s + t
            assert s == s.strip() and t == t.strip()


@pytest.mark.parametrize("xx", ["fr", "de"])
def test_reverse_direction_is_swap(xx: str) -> None:
    forward = generate_demo_pairs("en", xx, **SMALL)
    backward = generate_demo_pairs(xx, "en", **SMALL)
    for split in SPLITS:
        assert backward[split] == [(t, s) for s, t in forward[split]]


def test_english_sides_differ_from_targets() -> None:
    fr = generate_demo_pairs("en", "fr", **SMALL)["train"]
    de = generate_demo_pairs("en", "de", **SMALL)["train"]
    assert sum(s == t for s, t in fr) == 0
    assert sum(s == t for s, t in de) == 0
    # French and German renderings of the same English sentence are different languages.
    fr_map, de_map = dict(fr), dict(de)
    shared = [s for s in fr_map if s in de_map]
    assert len(shared) > 100
    assert sum(fr_map[s] != de_map[s] for s in shared) > 0.95 * len(shared)


@pytest.mark.parametrize(
    ("src", "tgt", "bad"),
    [("en", "es", "es"), ("xx", "fr", "xx"), ("de", "klingon", "klingon"), ("EN", "fr", "EN")],
)
def test_unknown_language_raises(src: str, tgt: str, bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(bad))) as info:
        generate_demo_pairs(src, tgt, num_train=1, num_val=1, num_test=1)
    message = str(info.value)
    assert "\n" not in message
    assert all(lang in message for lang in LANGS)


@pytest.mark.parametrize(("src", "tgt"), [("fr", "de"), ("de", "fr"), ("en", "en"), ("fr", "fr")])
def test_unsupported_direction_raises(src: str, tgt: str) -> None:
    with pytest.raises(ValueError, match="direction"):
        generate_demo_pairs(src, tgt, num_train=1, num_val=1, num_test=1)


def test_unknown_language_raises_in_write(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'it'"):
        write_demo_corpus(tmp_path / "corpus", "en", "it", num_train=5)
    assert not (tmp_path / "corpus").exists()


@pytest.mark.parametrize("value", [-1, 1.5, True])
def test_bad_sizes_raise(value: object) -> None:
    with pytest.raises(ValueError, match="num_val"):
        generate_demo_pairs("en", "fr", num_train=10, num_val=value, num_test=10)


def test_exhausted_template_space_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def tiny(r):  # only three distinct sentences exist
        n = r.randrange(3)
        return f"I have {n} cats.", f"J'ai {n} chats.", f"Ich habe {n} Katzen."

    monkeypatch.setattr(demo, "_TEMPLATES", [(1.0, tiny)])
    monkeypatch.setattr(demo, "_CUM_WEIGHTS", [1.0])
    assert len(generate_demo_pairs(num_train=1, num_val=1, num_test=1)["train"]) == 1
    with pytest.raises(ValueError, match="unique"):
        generate_demo_pairs(num_train=5, num_val=1, num_test=1)


@pytest.mark.parametrize(("src", "tgt"), [("en", "fr"), ("de", "en")])
def test_write_demo_corpus(tmp_path: Path, src: str, tgt: str) -> None:
    target = tmp_path / "nested" / "demo"
    returned = write_demo_corpus(str(target), src, tgt, **SMALL)
    assert isinstance(returned, Path) and returned == target
    expected = generate_demo_pairs(src, tgt, **SMALL)
    names = sorted(p.name for p in target.iterdir())
    assert names == sorted(f"{split}.{lang}" for split in SPLITS for lang in (src, tgt))
    for split in SPLITS:
        raw_src = (target / f"{split}.{src}").read_bytes()
        raw_tgt = (target / f"{split}.{tgt}").read_bytes()
        assert b"\r" not in raw_src + raw_tgt
        assert raw_src.endswith(b"\n") and raw_tgt.endswith(b"\n")
        src_lines = raw_src.decode("utf-8").split("\n")[:-1]
        tgt_lines = raw_tgt.decode("utf-8").split("\n")[:-1]
        assert len(src_lines) == len(tgt_lines) == len(expected[split])
        assert all(line.strip() for line in src_lines + tgt_lines)
        assert list(zip(src_lines, tgt_lines)) == expected[split]


def test_write_is_byte_identical(tmp_path: Path) -> None:
    a = write_demo_corpus(tmp_path / "a", "en", "de", **SMALL)
    b = write_demo_corpus(tmp_path / "b", "en", "de", **SMALL)
    for name in sorted(p.name for p in a.iterdir()):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_dates_are_reordered_in_french(default_en_fr: dict[str, list[tuple[str, str]]]) -> None:
    en_to_fr = dict(zip(EN_MONTHS.split(), FR_MONTHS.split()))
    date = re.compile(r"\b(" + "|".join(en_to_fr) + r") (\d{1,2}), (\d{4})\b")
    checked = 0
    for en, fr in default_en_fr["train"]:
        m = date.search(en)
        if m:
            month, day, year = m.groups()
            assert f"{day} {en_to_fr[month]} {year}" in fr, (en, fr)
            checked += 1
    assert checked > 500


def test_times_use_24h_clock_in_target() -> None:
    pairs = generate_demo_pairs("en", "de", **SMALL)["train"]
    clock = re.compile(r"\b(\d{1,2}):(\d{2}) (AM|PM)\b")
    checked = 0
    for en, de in pairs:
        for hour, minute, half in clock.findall(en):
            h24 = int(hour) % 12 + (12 if half == "PM" else 0)
            assert re.search(rf"\b{h24:02d}:{minute}\b", de), (en, de)
            checked += 1
        if clock.search(en):
            assert " Uhr" in de and not re.search(r"\b(AM|PM)\b", de), (en, de)
    assert checked > 50


def test_spot_check_translations() -> None:
    pairs = generate_demo_pairs("en", "fr", **SMALL)["train"]
    # Some French pair mentions a month by its French name next to the English one.
    assert any(
        e in en and f in fr
        for en, fr in pairs
        for e, f in zip(EN_MONTHS.split(), FR_MONTHS.split())
    )
    # Weekday names come from CLDR and are lower-case in French.
    assert any("Tuesday" in en and "mardi" in fr for en, fr in pairs)
    # Number formatting differs: English thousands separator vs French space.
    assert any(re.search(r"\d,\d{3}\b", en) and re.search(r"\d \d{3}\b", fr) for en, fr in pairs)


def test_sentence_length_bounds(default_en_fr: dict[str, list[tuple[str, str]]]) -> None:
    lengths = [len(src.split()) for src, _ in default_en_fr["train"]]
    average = sum(lengths) / len(lengths)
    assert 7.5 <= average <= 10.0
    assert max(lengths) <= 20
    assert sum(4 <= n <= 14 for n in lengths) >= 0.95 * len(lengths)
    targets = [len(tgt.split()) for _, tgt in default_en_fr["train"]]
    assert max(targets) <= 20


def test_vocabulary_is_moderate(default_en_fr: dict[str, list[tuple[str, str]]]) -> None:
    words = {
        w.strip(".,?").lower()
        for src, _ in default_en_fr["train"]
        for w in src.split()
        if not any(ch.isdigit() for ch in w)
    }
    assert 150 <= len(words) <= 1000
