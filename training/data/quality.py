"""Checks on labelled data that validation cannot see row by row.

- duplicates:      the same row (same annotator included) more than once;
- contradictions:  one annotator (or unattributed rows) labelling the same item both
                   ways: a pair with chosen and rejected swapped, a response both liked
                   and disliked, ratings of one response spread over half the scale;
- agreement:       Krippendorff's alpha per shape over items labelled by 2+ distinct
                   annotators, with the items on which they disagree.

Different annotators disagreeing is not a contradiction: it is what agreement measures.
Texts are compared with whitespace normalised (`normalize_text`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

from training.data.examples import Example, PairExample, RatingExample

Metric = Literal["nominal", "interval"]
Label = int | bool | float
"""pairs: index of the winner in the item's canonical response order; likes: liked; ratings: rating."""


@dataclass(frozen=True)
class DuplicateGroup:
    """Rows that are the same example; `origins[0]` is the first occurrence."""

    shape: str
    origins: list[str]


@dataclass(frozen=True)
class Contradiction:
    """One annotator (None: rows without one) labelled the same item in conflicting ways."""

    shape: str
    prompt: str
    annotator: str | None
    detail: str
    origins: list[str]


@dataclass(frozen=True)
class LowAgreementItem:
    """An item on which distinct annotators disagree.

    `responses` is the item's response, or for pairs its two responses in canonical
    (sorted) order, which is what a pair label's 0/1 refers to.
    """

    shape: str
    prompt: str
    responses: list[str]
    labels: dict[str, Label]
    origins: list[str]


@dataclass(frozen=True)
class Agreement:
    """Krippendorff's alpha for one shape; alpha is None when it is undefined.

    Alpha is undefined with no item labelled by 2+ annotators, or when every label is
    the same (no variation to agree about).
    """

    shape: str
    metric: Metric
    alpha: float | None
    items: int
    annotators: int
    labels: int
    low_agreement: list[LowAgreementItem]


@dataclass(frozen=True)
class QualityReport:
    duplicates: list[DuplicateGroup]
    contradictions: list[Contradiction]
    agreement: dict[str, Agreement]


def normalize_text(text: str) -> str:
    """Collapse runs of whitespace and trim, so reformatting does not make a new item."""
    return " ".join(text.split())


def check_quality(examples: Sequence[Example]) -> QualityReport:
    return QualityReport(
        duplicates=find_duplicates(examples),
        contradictions=find_contradictions(examples),
        agreement=measure_agreement(examples),
    )


def shape_of(example: Example) -> str:
    if isinstance(example, PairExample):
        return "pairs"
    if isinstance(example, RatingExample):
        return "ratings"
    return "likes"


def find_duplicates(examples: Sequence[Example]) -> list[DuplicateGroup]:
    groups: dict[tuple[Hashable, ...], list[Example]] = defaultdict(list)
    for example in examples:
        key = (shape_of(example), _item_key(example), _value(example), _margin(example), example.annotator)
        groups[key].append(example)
    return [DuplicateGroup(shape_of(g[0]), _origins(g)) for g in groups.values() if len(g) > 1]


def find_contradictions(examples: Sequence[Example]) -> list[Contradiction]:
    found: list[Contradiction] = []
    for (shape, item, annotator), group in _by_item_and_annotator(examples).items():
        if not _disagree([_value(example) for example in group]):
            continue
        if shape == "pairs":
            detail = "chosen and rejected are swapped between these rows"
        elif shape == "likes":
            detail = "the response is both liked and disliked"
        else:
            low, high = min(group, key=_value), max(group, key=_value)
            detail = f"ratings {_rating_text(low, group)} and {_rating_text(high, group)} differ by at least half the scale"
        found.append(Contradiction(shape, item[0], annotator, detail, _origins(group)))
    return found


def measure_agreement(examples: Sequence[Example]) -> dict[str, Agreement]:
    """Alpha per shape (nominal for pairs and likes, interval for ratings)."""
    # item -> annotator -> that annotator's rows of the item. The first row gives the
    # annotator's label; repeats by one person are duplicates or contradictions,
    # reported separately. Rows without an annotator cannot tell people apart.
    by_item: dict[tuple[str, tuple[str, ...]], dict[str, list[Example]]] = defaultdict(dict)
    for (shape, item, annotator), group in _by_item_and_annotator(examples).items():
        if annotator is not None:
            by_item[(shape, item)][annotator] = group
    result: dict[str, Agreement] = {}
    metrics: tuple[tuple[str, Metric], ...] = (("pairs", "nominal"), ("ratings", "interval"), ("likes", "nominal"))
    for shape, metric in metrics:
        units: list[list[Label]] = []
        annotators: set[str] = set()
        low: list[LowAgreementItem] = []
        for (item_shape, item), per_annotator in by_item.items():
            if item_shape != shape or len(per_annotator) < 2:
                continue
            labels = {name: _label(group[0]) for name, group in per_annotator.items()}  # as given, to show
            values = [_value(group[0]) for group in per_annotator.values()]  # comparable across scales
            units.append(values)
            annotators.update(labels)
            rows = [example for group in per_annotator.values() for example in group]
            if _disagree(values):
                low.append(LowAgreementItem(shape, item[0], list(item[1:]), labels, _origins(rows)))
        alpha = krippendorff_alpha(units, metric)
        result[shape] = Agreement(shape, metric, alpha, len(units), len(annotators), sum(map(len, units)), low)
    return result


