"""Where sentence pairs come from: the demo corpus, `{split}.{lang}` text files, or HF datasets.

Every source has `dataset(split)`: an HF `datasets.Dataset` with string columns `src` and `tgt`,
on disk (Arrow, memory-mapped), so a corpus of tens of millions of pairs never sits in a Python
list; `pairs(split)` is the same as a list, for the small splits evaluation reads. `key(split)`
names the split's content (paths, sizes, modification times, hub revision) so caches built from
it are found again without reading it.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Iterator
from itertools import zip_longest
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from omegaconf import DictConfig, ListConfig, OmegaConf

from seq2seq.errors import UserError

if TYPE_CHECKING:
    import datasets

Pair = tuple[str, str]


class Source(Protocol):
    src: str
    tgt: str

    def splits(self) -> list[str]: ...

    def dataset(self, split: str) -> datasets.Dataset: ...

    def pairs(self, split: str) -> list[Pair]: ...

    def key(self, split: str) -> str: ...


def default_cache_dir() -> Path:
    """`$SEQ2SEQ_CACHE`, else `~/.cache/seq2seq`: corpora, tokenizers and token ids live here."""
    return Path(os.environ.get("SEQ2SEQ_CACHE", Path.home() / ".cache" / "seq2seq")).expanduser()


def digest(*parts: Any) -> str:
    """sha256 of JSON-encoded parts: the name of a cache entry."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def file_stamp(path: str | Path) -> list:
    """A file's identity for cache keys: absolute path, size and modification time."""
    path = Path(path).expanduser().resolve()
    try:
        stat = path.stat()
    except FileNotFoundError:
        return [str(path), None]
    return [str(path), stat.st_size, stat.st_mtime_ns]


def local_stamp(pattern: str | Path) -> list:
    """The identity of the local files a `data_files` entry or a `data.path` names: every file
    a path, a glob or a directory (recursively) matches, stamped (`file_stamp`); the pattern as
    given where nothing local matches (a hub or remote path)."""
    path = Path(str(pattern)).expanduser()
    if path.is_dir():
        return [file_stamp(f) for f in sorted(path.rglob("*")) if f.is_file()]
    matched = sorted(glob.glob(str(path), recursive=True))
    return [file_stamp(f) for f in matched if Path(f).is_file()] or [str(pattern)]


def _decode(line: bytes, path: str | Path, number: int, offset: int) -> str:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(
            f"{path}:{number}: invalid UTF-8 (byte {offset + e.start}); re-encode as UTF-8"
        ) from None
    if number == 1 and text.startswith("\ufeff"):
        text = text[1:]
    return text.strip()


def open_readable(path: Path) -> IO[bytes]:
    """`path` opened for reading bytes, or a one-line error saying why it cannot be."""
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: a directory, not a text file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror or e})") from None


def decoded_lines(f: IO[bytes], name: str | Path) -> Iterator[str]:
    """The lines of a binary stream (a file, stdin's bytes), UTF-8, stripped; invalid bytes
    name `name` and the line."""
    offset = 0  # of the line in the stream, for the error message
    for number, line in enumerate(f, 1):
        yield _decode(line, name, number, offset)
        offset += len(line)


def iter_lines(path: Path) -> Iterator[str]:
    """Stream one sentence per line, UTF-8, stripped; invalid bytes name the file and line."""
    with open_readable(path) as f:
        yield from decoded_lines(f, path)


def read_lines(path: Path) -> list[str]:
    """All lines of a file (see `iter_lines`)."""
    return list(iter_lines(path))


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def _aligned_pairs(src_path: str, tgt_path: str, stamp: str) -> Iterator[dict[str, str]]:
    """Generator for `Dataset.from_generator`: aligned lines of two files, streamed.

    `stamp` (both files' sizes and times) is only there to change the cache key with them; it
    is a string because `datasets` splits list arguments into shards."""
    paths = Path(src_path), Path(tgt_path)
    count = 0
    for src, tgt in zip_longest(iter_lines(paths[0]), iter_lines(paths[1])):
        if src is None or tgt is None:
            n_src, n_tgt = (_count_lines(p) for p in paths)
            raise UserError(
                f"{paths[0]} has {n_src} lines but {paths[1]} has {n_tgt}; "
                "parallel files must align line by line"
            )
        count += 1
        yield {"src": src, "tgt": tgt}
    if count == 0:
        raise UserError(f"{paths[0]}: empty file")


