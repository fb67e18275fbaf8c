"""Choose which waiting items go into the next batch (pure functions, no I/O).

The oldest item is always taken, so nothing waits forever behind a stream of better
fitting items; the rest of the batch is filled with the items whose lengths are
nearest to it, which keeps padding (len(batch) x longest item) low.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar


class Sized(Protocol):
    @property
    def n_tokens(self) -> int: ...


T = TypeVar("T", bound=Sized)


def padded_tokens(items: Sequence[Sized]) -> int:
    """Tokens an engine computes for these items once padded to the longest one."""
    return len(items) * max((it.n_tokens for it in items), default=0)


def is_full(items: Sequence[Sized], max_items: int, max_tokens: int) -> bool:
    """Enough is waiting that waiting longer cannot make the next batch any bigger."""
    return len(items) >= max_items or padded_tokens(items) >= max_tokens


def select_batch(waiting: Sequence[T], max_items: int, max_tokens: int) -> list[T]:
    """Pick the next batch from `waiting` (oldest first). A lone item is always allowed,
    even past `max_tokens`, so an oversized item still gets scored."""
    if not waiting:
        return []
    anchor = waiting[0]
    by_length = sorted(waiting, key=lambda it: it.n_tokens)
    pos = next(i for i, it in enumerate(by_length) if it is anchor)
    chosen = [anchor]
    longest = anchor.n_tokens
    lo, hi = pos - 1, pos + 1
    while len(chosen) < max_items and (lo >= 0 or hi < len(by_length)):
        shorter = by_length[lo] if lo >= 0 else None
        longer = by_length[hi] if hi < len(by_length) else None
        take_longer = longer is not None and (
            shorter is None or longer.n_tokens - anchor.n_tokens < anchor.n_tokens - shorter.n_tokens
        )
        if take_longer:
            assert longer is not None
            new_longest = max(longest, longer.n_tokens)
            if (len(chosen) + 1) * new_longest <= max_tokens:
                chosen.append(longer)
                longest = new_longest
                hi += 1
                continue
            # The longer side no longer fits; shorter items still might.
            hi = len(by_length)
            if shorter is None:
                break
        assert shorter is not None
        if (len(chosen) + 1) * longest > max_tokens:
            break  # adding any item costs at least `longest` more tokens
        chosen.append(shorter)
        lo -= 1
    return chosen
