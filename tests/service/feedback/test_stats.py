"""Stats on literal data: counts, like rate, and percent agreement between users."""

from __future__ import annotations

from service.feedback.records import NewFeedback
from service.feedback.store import FeedbackStore


def like(prompt: str, user: str | None, liked: bool, source: str | None = "ui") -> NewFeedback:
    return NewFeedback(
        kind="like", prompt=prompt, response=f"answer to {prompt}", liked=liked, user=user, source=source
    )


def rating(prompt: str, user: str, value: float, low: float = 1, high: float = 5) -> NewFeedback:
    return NewFeedback(kind="rating", prompt=prompt, response="r", rating=value, rating_min=low, rating_max=high,
                       user=user, source="review")


def pair(prompt: str, user: str, chosen: str, rejected: str) -> NewFeedback:
    return NewFeedback(kind="pair", prompt=prompt, chosen=chosen, rejected=rejected, user=user, source="review")


DATA = [
    # likes: L1 agree; L2 disagree; L3 one user only; L4 agree after u2 changed their mind.
    like("L1", "u1", True), like("L1", "u2", True), like("L1", None, False, source=None),
    like("L2", "u1", True), like("L2", "u2", False),
    like("L3", "u1", False),
    like("L4", "u1", True), like("L4", "u2", False), like("L4", "u2", True),
    # ratings: R1 agree; R2 agree (both at the top of their scales); R3 disagree.
    rating("R1", "u1", 4), rating("R1", "u2", 4),
    rating("R2", "u1", 5), rating("R2", "u2", 10, low=0, high=10),
    rating("R3", "u1", 2), rating("R3", "u2", 3),
    # pairs: P1 the same two replies, opposite choices; P2 three users agree.
    pair("P1", "u1", "x", "y"), pair("P1", "u2", "y", "x"),
    pair("P2", "u1", "x", "z"), pair("P2", "u2", "x", "z"), pair("P2", "u3", "x", "z"),
]


def test_stats_on_literal_data(store: FeedbackStore) -> None:
    for item in DATA:
        store.add(item)
    stats = store.stats()
    assert stats["total"] == 20
    assert stats["by_kind"] == {"like": 9, "rating": 6, "pair": 5}
    assert stats["by_source"] == {"ui": 8, "(none)": 1, "review": 11}
    assert stats["likes"] == {"liked": 5, "total": 9}
    assert stats["like_rate"] == 5 / 9

    def summary(items: int, agree: int) -> dict[str, object]:
        return {"items_judged_by_2plus_users": items, "items_all_agree": agree, "share_all_agree": agree / items}

    assert stats["agreement"] == {
        "like": summary(3, 2),
        "rating": summary(3, 2),
        "pair": summary(2, 1),
        "all": summary(8, 5),
    }


def test_stats_of_an_empty_store(store: FeedbackStore) -> None:
    empty = {"items_judged_by_2plus_users": 0, "items_all_agree": 0, "share_all_agree": None}
    assert store.stats() == {
        "total": 0,
        "by_kind": {"like": 0, "rating": 0, "pair": 0},
        "by_source": {},
        "likes": {"liked": 0, "total": 0},
        "like_rate": None,
        "agreement": {"like": empty, "rating": empty, "pair": empty, "all": empty},
    }


def test_a_source_named_like_the_missing_one_adds_up(store: FeedbackStore) -> None:
    store.add(like("S1", None, True, source=None))
    store.add(like("S2", None, True, source="(none)"))  # what the stats call rows without a source
    store.add(like("S3", None, False, source="ui"))
    stats = store.stats()
    assert stats["by_source"] == {"(none)": 2, "ui": 1}
    assert sum(stats["by_source"].values()) == stats["total"] == 3
