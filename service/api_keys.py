"""API keys and their scopes, as configured: parsed and checked without ever echoing a key.

Two sources, merged: PLAUDIT_API_KEYS (JSON {"KEY": ["score", "feedback"]}) and a key
file (PLAUDIT_API_KEYS_FILE), one `KEY scope,scope` per line, `#` comments and blank lines
ignored. Messages name a key by its position (the line, or "the 2nd key"), never by value,
because they end up in terminals and logs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

ScopeName = Literal["score", "feedback", "admin"]
SCOPES: tuple[ScopeName, ...] = ("score", "feedback", "admin")
MIN_KEY_CHARS = 16
_SCOPE_HELP = f"scopes are {', '.join(SCOPES)}"


class ApiKeyError(ValueError):
    """A key or scope list that cannot be used; the message names where it is, not what it is."""


def parse_scopes(value: object, where: str) -> frozenset[ScopeName]:
    """Scopes from a list ["score", "admin"] or a string "score,admin"; at least one, all known."""
    if isinstance(value, str):
        names: list[object] = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, (list, tuple, set, frozenset)):
        names = [part.strip() if isinstance(part, str) else part for part in value]
    else:
        raise ApiKeyError(f'{where}: scopes must be a list such as ["score", "feedback"]; {_SCOPE_HELP}')
    if not names:
        raise ApiKeyError(f"{where}: no scopes given; {_SCOPE_HELP}")
    unknown = [repr(name) for name in names if name not in SCOPES]
    if unknown:
        raise ApiKeyError(f"{where}: unknown scope {', '.join(unknown)}; {_SCOPE_HELP}")
    return frozenset(names)  # type: ignore[arg-type]  # every name was checked against SCOPES


def check_key(key: object, where: str) -> str:
    if not isinstance(key, str) or not key:
        raise ApiKeyError(f"{where}: the key is empty")
    if not key.isascii() or not key.isprintable() or any(ch.isspace() for ch in key):
        raise ApiKeyError(
            f"{where}: the key must be printable ASCII without spaces (it travels in an HTTP header)"
        )
    if len(key) < MIN_KEY_CHARS:
        raise ApiKeyError(
            f"{where}: the key has {len(key)} characters, fewer than {MIN_KEY_CHARS}; use a long random key "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return key


def parse_key_mapping(value: Mapping[object, object], source: str) -> dict[str, frozenset[ScopeName]]:
    """{key: scopes} from the JSON form; `source` names it in messages (e.g. PLAUDIT_API_KEYS)."""
    parsed: dict[str, frozenset[ScopeName]] = {}
    for position, (key, scopes) in enumerate(value.items(), start=1):
        where = f"{source}, key #{position}"
        parsed[check_key(key, where)] = parse_scopes(scopes, where)
    return parsed


def parse_key_lines(lines: Iterable[str], source: str) -> dict[str, frozenset[ScopeName]]:
    """{key: scopes} from `KEY scope,scope` lines; `source` is the file name for messages."""
    parsed: dict[str, frozenset[ScopeName]] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{number}"
        parts = line.split(None, 1)
        if len(parts) != 2:
            raise ApiKeyError(
                f"{where}: expected `KEY scope,scope` (the key, a space, its scopes); {_SCOPE_HELP}"
            )
        key = check_key(parts[0], where)
        if key in parsed:
            raise ApiKeyError(f"{where}: this key already appears on an earlier line; give each key once")
        parsed[key] = parse_scopes(parts[1].replace(" ", ""), where)
    return parsed


def read_key_file(path: Path) -> dict[str, frozenset[ScopeName]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ApiKeyError(f"api_keys_file {path} does not exist; fix PLAUDIT_API_KEYS_FILE") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ApiKeyError(f"api_keys_file {path} cannot be read: {reason}") from None
    return parse_key_lines(text.splitlines(), str(path))


def merge_keys(
    from_settings: Mapping[str, frozenset[ScopeName]],
    from_file: Mapping[str, frozenset[ScopeName]],
    file: Path,
) -> dict[str, frozenset[ScopeName]]:
    """Both sources together; a key in both is refused (which scopes would win is unclear)."""
    if any(key in from_settings for key in from_file):
        raise ApiKeyError(
            f"a key in api_keys_file {file} is also in PLAUDIT_API_KEYS; configure each key in one place"
        )
    return {**from_settings, **from_file}
