"""The plan: what is posted, and in which order (the bodies, their feedback_ids and re-posts)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class PlannedPost:
    """One feedback_id and its body. For a choice, `body` holds the /v1/compare request under
    "compare" and the pick under "choice"; the POST body is known once the compare answered."""

    index: int
    feedback_id: str
    shape: str  # like | rating | pair | choice
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Job:
    """Send `post` `copies` times at once (2: a re-post concurrent with the original);
    `retry` marks a later re-post of an id already sent."""

    post: PlannedPost
    copies: int = 1
    retry: bool = False


_SHAPES = ("like", "like", "like", "rating", "rating", "pair", "pair", "choice")
_TOPICS = (
    "How do I reset my password?",
    "Summarize the plot of Hamlet in two sentences.",
    "Écris une phrase sur la pluie à Paris.",
    "What is 17 × 23?",
    "日本の首都はどこですか？",
    "Give me a recipe for pancakes.",
)
_REPLIES = (
    "Open Settings, choose Security, then Reset password.",
    "A prince avenges his father and nearly everyone dies.",
    "La pluie tombe doucement sur les toits de Paris. ☂",
    "17 × 23 = 391.",
    "東京です。",
    "Mix flour, eggs and milk; fry small rounds in butter. " * 8,
)
_SOURCES = ("web-thumbs", "app-stars", "ab-test", None)


def planned_posts(n: int, run_tag: str, rng: random.Random) -> list[PlannedPost]:
    """`n` distinct bodies cycling through the shapes; the index in every prompt keeps each
    body unique, so a body stored twice can only be a duplicate insert."""
    posts = []
    for i in range(n):
        shape = _SHAPES[i % len(_SHAPES)]
        prompt = f"[{run_tag} #{i}] {_TOPICS[i % len(_TOPICS)]}"
        reply, other = rng.sample(_REPLIES, 2)
        extras: dict[str, Any] = {}
        if i % 3:
            extras["user"] = f"annotator-{i % 7}"
        source = _SOURCES[i % len(_SOURCES)]
        if source is not None:
            extras["source"] = source
        if i % 5 == 0:
            extras["metadata"] = {"session": f"s-{i // 10}", "tags": ["bench", "ü"], "n": i}
        if shape == "like":
            body: dict[str, Any] = {"prompt": prompt, "response": reply, "liked": rng.random() < 0.6}
        elif shape == "rating":
            rating = rng.choice((1, 2, 3, 4, 5, 2.5, 4.5))
            body = {"prompt": prompt, "response": reply, "rating": rating}
        elif shape == "pair":
            body = {"prompt": prompt, "chosen": reply, "rejected": other}
        else:
            body = {
                "compare": {"prompt": prompt, "response_a": reply, "response_b": other},
                "choice": rng.choice(("a", "b")),
            }
        posts.append(PlannedPost(i, f"bench-{run_tag}-{i:07d}", shape, {**body, **extras}))
    return posts


def plan_jobs(
    posts: Sequence[PlannedPost], retry_fraction: float, concurrency: int, rng: random.Random
) -> list[Job]:
    """The posts in order, with round(retry_fraction * len(posts)) re-posts of distinct ids:
    half go out together with their original (one job, two copies), half as their own job
    1 to 4 x concurrency jobs later, when the original is in flight or just answered."""
    n_retries = min(len(posts), round(retry_fraction * len(posts)))
    retried = rng.sample(range(len(posts)), n_retries)
    concurrent = set(retried[: n_retries // 2])
    keyed: list[tuple[float, Job]] = []
    for post in posts:
        copies = 2 if post.index in concurrent else 1
        keyed.append((float(post.index), Job(post, copies=copies)))
    for index in retried[n_retries // 2 :]:
        later = index + rng.randint(1, 4 * concurrency) + 0.5  # after the original, always
        keyed.append((later, Job(posts[index], retry=True)))
    keyed.sort(key=lambda pair: pair[0])
    return [job for _, job in keyed]
