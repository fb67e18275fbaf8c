"""Model references as users type them: "NAME", "NAME@alias" or "NAME:version"."""

from __future__ import annotations

import re
from dataclasses import dataclass

from model_store.errors import StoreError

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]*")
MAX_NAME_LENGTH = 100
DEFAULT_ALIAS = "production"
MAX_VERSION_DIGITS = 9  # far past any real store, and well short of int()'s 4,300-digit limit


def validate_name(name: str, kind: str = "model name") -> str:
    """Return `name` if it is a valid model or alias name, else raise StoreError.

    Names become directory names and appear inside refs, so they are restricted to
    characters that are safe in paths and cannot be confused with the ":" and "@" separators.
    """
    if not isinstance(name, str) or not name:
        raise StoreError(f"{kind} must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise StoreError(f"{kind} {name!r} is longer than {MAX_NAME_LENGTH} characters")
    if not _NAME_RE.fullmatch(name):
        raise StoreError(
            f"invalid {kind} {name!r}: use lowercase letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A parsed reference; at most one of `alias` and `version` is set."""

    name: str
    alias: str | None = None
    version: int | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def parse_ref(ref: str) -> ModelRef:
    """Parse "NAME", "NAME@alias" or "NAME:version" (version a positive integer)."""
    if not isinstance(ref, str) or not ref.strip():
        raise StoreError("empty model reference: expected NAME, NAME@ALIAS or NAME:VERSION")
    ref = ref.strip()
    if "@" in ref and ":" in ref:
        raise StoreError(
            f"invalid model reference {ref!r}: use either NAME@ALIAS or NAME:VERSION, not both"
        )
    if ":" in ref:
        name, _, version_text = ref.partition(":")
        validate_name(name)
        if not version_text.isascii() or not version_text.isdigit():
            raise StoreError(
                f"invalid model reference {ref!r}: version must be an integer, e.g. {name}:3"
            )
        if len(version_text) > MAX_VERSION_DIGITS:
            raise StoreError(f"invalid model reference {ref[:40]!r}...: no version has {len(version_text)} digits")
        version = int(version_text)
        if version < 1:
            raise StoreError(f"invalid model reference {ref!r}: versions start at 1")
        return ModelRef(name=name, version=version)
    if "@" in ref:
        name, _, alias = ref.partition("@")
        validate_name(name)
        if not alias:
            raise StoreError(
                f"invalid model reference {ref!r}: alias is empty, e.g. {name}@{DEFAULT_ALIAS}"
            )
        validate_name(alias, kind="alias")
        return ModelRef(name=name, alias=alias)
    return ModelRef(name=validate_name(ref))
