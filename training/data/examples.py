"""The three shapes of human judgement Plaudit learns from, after validation.

Every example remembers where it came from (`origin`: "file:line") so that later
reports (duplicates, contradictions, low agreement) can point at the source row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from model_store.scoring import TextPair


@dataclass(frozen=True, slots=True)
class PairExample:
    """`chosen` was preferred over `rejected` as a reply to `prompt`."""

    prompt: str
    chosen: str
    rejected: str
    margin: float = 0.0
    annotator: str | None = None
    origin: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class RatingExample:
    """`response` got `rating` on the scale [scale_min, scale_max]."""

    prompt: str
    response: str
    rating: float
    scale_min: float = 1.0
    scale_max: float = 5.0
    annotator: str | None = None
    origin: str = field(default="", compare=False)

    @property
    def normalized(self) -> float:
        """The rating mapped onto [-1, 1], the target the reward head regresses to."""
        half = (self.scale_max - self.scale_min) / 2.0
        return (self.rating - self.scale_min) / half - 1.0


@dataclass(frozen=True, slots=True)
class LikeExample:
    """`response` was liked (thumbs up) or not."""

    prompt: str
    response: str
    liked: bool
    annotator: str | None = None
    origin: str = field(default="", compare=False)


Example = PairExample | RatingExample | LikeExample


def scored_texts(examples: Sequence[Example]) -> list[TextPair]:
    """Every (prompt, response) the examples hold, in order: a pair gives chosen, then rejected."""
    out: list[TextPair] = []
    for ex in examples:
        if isinstance(ex, PairExample):
            out += [TextPair(ex.prompt, ex.chosen), TextPair(ex.prompt, ex.rejected)]
        else:
            out.append(TextPair(ex.prompt, ex.response))
    return out
