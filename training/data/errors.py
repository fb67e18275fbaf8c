"""What goes wrong in a training-data file, said precisely enough to fix it.

Every problem is one `DataError` pointing at a file, and where it can at a line and a
field. Loading collects up to `MAX_ERRORS` of them before giving up, so that one run
shows a user most of what to fix instead of one problem per run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MAX_ERRORS = 20
"""Loading stops after this many errors; the rest of the data is not looked at."""


@dataclass(frozen=True, slots=True)
class DataError:
    """One problem in one file: `{path}:{line}: field '{field}': {message}`.

    `line` is 1-based (the physical line; for CSV the line a record starts on) and is
    None for problems with the file as a whole; `field` is None for problems with a
    row as a whole (not JSON, not an object, no known shape).
    """

    path: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        if self.field is None:
            return f"{where}: {self.message}"
        return f"{where}: field '{self.field}': {self.message}"


class DataValidationError(ValueError):
    """The data did not load; `errors` lists every problem found (at most MAX_ERRORS)."""

    def __init__(self, errors: Sequence[DataError], *, truncated: bool = False) -> None:
        self.errors: list[DataError] = list(errors)
        self.truncated = truncated
        super().__init__(self._describe())

    def _describe(self) -> str:
        n = len(self.errors)
        noun = "error" if n == 1 else "errors"
        if self.truncated:
            head = f"the data is invalid: stopped after the first {n} {noun}; fix these and run again"
        else:
            head = f"the data is invalid: {n} {noun}"
        return "\n".join([head, *(f"  {error}" for error in self.errors)])
