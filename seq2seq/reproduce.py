"""`scripts/reproduce.py`'s logic: train the runs a paper table needs, decode its rows, write
the table beside the paper's numbers.

A table (`conf/table/*.yaml`) names its training runs (Hydra overrides of `train.yaml`), its rows
(which runs' checkpoints, how to decode, the paper's BLEU) and, per scale, the overrides that
turn the paper's experiments into a run of that size. Runs live in `<results>/<scale>/runs/<run>`
and are shared between tables (Table 2 rescores with Table 1's models); a finished run has a
`done.json` and is skipped, an interrupted one continues from its last checkpoint.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from seq2seq.cli import CONF, compose_config
from seq2seq.data.sources import file_stamp
from seq2seq.errors import UserError

log = logging.getLogger(__name__)
ROOT = CONF.parent


@dataclass
class Run:
    name: str
    overrides: list[str]
    dir: Path

    @property
    def done(self) -> Path:
        return self.dir / "done.json"

    def checkpoint(self, average_last: int = 0) -> Path:
        """The final weights (the papers decode the last model, not the best on validation),
        or the average of the last N periodic checkpoints (Vaswani et al. 2017, §6.1)."""
        if not average_last:
            return self.dir / "last.ckpt"
        return self.dir / f"averaged_last{average_last}.ckpt"


def runs_of(cfg: DictConfig) -> dict[str, Run]:
    """The runs the table's rows (and its n-best list) use at this scale: the scale's overrides,
    then the run's own (so a run may change what the scale sets), then the user's."""
    table, scale = cfg.table, scale_of(cfg)
    rows = [row for row in table.rows if in_scale(row, cfg.scale)]
    needed = {name for row in rows for name in row.get("ckpts", [])}
    if table.get("nbest") and not cfg.get("nbest"):
        needed.add(table.nbest.run)
    unknown = needed - set(table.runs)
    if unknown:
        raise UserError(f"table {table.name}: rows use runs {sorted(unknown)} it does not define")
    runs = {}
    for name in sorted(needed):
        full = [*scale.overrides, *run_overrides(table, name, cfg.scale),
                *user_overrides(cfg.train_overrides)]  # fmt: skip
        run_dir = Path(cfg.results_dir) / cfg.scale / "runs" / name
        runs[name] = Run(name, [str(o) for o in full], run_dir)
    return runs


def run_overrides(table: DictConfig, name: str, scale: str) -> list[str]:
    """A run's overrides: one list for every scale, or a list per scale (`{paper: [...],
    small: [...]}`) where the small run is a different experiment."""
    spec = table.runs[name]
    if isinstance(spec, DictConfig):
        if scale not in spec:
            raise UserError(f"table {table.name}: run {name} has no overrides for scale={scale}")
        spec = spec[scale]
    return list(spec)


def in_scale(row: DictConfig, scale: str) -> bool:
    """A row restricted to some scales (`scales: [paper]`, e.g. Transformer big) or everywhere."""
    return scale in row.get("scales", [scale])


def user_overrides(given: str | ListConfig | None) -> list[str]:
    """`train_overrides="trainer=ddp trainer.devices=8"` (one quoted string) or a list."""
    if not given:
        return []
    return shlex.split(given) if isinstance(given, str) else [str(o) for o in given]


def scale_of(cfg: DictConfig) -> DictConfig:
    scales = cfg.table.scales
    if cfg.scale not in scales:
        raise UserError(f"scale={cfg.scale}: table {cfg.table.name} has scales {', '.join(scales)}")
    return scales[cfg.scale]


def trained_overrides(run: Run) -> list[str] | None:
    """The overrides a finished run was trained with; None where it is not finished: no
    readable `done.json` (a run killed while writing it), or no `last.ckpt` (deleted), so it
    is trained (continued with `resume=auto`) again."""
    try:
        trained = json.loads(run.done.read_text())["overrides"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return trained if run.checkpoint().is_file() else None


def check_run_dir(run: Run) -> None:
    """A finished run directory must hold the same recipe (runs are shared between tables by
    name: one name, one training config), whatever the order of its overrides."""
    trained = trained_overrides(run)
    if trained is None:
        return
    if trained != run.overrides and training_config(trained) != training_config(run.overrides):
        raise UserError(
            f"{run.dir} was trained with {trained}, but this table asks for {run.overrides}; "
            "rename the run or delete its directory"
        )


def training_config(overrides: list[str]) -> dict:
    return OmegaConf.to_container(compose_config("train", overrides), resolve=True)


def train_local(run: Run) -> dict:
    """Train in this process (continuing an interrupted run) and mark the run finished."""
    from seq2seq.train import train

    cfg = compose_config("train", [*run.overrides, "resume=auto"])
    run.dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    summary = train(cfg, run.dir)
    return mark_done(run, {"seconds": round(time.perf_counter() - start, 1), **summary})


def train_parallel(runs: list[Run], jobs: int) -> None:
    """Train up to `jobs` runs at once, each a `train.py` process with an equal share of the
    CPU threads: small models keep one core busier than two."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    waiting, active, failed = list(runs), [], []
    while waiting or active:
        while waiting and len(active) < jobs:
            run = waiting.pop(0)
            run.dir.mkdir(parents=True, exist_ok=True)
            args = [sys.executable, str(ROOT / "scripts" / "train.py"), *run.overrides,
                    "resume=auto", f"hydra.run.dir={run.dir}"]  # fmt: skip
            log.info("training %s (%d threads): %s", run.name, threads, " ".join(run.overrides))
            with (run.dir / "train.out").open("a") as out:
                proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
            active.append((run, proc, time.perf_counter()))
        time.sleep(1)
        for item in [a for a in active if a[1].poll() is not None]:
            run, proc, start = item
            active.remove(item)
            if proc.returncode:
                failed.append(run.name)
            else:
                mark_done(run, {"seconds": round(time.perf_counter() - start, 1), "jobs": jobs})
    if failed:
        raise UserError(f"training failed for {', '.join(failed)}: see their train.out")


def mark_done(run: Run, summary: dict) -> dict:
    summary = {"overrides": run.overrides, **summary}
    write_json(run.done, summary)
    return summary


def write_json(path: Path, value: object) -> None:
    """Written whole or not at all: a temporary file beside it, then renamed."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=2) + "\n")
    temporary.replace(path)


def train_slurm(runs: list[Run], launcher: str) -> None:
    """Submit every run at once through Hydra's submitit launcher (`conf/hydra/launcher/`) and
    wait for all; a pre-empted job is requeued by submitit and continues with `resume=auto`."""
    procs = []
    for run in runs:
        args = [sys.executable, str(ROOT / "scripts" / "train.py"), "-m",
                f"hydra/launcher={launcher}", *run.overrides, "resume=auto",
                f"hydra.sweep.dir={run.dir}", "hydra.sweep.subdir=."]  # fmt: skip
        log.info("submitting %s: %s", run.name, " ".join(args[2:]))
        procs.append((run, subprocess.Popen(args)))
    failed = [run.name for run, proc in procs if proc.wait() != 0]
    for run, proc in procs:
        if proc.returncode == 0:
            mark_done(run, {"launcher": launcher})
    if failed:
        raise UserError(f"training failed for {', '.join(failed)}: see their directories")


def average(run: Run, last: int) -> Path:
    """`averaged_last<N>.ckpt` of a finished run (made once)."""
    from seq2seq.checkpoint import average_checkpoints, last_checkpoints, save_checkpoint

    out = run.checkpoint(last)
    if not out.exists():
        save_checkpoint(average_checkpoints(last_checkpoints(run.dir, last)), out)
    return out


def decode_row(cfg: DictConfig, row: DictConfig, runs: dict[str, Run], out_dir: Path) -> dict:
    """Evaluate one row (a model or an ensemble, one search) on the scale's test split; a row
    already decoded from the same checkpoints is read back."""
    from seq2seq.evaluate import evaluate

    ckpts = row_checkpoints(row, runs)
    result_file = out_dir / f"{split_of(cfg)}.json"
    settings = [split_of(cfg), bool(row.get("figure3")), *row.decode]
    cached = cached_result(result_file, ckpts, settings)
    if cached:
        return cached
    overrides = [
        "ckpt=[" + ",".join(f"'{p}'" for p in ckpts) + "]",
        f"split={split_of(cfg)}",
        f"device={cfg.device}",
        f"report.by_length={bool(row.get('figure3'))}",
        *row.decode,
    ]
    result = evaluate(compose_config("evaluate", overrides), out_dir)
    remember_inputs(result_file, ckpts, settings)
    return result


def row_checkpoints(row: DictConfig, runs: dict[str, Run]) -> list[Path]:
    last = row.get("average_last")
    return [average(runs[r], last) if last else runs[r].checkpoint() for r in row.get("ckpts", [])]


def inputs_stamp(inputs: list[Path], settings: list) -> dict:
    """What a row's result was computed from: each input file's path, size and modification
    time (`file_stamp`), and the row's settings (split, search)."""
    return {"inputs": [file_stamp(p) for p in inputs], "settings": [str(s) for s in settings]}


def remember_inputs(path: Path, inputs: list[Path], settings: list) -> None:
    write_json(path.with_name(path.name + ".inputs"), inputs_stamp(inputs, settings))


def cached_result(path: Path, inputs: list[Path], settings: list) -> dict | None:
    """A row's result computed from these very files and settings (`remember_inputs`), else
    None: another n-best list, a retrained checkpoint or an edited search is decoded again."""
    try:
        remembered = json.loads(path.with_name(path.name + ".inputs").read_text())
        if remembered == inputs_stamp(inputs, settings):
            return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    return None


def split_of(cfg: DictConfig) -> str:
    return cfg.split or scale_of(cfg).split


def nbest_list(cfg: DictConfig, runs: dict[str, Run], out: Path) -> Path:
    """The n-best list Table 2 rescores: `nbest=FILE` (the paper's SMT lists, Moses format), or
    one decoded with the table's weaker `nbest.run` (beam `nbest.size`, all hypotheses kept)."""
    if cfg.get("nbest"):
        if not Path(cfg.nbest).is_file():
            raise UserError(f"nbest={cfg.nbest}: no such file")
        return Path(cfg.nbest)
    spec = cfg.table.nbest
    size = spec.size
    row = OmegaConf.create({"system": "n-best list", "ckpts": [spec.run], "decode": [
        "decode=beam", f"decode.beam_size={size}", f"decode.nbest={size}",
        "decode.length_penalty=none"]})  # fmt: skip
    row_dir = out / cfg.table.name / "00_nbest_list"
    decode_row(cfg, row, runs, row_dir)
    return row_dir / f"{split_of(cfg)}.nbest"


def rescore_row(
    cfg: DictConfig, row: DictConfig, runs: dict[str, Run], nbest: Path, out_dir: Path
) -> dict:
    """Table 2: the n-best list's own 1-best (`nbest: first`), the best by sentence BLEU against
    the reference (`oracle`), or reranked by the even average of its score and the models'
    log-probability (`rescore`, §3.6)."""
    from hydra.utils import instantiate
    from sacrebleu import sentence_bleu

    from seq2seq.checkpoint import load_models
    from seq2seq.metrics import corpus_scores, tokenised_bleu
    from seq2seq.score import best_per_source, check_ids, read_nbest, score_nbest

    ckpts = row_checkpoints(row, runs)
    result_file = out_dir / f"{split_of(cfg)}.json"
    settings = [split_of(cfg), row.nbest]
    cached = cached_result(result_file, [*ckpts, nbest], settings)
    if cached:
        return cached
    train_cfg = compose_config("train", next(iter(runs.values())).overrides)
    pairs = instantiate(train_cfg.data.source).pairs(split_of(cfg))
    srcs, refs = [s for s, _ in pairs], [t for _, t in pairs]
    entries = read_nbest(nbest)
    check_ids(entries, len(srcs), str(nbest), f"split {split_of(cfg)}")
    weight = 1.0  # rank by `scores` alone
    if row.nbest == "first":
        scores = [e.score for e in entries]  # the list's own ranking
    elif row.nbest == "oracle":
        scores = [sentence_bleu(e.hyp, [refs[e.id]]).score for e in entries]
    elif row.nbest == "rescore":
        loaded = load_models([str(p) for p in ckpts], cfg.device)
        scores = score_nbest(loaded.model, loaded.tokenizer, loaded.data["reverse_source"], srcs,
                             entries)  # fmt: skip
        weight = 0.5  # an even average with the list's score
    else:
        raise UserError(f"table {cfg.table.name}, row '{row.system}': nbest={row.nbest}; "
                        "use first, oracle or rescore")  # fmt: skip
    hyps = best_per_source(entries, scores, len(srcs), weight)
    result = {"ckpt": [str(p) for p in ckpts], "nbest": str(nbest), **corpus_scores(hyps, refs),
              "tokenised_bleu": tokenised_bleu(hyps, refs, train_cfg.data.tgt)}  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{split_of(cfg)}.hyp").write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    write_json(result_file, result)
    remember_inputs(result_file, [*ckpts, nbest], settings)
    return result


def row_name(index: int, system: str) -> str:
    """A directory name for a row: its number and the system's words."""
    words = "".join(c if c.isalnum() else "_" for c in system.lower()).split("_")
    return f"{index:02d}_" + "_".join(w for w in words if w)[:60]


def train_minutes(runs: dict[str, Run]) -> float:
    """The training time the runs' `done.json` files recorded (local runs)."""
    done = [json.loads(r.done.read_text()) for r in runs.values() if r.done.exists()]
    return sum(d.get("seconds", 0.0) for d in done) / 60


def table_markdown(cfg: DictConfig, runs: dict[str, Run], rows: list[dict], seconds: float) -> str:
    """The table beside the paper's: sacreBLEU (our convention) and the paper's own metric."""
    table, scale = cfg.table, scale_of(cfg)
    signature = next((r["bleu_signature"] for r in rows if r.get("bleu_signature")), "")
    lines = [
        f"# {table.title}",
        "",
        f"Scale `{cfg.scale}`: {scale.note.strip()}",
        "",
        f"Decoded: split `{split_of(cfg)}`"
        + (" (`split=` given: not the split the note names)" if cfg.split else "")
        + ".",
        "",
        f"Paper BLEU: {table.paper_metric.strip()}. Ours: sacreBLEU on detokenised output "
        f"(`{signature}`) and tokenised BLEU (Moses tokenizer, multi-bleu style), labelled.",
        f"Wall time: this command {seconds / 60:.1f} min (training what was not yet trained, "
        f"decoding); the runs' own training times add up to {train_minutes(runs):.1f} min "
        "(runs trained at once, `jobs=N`, overlap).",
        "",
        "| system | paper BLEU | ours: sacreBLEU | ours: tokenised BLEU | decode s |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        ours = "–" if r.get("bleu") is None else f"{r['bleu']:.2f}"
        tok = "–" if r.get("tokenised_bleu") is None else f"{r['tokenised_bleu']:.2f}"
        paper = "–" if r["paper"] is None else f"{r['paper']:.2f}"
        secs = "–" if r.get("decode_seconds") is None else f"{r['decode_seconds']:.0f}"
        lines.append(f"| {r['system']} | {paper} | {ours} | {tok} | {secs} |")
    return "\n".join(lines) + "\n"


CSV_FIELDS = ["system", "paper", "bleu", "tokenised_bleu", "chrf", "decode_seconds",
              "bleu_signature", "ckpt"]  # fmt: skip


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()})


def reproduce(cfg: DictConfig) -> Path:
    """Train what is missing, decode every row, write `<results>/<scale>/<table>.md|.csv`
    (and the figures the table asks for). Returns the markdown file."""
    start = time.perf_counter()
    table = cfg.table
    missing = [key for key in scale_of(cfg).get("requires", []) if cfg.get(key) is None]
    if missing:
        raise UserError(f"scale={cfg.scale} of {table.name} needs {', '.join(missing)}=...: "
                        f"{scale_of(cfg).requires_note}")  # fmt: skip
    runs = runs_of(cfg)
    for run in runs.values():
        check_run_dir(run)
    todo = [run for run in runs.values() if trained_overrides(run) is None]
    log.info("%d of %d runs to train: %s", len(todo), len(runs), ", ".join(r.name for r in todo))
    if cfg.launcher == "local" and cfg.jobs > 1:
        train_parallel(todo, cfg.jobs)
    elif cfg.launcher == "local":
        for run in todo:
            log.info("training %s: %s", run.name, " ".join(run.overrides))
            train_local(run)
    else:
        train_slurm(todo, cfg.launcher)

    out = Path(cfg.results_dir) / cfg.scale
    nbest = nbest_list(cfg, runs, out) if any(r.get("nbest") for r in table.rows) else None
    rows = []
    for i, row in enumerate(table.rows, 1):
        if not in_scale(row, cfg.scale):
            continue
        row_dir = out / table.name / row_name(i, row.system)
        if row.get("nbest"):
            result = rescore_row(cfg, row, runs, nbest, row_dir)
        else:
            result = decode_row(cfg, row, runs, row_dir)
        log.info("%s: BLEU %.2f", row.system, result["bleu"])
        rows.append({"system": row.system, "paper": row.get("paper"), **result})
        if row.get("figure3"):
            for ext in ("png", "buckets.md"):
                for f in row_dir.glob(f"*.{ext}"):
                    shutil.copy(f, out / f"{table.name}_figure3.{ext}")
    if table.get("figure2") and table.figure2.run in runs:
        phrase_figure(cfg, runs[table.figure2.run], out / f"{table.name}_figure2.png")
    md = out / f"{table.name}.md"
    md.write_text(table_markdown(cfg, runs, rows, time.perf_counter() - start))
    write_csv(md.with_suffix(".csv"), rows)
    (md.with_suffix(".json")).write_text(
        json.dumps({"config": OmegaConf.to_container(cfg, resolve=True), "rows": rows}, indent=2)
    )
    return md


def phrase_figure(cfg: DictConfig, run: Run, png: Path) -> None:
    from seq2seq.phrases import plot_phrase_pca

    plot_phrase_pca(run.checkpoint(), ROOT / cfg.table.figure2.phrases, png)
