"""Sutskever et al. 2014, Figure 2: a 2-D PCA projection of the LSTM's hidden state after it has
read each phrase. Phrases with the same meaning should land together even when their words are
reordered or the voice changes; "who did what to whom" should separate them."""

from __future__ import annotations

from pathlib import Path

import torch

from seq2seq.checkpoint import load_checkpoint
from seq2seq.data.batching import collate, encode_sources
from seq2seq.data.sources import read_lines
from seq2seq.errors import UserError
from seq2seq.report import pyplot, save_figure


@torch.inference_mode()
def phrase_states(ckpt: str | Path, phrases: list[str]) -> torch.Tensor:
    """(N, H): the top encoder layer's final hidden state for each phrase."""
    loaded = load_checkpoint(ckpt)
    data = encode_sources(loaded.tokenizer, phrases, loaded.data["reverse_source"])
    batch = collate([data[i] for i in range(len(phrases))])
    state = loaded.model.eval().encode(batch["src"], batch["src_lens"])
    if "h" not in state:
        raise UserError(f"ckpt={ckpt}: Figure 2 needs an LSTM (its encoder state h); this model "
                        f"has {', '.join(sorted(state))}")  # fmt: skip
    return state["h"][:, -1].float()  # (B, L, H) -> top layer (B, H)


def pca_2d(x: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N, 2): the projection on the two leading principal components."""
    centred = x - x.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)  # v: (min(N, D), D)
    return centred @ v[:2].T


def plot_phrase_pca(ckpt: str | Path, phrase_file: str | Path, png: str | Path) -> torch.Tensor:
    """Write the PCA plot of `phrase_file` (one phrase per line) to `png`; returns the points."""
    phrases = [p for p in read_lines(Path(phrase_file)) if p.strip()]
    if len(phrases) < 3:
        raise UserError(f"{phrase_file}: needs at least 3 phrases for a 2-D projection "
                        f"(has {len(phrases)})")  # fmt: skip
    points = pca_2d(phrase_states(ckpt, phrases))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter(points[:, 0], points[:, 1], s=12)
    for (x, y), text in zip(points.tolist(), phrases):
        ax.annotate(text, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.set_title(f"encoder state after each phrase: {Path(ckpt).parent.name}", fontsize=9)
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, Path(png))
    return points