def _generated(generator: Any, gen_kwargs: dict, cache_dir: Path, key: str) -> datasets.Dataset:
    """`Dataset.from_generator`, cached under `cache_dir` by `key`; our own errors unwrapped."""
    import datasets

    features = datasets.Features({"src": datasets.Value("string"), "tgt": datasets.Value("string")})
    try:
        return datasets.Dataset.from_generator(
            generator,
            features=features,
            gen_kwargs=gen_kwargs,
            cache_dir=str(cache_dir / "hf"),
            fingerprint=key[:32],
        )
    except datasets.exceptions.DatasetGenerationError as e:
        if isinstance(e.__cause__, UserError):
            raise e.__cause__ from None
        raise


def as_pairs(ds: datasets.Dataset) -> list[Pair]:
    """A split's rows as (source, target) strings."""
    return list(zip(ds["src"], ds["tgt"]))


def pairs_dataset(pairs: list[Pair]) -> datasets.Dataset:
    """In-memory pairs as a split (columns `src`, `tgt`)."""
    import datasets

    return datasets.Dataset.from_dict({"src": [s for s, _ in pairs], "tgt": [t for _, t in pairs]})


class TextFiles:
    """A directory of `{split}.{lang}` files with line i of each language aligned."""

    def __init__(self, dir: str, src: str, tgt: str, cache_dir: str | None = None) -> None:
        self.dir, self.src, self.tgt = Path(dir).expanduser(), src, tgt
        if not self.dir.is_dir():
            raise UserError(f"data.dir={dir}: not a directory")
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()

    def splits(self) -> list[str]:
        """Splits with a file for both languages."""
        stems = {p.stem for p in self.dir.glob(f"*.{self.src}")}
        return sorted(s for s in stems if (self.dir / f"{s}.{self.tgt}").exists())

    def _paths(self, split: str) -> tuple[Path, Path]:
        src_path, tgt_path = self.dir / f"{split}.{self.src}", self.dir / f"{split}.{self.tgt}"
        if not src_path.exists() or not tgt_path.exists():
            missing = src_path if not src_path.exists() else tgt_path
            raise UserError(
                f"{missing}: no such file; splits with both .{self.src} and .{self.tgt} in "
                f"{self.dir}: {', '.join(self.splits()) or 'none'}"
            )
        for path in (src_path, tgt_path):
            open_readable(path).close()
        return src_path, tgt_path

    def key(self, split: str) -> str:
        return digest("text_files", *(file_stamp(p) for p in self._paths(split)))

    def dataset(self, split: str) -> datasets.Dataset:
        src_path, tgt_path = self._paths(split)
        key = self.key(split)
        kwargs = {"src_path": str(src_path), "tgt_path": str(tgt_path), "stamp": key}
        return _generated(_aligned_pairs, kwargs, self.cache_dir, key)

    def pairs(self, split: str) -> list[Pair]:
        """Read from the files themselves (no `datasets`, no cache entry): the same pairs."""
        src_path, tgt_path = self._paths(split)
        return [(p["src"], p["tgt"]) for p in _aligned_pairs(str(src_path), str(tgt_path), "")]


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
        self.cache_dir = cache_dir
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
        return TextFiles(str(self.dir), self.src, self.tgt, self.cache_dir)

    def splits(self) -> list[str]:
        return self._files().splits()

    def key(self, split: str) -> str:
        # generated deterministically from these settings: no need to read the files
        return digest("demo", self.src, self.tgt, self.num_train, self.seed, split)

    def dataset(self, split: str) -> datasets.Dataset:
        return self._files().dataset(split)

    def pairs(self, split: str) -> list[Pair]:
        return self._files().pairs(split)


