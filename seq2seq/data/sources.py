"""Where sentence pairs come from: the demo corpus, `{split}.{lang}` text files, or HF datasets.

Every source has `pairs(split) -> list[(source, target)]` of raw, untokenised strings and
`splits() -> list[str]`; nothing else about a source is visible to the rest of the code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from seq2seq.errors import UserError

Pair = tuple[str, str]


class Source(Protocol):
    src: str
    tgt: str

    def splits(self) -> list[str]: ...

    def pairs(self, split: str) -> list[Pair]: ...


def default_cache_dir() -> Path:
    """`$SEQ2SEQ_CACHE`, else `~/.cache/seq2seq`: demo corpora and tokenizers live here."""
    return Path(os.environ.get("SEQ2SEQ_CACHE", Path.home() / ".cache" / "seq2seq")).expanduser()


def read_lines(path: Path) -> list[str]:
    """One sentence per line, UTF-8; a clear error for a missing file or invalid bytes."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise UserError(
            f"{path}:{line}: invalid UTF-8 (byte {e.start}); re-encode as UTF-8"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r").strip() for line in lines]


class TextFiles:
    """A directory of `{split}.{lang}` files with line i of each language aligned."""

    def __init__(self, dir: str, src: str, tgt: str) -> None:
        self.dir, self.src, self.tgt = Path(dir).expanduser(), src, tgt
        if not self.dir.is_dir():
            raise UserError(f"data.dir={dir}: not a directory")

    def splits(self) -> list[str]:
        """Splits with a file for both languages."""
        stems = {p.stem for p in self.dir.glob(f"*.{self.src}")}
        return sorted(s for s in stems if (self.dir / f"{s}.{self.tgt}").exists())

    def pairs(self, split: str) -> list[Pair]:
        src_path, tgt_path = self.dir / f"{split}.{self.src}", self.dir / f"{split}.{self.tgt}"
        if not src_path.exists() or not tgt_path.exists():
            missing = src_path if not src_path.exists() else tgt_path
            raise UserError(
                f"{missing}: no such file; splits with both .{self.src} and .{self.tgt} in "
                f"{self.dir}: {', '.join(self.splits()) or 'none'}"
            )
        src_lines, tgt_lines = read_lines(src_path), read_lines(tgt_path)
        if len(src_lines) != len(tgt_lines):
            raise UserError(
                f"{src_path} has {len(src_lines)} lines but {tgt_path} has {len(tgt_lines)}; "
                "parallel files must align line by line"
            )
        if not src_lines:
            raise UserError(f"{src_path}: empty file")
        return list(zip(src_lines, tgt_lines))


class Demo:
    """The embedded demo corpus (CLDR dates, numbers, places), generated once into the cache."""

    def __init__(
        self,
        src: str = "en",
        tgt: str = "fr",
        num_train: int = 30000,
        seed: int = 1234,
        cache_dir: str | None = None,
    ) -> None:
        from seq2seq.data.demo import LANGS

        for key, lang in (("src", src), ("tgt", tgt)):
            if lang not in LANGS:
                raise UserError(
                    f"data.{key}: unknown demo language {lang!r}; the demo corpus has "
                    f"{', '.join(LANGS)}"
                )
        self.src, self.tgt, self.num_train, self.seed = src, tgt, num_train, seed
        root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.dir = root / "demo" / f"{src}-{tgt}-n{num_train}-s{seed}"

    def _files(self) -> TextFiles:
        if not (self.dir / "done").exists():
            from seq2seq.data.demo import write_demo_corpus

            tmp = self.dir.with_name(self.dir.name + f".tmp{os.getpid()}")
            write_demo_corpus(tmp, self.src, self.tgt, num_train=self.num_train, seed=self.seed)
            (tmp / "done").touch()
            try:
                tmp.replace(self.dir)  # atomic publish; another process may have won the race
            except OSError:
                if not (self.dir / "done").exists():
                    raise
        return TextFiles(str(self.dir), self.src, self.tgt)

    def splits(self) -> list[str]:
        return self._files().splits()

    def pairs(self, split: str) -> list[Pair]:
        return self._files().pairs(split)


class HFDataset:
    """A dataset with the hub's `translation` schema: `{"translation": {"en": ..., "fr": ...}}`.

    `path` is a hub name (`wmt14`, with `name="fr-en"`) or a builder such as `parquet` / `json`
    with local `data_files={split: file}`; the code past the download is the same.
    """

    def __init__(
        self,
        path: str,
        src: str,
        tgt: str,
        name: str | None = None,
        data_files: dict[str, str] | None = None,
        revision: str | None = None,
    ) -> None:
        self.path, self.name, self.src, self.tgt, self.revision = path, name, src, tgt, revision
        self.data_files = dict(data_files) if data_files else None

    def splits(self) -> list[str]:
        if self.data_files:
            return sorted(self.data_files)
        import datasets

        return list(datasets.get_dataset_split_names(self.path, self.name, revision=self.revision))

    def pairs(self, split: str) -> list[Pair]:
        import datasets

        try:
            ds = datasets.load_dataset(
                self.path,
                self.name,
                split=split,
                data_files=self.data_files,
                revision=self.revision,
            )
        except ValueError as e:  # datasets says "Unknown split ..." with the available ones
            raise UserError(f"data.path={self.path}: cannot load split {split!r}: {e}") from None
        if "translation" not in ds.column_names:
            raise UserError(
                f"data.path={self.path} split {split}: no 'translation' column "
                f"(columns: {', '.join(ds.column_names)})"
            )
        rows = ds["translation"]
        for lang in (self.src, self.tgt):
            if rows and lang not in rows[0]:
                raise UserError(
                    f"data.path={self.path}: language {lang!r} not in the translation column "
                    f"(has {', '.join(rows[0])})"
                )
        return [(row[self.src].strip(), row[self.tgt].strip()) for row in rows]
