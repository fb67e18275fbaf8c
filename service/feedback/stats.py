"""A quick look at the stored feedback: how much, of what, from where, and how consistent.

Agreement is simple percent agreement between users on items two or more of them judged:
the same prompt+response for likes and ratings, the same prompt and unordered pair of
replies for pairs. Each user counts once per item, with their latest judgement; rows
without a user are left out (nobody can tell whose they are). Ratings agree when they sit
at the same point of their scales. Training computes Krippendorff's alpha for the full
report; this is the cheap number an operator checks first.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from service.feedback import database
from service.feedback.records import KINDS
from service.feedback.schema import feedback

NO_SOURCE = "(none)"
_ROWS_PER_FETCH = 1000


def compute_stats(engine: sa.Engine) -> dict[str, Any]:
    """{total, by_kind, by_source, likes, like_rate, agreement} over all stored feedback."""
    c = feedback.c
    with database.transaction(engine, write=False) as connection:
        if connection.dialect.name == "postgresql":
            # One snapshot for every query below (READ COMMITTED gives each its own, so likes
            # added between two of them could make liked > likes). SQLite's transaction is one.
            connection.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        by_kind = {kind: 0 for kind in KINDS}
        by_kind.update({k: int(n) for k, n in connection.execute(sa.select(c.kind, sa.func.count()).group_by(c.kind))})
        source_counts = connection.execute(sa.select(c.source, sa.func.count()).group_by(c.source).order_by(c.source))
        by_source: dict[str, int] = {}
        for s, n in source_counts:  # a source stored as "(none)" adds to the rows without one
            key = NO_SOURCE if s is None else s
            by_source[key] = by_source.get(key, 0) + int(n)
        liked = connection.execute(
            sa.select(sa.func.count()).select_from(feedback).where(c.kind == "like", c.liked.is_(True))
        ).scalar_one()
        judged = connection.execute(
            sa.select(
                c.kind, c.prompt, c.response, c.chosen, c.rejected, c.liked, c.rating, c.rating_min, c.rating_max, c.user
            )
            .where(c.user.is_not(None))
            .order_by(c.id)
            .execution_options(yield_per=_ROWS_PER_FETCH)
        )
        agreement = percent_agreement(judged)
    likes = by_kind["like"]
    return {
        "total": sum(by_kind.values()),
        "by_kind": by_kind,
        "by_source": by_source,
        "likes": {"liked": int(liked), "total": likes},
        "like_rate": int(liked) / likes if likes else None,
        "agreement": agreement,
    }


def percent_agreement(rows: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """Per kind and overall: items judged by 2+ users, how many of them all agree, the share.

    `rows` have the feedback columns kind, prompt, response, chosen, rejected, liked,
    rating, rating_min, rating_max and user, oldest first.
    """
    # item key -> user -> that user's latest verdict; keys are digests to bound memory.
    verdicts: dict[str, dict[bytes, dict[str, object]]] = {kind: defaultdict(dict) for kind in KINDS}
    for row in rows:
        item, verdict = _item_and_verdict(row)
        verdicts[row.kind][item][row.user] = verdict
    result: dict[str, dict[str, Any]] = {}
    total_items = total_agree = 0
    for kind in KINDS:
        shared = [by_user for by_user in verdicts[kind].values() if len(by_user) >= 2]
        agree = sum(1 for by_user in shared if len(set(by_user.values())) == 1)
        result[kind] = _summary(len(shared), agree)
        total_items += len(shared)
        total_agree += agree
    result["all"] = _summary(total_items, total_agree)
    return result


def _item_and_verdict(row: Any) -> tuple[bytes, object]:
    if row.kind == "pair":
        first, second = sorted((row.chosen, row.rejected))
        return _digest(row.prompt, first, second), _digest(row.chosen)
    if row.kind == "like":
        return _digest(row.prompt, row.response), bool(row.liked)
    position = (row.rating - row.rating_min) / (row.rating_max - row.rating_min)
    return _digest(row.prompt, row.response), round(position, 9)


def _digest(*texts: str) -> bytes:
    hasher = hashlib.blake2b(digest_size=16)
    for text in texts:
        encoded = text.encode("utf-8")
        # Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        hasher.update(len(encoded).to_bytes(8, "little"))
        hasher.update(encoded)
    return hasher.digest()


def _summary(items: int, agree: int) -> dict[str, Any]:
    return {
        "items_judged_by_2plus_users": items,
        "items_all_agree": agree,
        "share_all_agree": agree / items if items else None,
    }
