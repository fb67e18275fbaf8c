"""The checks: what the clients were told, what the database holds and what the export says."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from loadtest.feedback_bench.load import Answer, FeedbackLoad
from loadtest.feedback_bench.plan import PlannedPost

SHOWN_PROBLEMS = 20

# The body columns a stored row is compared on (everything but ids and the time).
BODY_COLUMNS = (
    "kind", "prompt", "response", "liked", "rating", "rating_min", "rating_max", "chosen", "rejected",
    "user", "source", "metadata", "model_name", "model_version", "request_id",
)
# What GET /v1/feedback/export writes per kind, besides the ids, labels and time.
EXPORT_SHAPE_FIELDS = {
    "like": ("prompt", "response", "liked"),
    "rating": ("prompt", "response", "rating", "rating_min", "rating_max"),
    "pair": ("prompt", "chosen", "rejected"),
}


@dataclass(slots=True)
class Verification:
    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def expected_columns(
    post: PlannedPost, resolved: Mapping[str, Any] | None, scale: tuple[float, float], model: tuple[str, str]
) -> dict[str, Any]:
    """The body columns the store should hold for `post`."""
    body = post.body
    out: dict[str, Any] = {name: None for name in BODY_COLUMNS}
    if post.shape == "choice":
        assert resolved is not None
        out.update(kind="pair", **resolved)
    else:
        out["kind"] = post.shape
        for name in ("prompt", "response", "liked", "chosen", "rejected"):
            out[name] = body.get(name)
        if post.shape == "rating":
            out.update(rating=float(body["rating"]), rating_min=scale[0], rating_max=scale[1])
    out["user"] = body.get("user")
    out["source"] = body.get("source")
    out["metadata"] = body.get("metadata") or {}
    out["model_name"], out["model_version"] = model
    return out


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def verify(
    posts: Sequence[PlannedPost],
    load: FeedbackLoad,
    stored: Sequence[Mapping[str, Any]],
    exported: Sequence[Mapping[str, Any]],
    scale: tuple[float, float],
    model: tuple[str, str],
) -> Verification:
    v = Verification()
    problems = v.problems
    by_id = {post.feedback_id: post for post in posts}

    # What the clients were told.
    answers_by_id: dict[str, list[Answer]] = {}
    for answer in load.answers:
        answers_by_id.setdefault(answer.feedback_id, []).append(answer)
    acknowledged = {fid for fid, answers in answers_by_id.items() if any(a.ok for a in answers)}
    unresolved = {fid for fid, answers in answers_by_id.items() if any(not a.ok for a in answers)}
    finals = Counter(a.outcome for a in load.answers if not a.ok)
    for outcome, n in sorted(finals.items()):
        problems.append(f"{n} posts ended without a 2xx: {outcome}")
    created = Counter(a.feedback_id for a in load.answers if a.ok and a.status == 201)
    for fid, n in created.items():
        if n > 1:
            problems.append(f"{fid}: {n} answers said 201 Created; a feedback_id may be created once")
    for answer in load.answers:
        if answer.ok and answer.replayed != (answer.status == 200):
            problems.append(f"{answer.feedback_id}: status {answer.status} with replayed={answer.replayed}")

    # What the database holds.
    ids = Counter(row["feedback_id"] for row in stored)
    bodies = Counter(row["body_sha256"] for row in stored)
    duplicate_ids = [fid for fid, n in ids.items() if n > 1]
    duplicate_bodies = sum(n - 1 for n in bodies.values() if n > 1)
    for fid in duplicate_ids:
        problems.append(f"{fid} is stored {ids[fid]} times")
    if duplicate_bodies:
        problems.append(f"{duplicate_bodies} stored rows repeat another row's body (a duplicate insert)")
    strangers = [fid for fid in ids if fid not in by_id]
    if strangers:
        problems.append(f"{len(strangers)} stored rows were never sent, e.g. {strangers[0]}")
    missing = sorted(fid for fid in acknowledged if ids[fid] != 1)
    for fid in missing[:SHOWN_PROBLEMS]:
        problems.append(f"{fid} was acknowledged but is stored {ids[fid]} times")
    stored_unacknowledged = [fid for fid in ids if fid in by_id and fid not in acknowledged]
    for fid in stored_unacknowledged:
        if fid not in unresolved:
            problems.append(f"{fid} is stored, but no post of it was ever answered or abandoned")

    mismatched = 0
    for row in stored:
        post = by_id.get(row["feedback_id"])
        if post is None:
            continue
        if post.shape == "choice" and post.feedback_id not in load.resolved:
            mismatched += 1
            problems.append(f"{post.feedback_id}: a choice is stored but its /v1/compare never answered")
            continue
        expected = expected_columns(post, load.resolved.get(post.feedback_id), scale, model)
        wrong = [name for name in BODY_COLUMNS if row[name] != expected[name]]
        if wrong:
            mismatched += 1
            if mismatched <= SHOWN_PROBLEMS:
                shown = ", ".join(f"{n}={row[n]!r} (sent {expected[n]!r})" for n in wrong)
                problems.append(f"{post.feedback_id}: stored body differs from the one sent: {shown}")
        for answer in answers_by_id.get(row["feedback_id"], []):
            if answer.ok and (answer.created_at is None or _moment(answer.created_at) != row["created_at"]):
                problems.append(
                    f"{answer.feedback_id}: an answer says created_at {answer.created_at}, "
                    f"the row says {row['created_at'].isoformat()}"
                )
            if answer.ok and answer.kind != row["kind"]:
                problems.append(f"{answer.feedback_id}: an answer says kind {answer.kind}, the row is a {row['kind']}")

    # What the export says.
    export_mismatched = 0
    if len(exported) != len(stored):
        problems.append(f"the export has {len(exported)} lines, the database {len(stored)} rows")
    for line, row in zip(exported, stored, strict=False):
        expected_line = {
            "feedback_id": row["feedback_id"],
            "kind": row["kind"],
            **{name: row[name] for name in EXPORT_SHAPE_FIELDS[row["kind"]]},
            "source": row["source"],
            "annotator": row["user"],
            "model_name": row["model_name"],
            "model_version": row["model_version"],
        }
        wrong = [name for name, value in expected_line.items() if name not in line or line[name] != value]
        try:
            if _moment(str(line.get("created_at"))) != row["created_at"]:
                wrong.append("created_at")
        except ValueError:
            wrong.append("created_at")
        if wrong:
            export_mismatched += 1
            if export_mismatched <= SHOWN_PROBLEMS:
                problems.append(
                    f"export line for row {row['id']} ({row['feedback_id']}) differs in {', '.join(wrong)}"
                )
    if export_mismatched > SHOWN_PROBLEMS:
        problems.append(f"... {export_mismatched} export lines differ in all")

    v.counts = {
        "planned_posts": len(posts),
        "planned_copies": sum(job.copies for job in load.jobs),
        "concurrent_reposts": load.twins,
        "concurrent_reposts_overlapping": load.twins_overlapping,
        "later_reposts": sum(1 for job in load.jobs if job.retry),
        "answered_2xx": sum(1 for a in load.answers if a.ok),
        "created_201": sum(1 for a in load.answers if a.ok and a.status == 201),
        "replayed_200": sum(1 for a in load.answers if a.ok and a.status == 200),
        "not_acknowledged": sum(1 for a in load.answers if not a.ok),
        "acknowledged_ids": len(acknowledged),
        "acknowledged_only_by_replay": sum(1 for fid in acknowledged if created[fid] == 0),
        "attempts": sum(a.attempts for a in load.answers),
        "retried_attempts": sum(sum(a.failures.values()) for a in load.answers),
        "stored_rows": len(stored),
        "duplicate_ids": len(duplicate_ids),
        "duplicate_bodies": duplicate_bodies,
        "stored_unacknowledged": len(stored_unacknowledged),
        "body_mismatches": mismatched,
        "export_lines": len(exported),
        "export_mismatches": export_mismatched,
    }
    return v
