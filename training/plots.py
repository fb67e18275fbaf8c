"""PNG plots for an evaluation: score distributions and a reliability diagram."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def save_pair_plots(
    chosen: np.ndarray, rejected: np.ndarray, reliability: list[dict[str, float]], out_dir: Path
) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers or CI
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
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
