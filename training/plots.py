"""PNG plots for an evaluation: score distributions and a reliability diagram."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

_FIX = "pass a folder to write the PNG plots into (it is made if missing)"


def plots_dir_problem(out_dir: str | Path) -> str | None:
    """Why the plots cannot go into `out_dir` (empty, a file, under a file, not writable), or
    None; asked before evaluating, so that a bad --plots costs no scoring run."""
    if not str(out_dir).strip():
        return f"the path is empty: {_FIX}"
    path = Path(out_dir)
    for folder in (path, *path.parents):  # the nearest one that exists decides
        if folder.is_dir():
            if not os.access(folder, os.W_OK | os.X_OK):
                return f"{out_dir}: cannot write into {folder} (permission denied); {_FIX}"
            return None
        if folder.exists() or folder.is_symlink():
            where = "is" if folder == path else f"is under {folder}, which is"
            return f"{out_dir} {where} a file, not a folder: {_FIX}"
    return None


def save_pair_plots(
    chosen: np.ndarray, rejected: np.ndarray, reliability: list[dict[str, float]], out_dir: Path
) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers or CI
    import matplotlib.pyplot as plt

    problem = plots_dir_problem(out_dir)
    if problem is not None:
        raise ValueError(problem)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        return _draw(chosen, rejected, reliability, out_dir, plt)
    except OSError as exc:  # e.g. the disk filled, or the folder was replaced meanwhile
        where = exc.filename or out_dir
        raise ValueError(f"cannot write the plots to {out_dir}: {exc.strerror or exc} ({where})") from None


def _draw(
    chosen: np.ndarray, rejected: np.ndarray, reliability: list[dict[str, float]], out_dir: Path, plt: Any
) -> dict[str, str]:
    paths = {"distributions": out_dir / "score_distributions.png", "reliability": out_dir / "reliability.png"}

    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(min(chosen.min(), rejected.min()), max(chosen.max(), rejected.max()), 30)
    ax.hist(chosen, bins=bins, alpha=0.6, label="chosen")
    ax.hist(rejected, bins=bins, alpha=0.6, label="rejected")
    ax.set_xlabel("reward")
    ax.set_ylabel("count")
    ax.set_title("Scores of chosen and rejected responses")
    ax.legend()
    fig.tight_layout()
    fig.savefig(paths["distributions"], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0.5, 1.0], [0.5, 1.0], linestyle="--", color="grey", label="perfectly calibrated")
    if reliability:
        ax.plot([b["confidence"] for b in reliability], [b["accuracy"] for b in reliability], marker="o", label="model")
    ax.set_xlabel("confidence  max(p, 1-p)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0.5, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_title("Reliability of P(chosen preferred)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(paths["reliability"], dpi=100)
    plt.close(fig)
    return {k: str(v) for k, v in paths.items()}
