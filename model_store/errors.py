"""Errors raised by the model store.

Every message names the model, version, alias or file involved, so that the CLI can
print it as one line and the user knows what to fix.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class: anything the model store refuses or cannot do."""


class ModelNotFoundError(StoreError, LookupError):
    """A model name, alias or version that does not exist (the message lists what does)."""


class ChecksumError(StoreError):
    """A stored version's files no longer match the digests recorded at registration."""

    def __init__(self, ref: str, problems: list[str]) -> None:
        self.ref = ref
        self.problems = list(problems)
        super().__init__(f"{ref} failed verification: " + "; ".join(self.problems))


class DamagedVersionError(StoreError):
    """A version whose metadata.json is missing or unreadable: delete it, or restore the file."""


class AliasError(StoreError):
    """An alias cannot be set, rolled back or left dangling as asked."""


class UnreadableAliasesError(StoreError):
    """A model's aliases.json cannot be read: nothing guesses its aliases, and nothing
    overwrites it, until it is restored or removed (the message says how)."""