class HFDataset:
    """An HF `datasets` dataset: a hub name (`wmt/wmt14`, `name="fr-en"`) or a builder such as
    `parquet` / `json` with local `data_files={split: file}`; the code past the download is the
    same. Rows are the hub's translation schema `{"translation": {"en": ..., "fr": ...}}` or one
    column per language (`{"en": ..., "de": ...}`). `split_names` renames splits, so a hub copy
    answers to the names its text files use (`{val: validation}`).

    Nothing is read until `dataset()` is called: building the source never touches the network.
    """

    def __init__(
        self,
        path: str,
        src: str,
        tgt: str,
        name: str | None = None,
        data_files: dict[str, str] | None = None,
        data_dir: str | None = None,
        revision: str | None = None,
        split_names: dict[str, str] | None = None,
    ) -> None:
        self.path, self.name, self.src, self.tgt, self.revision = path, name, src, tgt, revision
        if isinstance(data_files, (DictConfig, ListConfig)):  # from Hydra: datasets wants plain
            data_files = OmegaConf.to_container(data_files, resolve=True)
        if isinstance(data_files, (str, Path)) or (data_files and not hasattr(data_files, "keys")):
            data_files = {"train": data_files}  # a file or a list, as `datasets` takes them
        self.data_files = dict(data_files) if data_files else None
        self.data_dir = data_dir
        self.split_names = dict(split_names) if split_names else {}

    def _describe(self) -> str:
        return self.path + (f" ({self.name})" if self.name else "")

    def splits(self) -> list[str]:
        if self.data_files:
            names = list(self.data_files)
        else:
            import datasets

            names = datasets.get_dataset_split_names(
                self.path, self.name, revision=self.revision, data_dir=self.data_dir
            )
        inverse = {hub: ours for ours, hub in self.split_names.items()}
        return sorted(inverse.get(n, n) for n in names)

    def key(self, split: str) -> str:
        """The direction, and every local file's identity (edited files get a new key): those
        `data.path`, `data.data_dir` and `data.data_files` name, the latter two relative to
        the directory `datasets` reads them from; a hub dataset is identified by name, config
        and `revision` (pin one to track its changes)."""
        base = Path(self.path) if Path(self.path).is_dir() else Path()
        if self.data_dir:
            base = base / self.data_dir

        def stamp(pattern: str | Path) -> list:  # a path (or glob) under `base`, else as given
            stamped = local_stamp(base / pattern)
            return stamped if stamped != [str(base / pattern)] else local_stamp(pattern)

        files = {k: [stamp(p) for p in ([v] if isinstance(v, (str, Path)) else v)]
                 for k, v in (self.data_files or {}).items()}  # fmt: skip
        data_dir = [local_stamp(base)] if self.data_dir else []  # (no term without: old keys)
        return digest("hf", local_stamp(self.path), self.name, self.revision, self.data_dir,
                      *data_dir, files, self.split_names.get(split, split), self.src,
                      self.tgt)  # fmt: skip

    def dataset(self, split: str) -> datasets.Dataset:
        import datasets

        hub_split = self.split_names.get(split, split)
        try:
            ds = datasets.load_dataset(
                self.path,
                self.name,
                split=hub_split,
                data_files=self.data_files,
                data_dir=self.data_dir,
                revision=self.revision,
            )
        except (ValueError, FileNotFoundError, ConnectionError) as e:
            # "Unknown split ..." with the available ones; files, a hub name or an offline
            # cache that are not there (datasets' errors subclass FileNotFoundError)
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(
                f"data.path={self.path}: cannot load split {hub_split!r}: {first}"
            ) from None
        return self._columns(ds, split)

    def _columns(self, ds: datasets.Dataset, split: str) -> datasets.Dataset:
        """Rows of either schema -> string columns `src`, `tgt` (Arrow operations, no Python
        loop over rows)."""
        if "translation" in ds.column_names:
            feature = ds.features["translation"]
            if not isinstance(feature, dict) and not getattr(feature, "languages", None):
                raise UserError(
                    f"data.path={self.path}: split {split}'s translation column is not one text "
                    f"per language with the same languages in every row (read as "
                    f"{type(feature).__name__}); every row needs {self.src!r} and {self.tgt!r}"
                )
            langs = list(getattr(feature, "languages", None) or feature)
            ds = ds.select_columns(["translation"]).flatten()
            prefix = "translation."
        else:
            langs, prefix = list(ds.column_names), ""
        for key, lang in (("src", self.src), ("tgt", self.tgt)):
            if lang not in langs:
                raise UserError(
                    f"data.{key}={lang}: {self._describe()} split {split} has no {lang!r} "
                    f"(languages: {', '.join(langs)})"
                )
        ds = ds.select_columns([prefix + self.src, prefix + self.tgt])
        ds = ds.rename_columns({prefix + self.src: "src", prefix + self.tgt: "tgt"})
        for key, lang in (("src", self.src), ("tgt", self.tgt)):
            column = ds.data.column(key)
            if column.null_count:
                import pyarrow.compute as pc

                first = pc.index(pc.is_null(column), True).as_py()
                raise UserError(
                    f"data.{key}={lang}: {column.null_count} rows of {self._describe()} split "
                    f"{split} have no {lang!r} text (null), the first row {first}"
                )
        return ds

    def pairs(self, split: str) -> list[Pair]:
        return [(s.strip(), t.strip()) for s, t in as_pairs(self.dataset(split))]
