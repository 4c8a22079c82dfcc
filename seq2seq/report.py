"""The evaluation report beside the scores: n-best lists, BLEU-by-bucket tables and plots."""

from __future__ import annotations

from pathlib import Path

from seq2seq.translate import Translation


def write_nbest(path: Path, nbest: list[list[Translation]]) -> None:
    """Moses n-best format, `id ||| hypothesis ||| features ||| score`, best first per id;
    the feature is the model's log-probability (EOS included), the score the search's."""
    with open(path, "w", encoding="utf-8") as f:
        for i, translations in enumerate(nbest):
            for t in translations:
                f.write(f"{i} ||| {t.text} ||| model= {t.logprob:.6f} ||| {t.score:.6f}\n")


def _label(row: dict, fmt: str = "{:g}") -> str:
    low = fmt.format(row["from"])
    return f"{low}+" if row["to"] is None else f"{low}-{fmt.format(row['to'])}"


def bucket_table(rows: list[dict], what: str, fmt: str = "{:g}") -> str:
    """A Markdown table of bucketed BLEU."""
    lines = [f"| {what} | sentences | BLEU |", "|---|---|---|"]
    lines += [f"| {_label(r, fmt)} | {r['sentences']} | {r['bleu']:.2f} |" for r in rows]
    return "\n".join(lines) + "\n"


def plot_buckets(
    by_length: list[dict], by_rarity: list[dict] | None, path: Path, title: str
) -> None:
    """Sutskever et al. 2014, Figure 3: BLEU by sentence length (left) and by average word
    frequency rank (right), as a PNG."""
    plt = pyplot()
    panels = [(by_length, "source sentence length (words)", "{:g}")]
    if by_rarity:
        panels.append((by_rarity, "average source word frequency rank", "{:.0f}"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (rows, xlabel, fmt) in zip(axes[0], panels):
        ax.plot(range(len(rows)), [r["bleu"] for r in rows], marker="o")
        ax.set_xticks(range(len(rows)), [_label(r, fmt) for r in rows], rotation=30, fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("BLEU")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)


def pyplot():  # noqa: ANN201  (matplotlib.pyplot, imported late: it is slow to import)
    """matplotlib.pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: object, path: Path) -> None:
    """Write a figure as a PNG and free it."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot().close(fig)
