"""A summary of a loaded dataset: JSON for machines (`describe`), text for people."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from training.data.loaders import Dataset
from training.data.quality import check_quality

_SHOWN = 10
"""How many duplicates, contradictions and low-agreement items the text report lists."""


def describe(dataset: Dataset) -> dict[str, Any]:
    """Counts, quality findings, warnings and hash of `dataset`, as JSON-able values."""
    quality = check_quality(dataset.examples)
    counts = dataset.counts()
    return {
        "files": list(dataset.files),
        "sha256": dataset.sha256,
        "counts": counts,
        "total": sum(counts.values()),
        "warnings": list(dataset.warnings),
        "duplicates": [asdict(group) for group in quality.duplicates],
        "contradictions": [asdict(item) for item in quality.contradictions],
        "agreement": {shape: asdict(agreement) for shape, agreement in quality.agreement.items()},
    }


def format_report(d: dict[str, Any]) -> str:
    """The output of `describe` as a few readable sections."""
    counts = d["counts"]
    lines = [
        f"files: {', '.join(d['files'])}",
        f"sha256: {d['sha256']}",
        f"examples: {d['total']} ({', '.join(f'{n} {shape}' for shape, n in counts.items())})",
    ]
    lines += _section("warnings", d["warnings"], str)
    lines += _section(
        "duplicate rows",
        d["duplicates"],
        lambda g: f"{g['shape']} x{len(g['origins'])}: {', '.join(g['origins'])}",
    )
    lines += _section(
        "contradictions",
        d["contradictions"],
        lambda c: f"{c['shape']} by {c['annotator'] or '(no annotator)'}: {c['detail']}: {', '.join(c['origins'])}",
    )
    lines.append("annotator agreement (Krippendorff's alpha, items labelled by 2+ annotators):")
    for shape, agreement in d["agreement"].items():
        if agreement["items"] == 0:
            lines.append(f"  {shape}: no items labelled by 2+ annotators")
            continue
        alpha = "undefined (no variation)" if agreement["alpha"] is None else f"{agreement['alpha']:.3f}"
        lines.append(
            f"  {shape}: alpha {alpha} ({agreement['metric']}) over {agreement['items']} items, "
            f"{agreement['annotators']} annotators, {count_of(len(agreement['low_agreement']), 'item')} in disagreement"
        )
        for item in agreement["low_agreement"][:_SHOWN]:
            labels = ", ".join(f"{name}={_label_text(shape, label)}" for name, label in item["labels"].items())
            lines.append(f"    {_clip(item['prompt'])!r}: {labels} ({', '.join(item['origins'])})")
        if len(agreement["low_agreement"]) > _SHOWN:
            lines.append(f"    ... and {len(agreement['low_agreement']) - _SHOWN} more")
    return "\n".join(lines)


def _section(title: str, items: list[Any], render: Callable[[Any], str]) -> list[str]:
    if not items:
        return [f"{title}: none"]
    lines = [f"{title}: {len(items)}"]
    lines += [f"  {render(item)}" for item in items[:_SHOWN]]
    if len(items) > _SHOWN:
        lines.append(f"  ... and {len(items) - _SHOWN} more")
    return lines


def _label_text(shape: str, label: Any) -> str:
    if shape == "pairs":
        return "first" if label == 0 else "second"
    if shape == "likes":
        return "liked" if label else "disliked"
    return f"{label:g}"


def _clip(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def count_of(n: int, noun: str) -> str:
    """'1 pair' / '3 pairs'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def all_of(n: int, noun: str) -> str:
    """'the 1 like is' / 'all 3 likes are': the start of a line about every one of them."""
    return f"the 1 {noun} is" if n == 1 else f"all {n} {noun}s are"