def krippendorff_alpha(units: Sequence[Sequence[Hashable]], metric: Metric = "nominal") -> float | None:
    """Krippendorff's alpha = 1 - D_o / D_e over units' values (coders need not be named).

    D_o = (1/n) sum_u 1/(m_u - 1) sum_{i != j in u} delta(v_i, v_j) and
    D_e = 1/(n(n-1)) sum_{i != j over all pairable values} delta(v_i, v_j), with n the
    number of pairable values and m_u the number in unit u. Units with fewer than two
    values carry no pairable information and are skipped. `metric` "nominal": delta is
    0 for equal values, else 1; "interval": the squared difference.
    Returns None when alpha is undefined (no pairable values, or no variation at all).
    """
    if metric not in ("nominal", "interval"):
        raise ValueError(f"metric must be 'nominal' or 'interval', got {metric!r}")

    def delta(a: Hashable, b: Hashable) -> float:
        if metric == "nominal":
            return 0.0 if a == b else 1.0
        return (float(a) - float(b)) ** 2  # type: ignore[arg-type]

    pairable = [list(unit) for unit in units if len(unit) >= 2]
    n = sum(len(unit) for unit in pairable)
    if n == 0:
        return None
    observed = 0.0
    for unit in pairable:
        within = sum(delta(a, b) for i, a in enumerate(unit) for j, b in enumerate(unit) if i != j)
        observed += within / (len(unit) - 1)
    # Expected disagreement from value frequencies: O(distinct values^2), not O(n^2).
    counts = Counter(value for unit in pairable for value in unit)
    expected = sum(n_c * n_k * delta(c, k) for c, n_c in counts.items() for k, n_k in counts.items())
    if expected == 0:
        return None
    return 1.0 - (n - 1) * observed / expected


def _item_key(example: Example) -> tuple[str, ...]:
    """What was judged: the prompt plus the response, or the unordered pair of responses."""
    prompt = normalize_text(example.prompt)
    if isinstance(example, PairExample):
        first, second = sorted((normalize_text(example.chosen), normalize_text(example.rejected)))
        return (prompt, first, second)
    return (prompt, normalize_text(example.response))


def _label(example: Example) -> Label:
    """The judgement as given: which response won, the rating on its own scale, liked or not."""
    if isinstance(example, PairExample):
        return 0 if _item_key(example)[1] == normalize_text(example.chosen) else 1
    if isinstance(example, RatingExample):
        return example.rating
    return example.liked


def _value(example: Example) -> Label:
    """The judgement as compared between rows: ratings on [-1, 1], as training sees them, so a
    4 of 1-5 and an 8 of 1-10 are not a contradiction, nor a 4 of 1-5 and a 4 of 1-10 equal."""
    return example.normalized if isinstance(example, RatingExample) else _label(example)


def _rating_text(example: RatingExample, group: Sequence[Example]) -> str:
    """`4`, or `4 (of 1-5)` where the rows at hand use more than one scale."""
    scales = {(e.scale_min, e.scale_max) for e in group if isinstance(e, RatingExample)}
    if len(scales) == 1:
        return f"{example.rating:g}"
    return f"{example.rating:g} (of {example.scale_min:g}-{example.scale_max:g})"


def _margin(example: Example) -> float | None:
    return example.margin if isinstance(example, PairExample) else None


def _origins(examples: Sequence[Example]) -> list[str]:
    return [example.origin for example in examples]


def _by_item_and_annotator(examples: Sequence[Example]) -> dict[tuple[str, tuple[str, ...], str | None], list[Example]]:
    groups: dict[tuple[str, tuple[str, ...], str | None], list[Example]] = defaultdict(list)
    for example in examples:
        groups[(shape_of(example), _item_key(example), example.annotator)].append(example)
    return groups


def _disagree(values: Sequence[Label]) -> bool:
    """Values (from `_value`) conflict: for ratings, they spread over at least half the scale,
    which on [-1, 1] is 1."""
    if not all(isinstance(v, float) for v in values):  # winners (0/1) and likes (bools) are not
        return len(set(values)) > 1
    return max(values) - min(values) >= 1.0 - 1e-9
