"""Train/validation split that never puts one conversation on both sides.

Rows about the same conversation (pairs, ratings and likes alike) are one group, and each
group goes to a side by a hash of (seed, key): the split depends on neither row order nor
the other prompts, so adding data moves no existing prompt across sides.

The key of a multi-turn prompt ("Human: ...\n\nAssistant: ...\n\nHuman: ...") is its first
turn. HH-style data holds the same conversation cut at several depths, and the shorter
prompt's replies are turns inside the longer one's: keyed by the whole prompt, 14 of the
172 validation pairs of the HH harmless file had such a relative in training.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import TypeVar

from training.data.examples import Example
from training.data.loaders import HH_MARKER
from training.data.quality import normalize_text

E = TypeVar("E", bound=Example)


GROUP_BY_CONVERSATION = "conversation"
GROUP_BY_PROMPT = "prompt"  # the whole prompt: versions trained before the conversation key
GROUPINGS = (GROUP_BY_CONVERSATION, GROUP_BY_PROMPT)


def split_by_prompt(
    examples: Sequence[E], val_fraction: float = 0.1, seed: int = 0, group_by: str = GROUP_BY_CONVERSATION
) -> tuple[list[E], list[E]]:
    """(train, val): about `val_fraction` of the conversations, with all their rows, go to val.

    If the hash sends no prompt to val (or none to train) while there are 2+ prompts,
    the prompt with the lowest (highest) hash is moved so that both sides have data;
    a single prompt always goes to train.
    Both lists keep the input order of their rows.
    """
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)):
        raise ValueError(f"val_fraction must be a number between 0 and 1 (exclusive), got {val_fraction!r}")
    if not (math.isfinite(val_fraction) and 0.0 < val_fraction < 1.0):
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if group_by not in GROUPINGS:
        raise ValueError(f"group_by must be one of {', '.join(GROUPINGS)}, got {group_by!r}")
    key = _conversation_key if group_by == GROUP_BY_CONVERSATION else _prompt_key
    keys = [key(e) for e in examples]  # once each: normalizing long dialogues is not free
    positions = {prompt: _position(seed, prompt) for prompt in set(keys)}
    val_prompts = {prompt for prompt, position in positions.items() if position < val_fraction}
    if len(positions) < 2:
        val_prompts = set()  # one prompt cannot be split; training needs it more
    else:
        ordered = sorted(positions, key=lambda prompt: (positions[prompt], prompt))
        if not val_prompts:
            val_prompts = {ordered[0]}
        elif len(val_prompts) == len(positions):
            val_prompts.discard(ordered[-1])
    train = [e for e, k in zip(examples, keys, strict=True) if k not in val_prompts]
    val = [e for e, k in zip(examples, keys, strict=True) if k in val_prompts]
    return train, val


def count_groups(examples: Sequence[Example], group_by: str = GROUP_BY_CONVERSATION) -> int:
    """How many groups (conversations, or whole prompts) `split_by_prompt` would place."""
    if group_by not in GROUPINGS:
        raise ValueError(f"group_by must be one of {', '.join(GROUPINGS)}, got {group_by!r}")
    key = _conversation_key if group_by == GROUP_BY_CONVERSATION else _prompt_key
    return len({key(e) for e in examples})


def _prompt_key(example: Example) -> str:
    return normalize_text(example.prompt)


def _conversation_key(example: Example) -> str:
    cut = example.prompt.find(HH_MARKER)
    return normalize_text(example.prompt if cut < 0 else example.prompt[:cut])


def _position(seed: int, prompt: str) -> float:
    """A stable pseudo-random number in [0, 1) for (seed, prompt)."""
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64
