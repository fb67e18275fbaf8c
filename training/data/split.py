"""Train/validation split that never puts one prompt on both sides.

Rows about the same prompt (pairs, ratings and likes alike) are one group, and each
group goes to a side by a hash of (seed, prompt): the split depends on neither row
order nor the other prompts, so adding data moves no existing prompt across sides.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import TypeVar

from training.data.examples import Example
from training.data.quality import normalize_text

E = TypeVar("E", bound=Example)


def split_by_prompt(examples: Sequence[E], val_fraction: float = 0.1, seed: int = 0) -> tuple[list[E], list[E]]:
    """(train, val): about `val_fraction` of the prompts, with all their rows, go to val.

    If the hash sends no prompt to val (or none to train) while there are 2+ prompts,
    the prompt with the lowest (highest) hash is moved so that both sides have data;
    a single prompt always goes to train.
    Both lists keep the input order of their rows.
    """
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)):
        raise ValueError(f"val_fraction must be a number between 0 and 1 (exclusive), got {val_fraction!r}")
    if not (math.isfinite(val_fraction) and 0.0 < val_fraction < 1.0):
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    positions = {prompt: _position(seed, prompt) for prompt in {_prompt_key(e) for e in examples}}
    val_prompts = {prompt for prompt, position in positions.items() if position < val_fraction}
    if len(positions) < 2:
        val_prompts = set()  # one prompt cannot be split; training needs it more
    else:
        ordered = sorted(positions, key=lambda prompt: (positions[prompt], prompt))
        if not val_prompts:
            val_prompts = {ordered[0]}
        elif len(val_prompts) == len(positions):
            val_prompts.discard(ordered[-1])
    train = [e for e in examples if _prompt_key(e) not in val_prompts]
    val = [e for e in examples if _prompt_key(e) in val_prompts]
    return train, val


def _prompt_key(example: Example) -> str:
    return normalize_text(example.prompt)


def _position(seed: int, prompt: str) -> float:
    """A stable pseudo-random number in [0, 1) for (seed, prompt)."""
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64
