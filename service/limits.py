"""Size limits on what a request may carry, checked before any work (413s that name the setting)."""

from __future__ import annotations

from collections.abc import Iterable

from service.errors import PayloadTooLarge
from service.settings import Settings


def enforce_limits(
    n_items: int, texts: Iterable[tuple[str, str]], settings: Settings, unit: str = "items"
) -> None:
    """413 if the request scores too many items or holds an over-long text.

    `texts` yields (path in the body, text), so the message can point at the culprit.
    """
    if n_items > settings.max_items_per_request:
        raise PayloadTooLarge(
            f"this request needs {n_items} scored {unit}; the limit is "
            f"max_items_per_request={settings.max_items_per_request} (PLAUDIT_MAX_ITEMS_PER_REQUEST); "
            "split it into several requests"
        )
    check_text_lengths(texts, settings)


def check_text_lengths(texts: Iterable[tuple[str, str]], settings: Settings) -> None:
    """413 naming the first (path in the body, text) longer than max_chars_per_text.

    Feedback texts get the same limit: what is stored is what training will score.
    """
    for path, text in texts:
        if len(text) > settings.max_chars_per_text:
            raise PayloadTooLarge(
                f"{path} has {len(text)} characters; the limit is "
                f"max_chars_per_text={settings.max_chars_per_text} (PLAUDIT_MAX_CHARS_PER_TEXT)"
            )
