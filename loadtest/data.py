"""What the load generator sends: (prompt, response) items from a JSONL file or built in.

Three row shapes are accepted, one per line:
  pairs      {"prompt", "chosen", "rejected"}  -> two items, one per response
  HH         {"chosen", "rejected"} dialogues  -> split each at its LAST "\\n\\nAssistant:",
                                                  as training splits them
  likes / ratings {"prompt", "response", ...}   -> one item
Items are handed out round robin by request index, so a run is reproducible whatever
the order in which concurrent workers pick requests up.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from model_store.scoring import TextPair
from training.data.loaders import split_hh_dialogue  # torch-free: the one HH split


class DataError(ValueError):
    """A data file the load generator cannot use; the message names file and line."""


def _text_field(row: dict[str, Any], key: str, where: str) -> str:
    value = row[key]
    if not isinstance(value, str):
        raise DataError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
    return value


# (fields that tell the shape, fields it needs, what to give). A row whose fields tell one
# shape only is that shape with fields missing: the error names them, as `plaudit train`
# does, instead of calling the whole row unrecognised.
_PARTIAL_SHAPES = (
    (
        ("chosen", "rejected"),
        ("chosen", "rejected"),
        "a pairs row needs prompt, chosen, rejected (HH dialogues: chosen, rejected)",
    ),
    (("response", "liked", "rating"), ("prompt", "response"), "a likes or ratings row needs prompt, response"),
)


def _missing_fields(row: dict[str, Any]) -> tuple[list[str], str] | None:
    """(missing fields, what the shape needs) if the row's fields tell exactly one shape."""
    told = [(needs, help_) for telling, needs, help_ in _PARTIAL_SHAPES if any(key in row for key in telling)]
    if len(told) != 1:
        return None
    needs, help_ = told[0]
    return [key for key in needs if key not in row], help_


def items_from_row(row: Any, where: str) -> list[TextPair]:
    """The items one JSONL row contributes; `where` ("file:line") goes into errors."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if "chosen" in row and "rejected" in row:
        chosen = _text_field(row, "chosen", where)
        rejected = _text_field(row, "rejected", where)
        if "prompt" in row:
            prompt = _text_field(row, "prompt", where)
            return [TextPair(prompt, chosen), TextPair(prompt, rejected)]
        items = []
        for key, dialogue in (("chosen", chosen), ("rejected", rejected)):
            try:
                prompt, response = split_hh_dialogue(dialogue)
            except ValueError as exc:
                raise DataError(f"{where}: field {key!r}: {exc}") from None
            items.append(TextPair(prompt, response))
        return items
    if "prompt" in row and "response" in row:
        return [TextPair(_text_field(row, "prompt", where), _text_field(row, "response", where))]
    missing = _missing_fields(row)
    if missing is not None:
        names, shape = missing
        fields = ", ".join(repr(name) for name in names)
        said = f"fields {fields} are" if len(names) > 1 else f"field {fields} is"
        raise DataError(f"{where}: {said} missing; {shape}")
    raise DataError(
        f"{where}: unrecognised row with fields {sorted(row)}; expected "
        "{prompt, chosen, rejected}, {chosen, rejected} (HH dialogues) or {prompt, response}"
    )


def load_items(path: str | Path, limit: int | None = None) -> list[TextPair]:
    """Read items from a JSONL file, stopping once `limit` items are collected."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    items: list[TextPair] = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: invalid JSON: {exc.msg}") from None
            items.extend(items_from_row(row, where))
            if limit is not None and len(items) >= limit:
                return items[:limit]
    if not items:
        raise DataError(f"{path}: no items (the file has no non-empty lines)")
    return items


_SYNTHETIC_PROMPTS = (
    "What is the capital of France?",
    "Can you help me write a polite email declining a meeting invitation?",
    "Explain how a hash table works and when it is a poor choice.",
    "My sourdough starter smells like nail polish remover. Is it ruined, and what should "
    "I change about how I feed it?",
    "Summarise the causes of the First World War for a high-school history class, in a "
    "few paragraphs, mentioning the alliance system, militarism and nationalism.",
)

_SYNTHETIC_RESPONSES = (
    "Paris.",
    "Sure, here is a short draft you can adapt.",
    "I would rather not answer that.",
    "A hash table maps keys to buckets with a hash function, so lookups take constant time "
    "on average; it is a poor choice when you need ordered iteration or range queries.",
    "That smell means the starter is hungry: it has run out of food and is producing "
    "acetone-like compounds. It is not ruined. Feed it more often, or feed it a larger "
    "amount of flour and water relative to the starter you keep, and keep it somewhere "
    "slightly cooler so the yeast does not exhaust the flour so quickly.",
    "Historians usually point to several long-running causes. Europe was split into two "
    "armed alliance blocs, so a local conflict could quickly involve every great power. "
    "An arms race, especially the naval rivalry between Britain and Germany, made "
    "military planning rigid. Nationalism fed tensions in the Balkans, and the "
    "assassination of Archduke Franz Ferdinand in Sarajevo in 1914 set the alliances in "
    "motion. Imperial rivalries over colonies added to the mistrust between the powers.",
)


def synthetic_items(count: int = 60) -> list[TextPair]:
    """Built-in items of varied lengths (short to a few hundred tokens), deterministic."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    n_prompts = len(_SYNTHETIC_PROMPTS)
    n_responses = len(_SYNTHETIC_RESPONSES)
    items = []
    for i in range(count):
        # Every prompt with every response in turn, so consecutive items differ in length.
        prompt = _SYNTHETIC_PROMPTS[i % n_prompts]
        response = _SYNTHETIC_RESPONSES[(i // n_prompts) % n_responses]
        items.append(TextPair(prompt, response))
    return items


class ItemCycle:
    """Hands out items round robin: request `i` of `k` items gets items i*k .. i*k+k-1."""

    def __init__(self, items: Sequence[TextPair]) -> None:
        if not items:
            raise ValueError("ItemCycle needs at least one item")
        self._items = list(items)

    def __len__(self) -> int:
        return len(self._items)

    def batch(self, request_index: int, size: int) -> list[TextPair]:
        if size < 1:
            raise ValueError(f"batch size must be at least 1, got {size}")
        n = len(self._items)
        start = request_index * size
        return [self._items[(start + j) % n] for j in range(size)]
