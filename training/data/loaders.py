"""Read training data from JSONL and CSV files into validated examples.

A file may mix shapes; each row's shape is told by its keys:

- pairs     {prompt, chosen, rejected} with optional numeric `margin` (default 0);
- HH pairs  {chosen, rejected}: two full "Human: ... Assistant: ..." dialogues;
- ratings   {prompt, response, rating} on a declared scale;
- likes     {prompt, response, liked}.

Any row may carry an `annotator`; other keys (ids, timestamps, metadata written by the
feedback sink) are ignored. Loading is all-or-nothing: every row is checked, problems
are collected (up to MAX_ERRORS) and raised together as one DataValidationError.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from model_store.scoring import invalid_unicode_reason
from training.data.errors import MAX_ERRORS, DataError, DataValidationError
from training.data.examples import Example, LikeExample, PairExample, RatingExample

__all__ = ["HH_MARKER", "SUPPORTED_SUFFIXES", "Dataset", "load_dataset", "load_examples", "split_hh_dialogue"]

SUPPORTED_SUFFIXES = (".jsonl", ".ndjson", ".csv")
HH_MARKER = "\n\nAssistant:"
_SHAPES_HELP = (
    "pairs {prompt, chosen, rejected}, HH pairs {chosen, rejected}, "
    "ratings {prompt, response, rating}, likes {prompt, response, liked}"
)
_CSV_BOOL_HELP = "true/false, 1/0 or yes/no"
_CSV_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
# A plain decimal number: float() alone would also take "1_0", "nan" and "infinity".
_CSV_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# Fields a row may carry besides its shape's: what `plaudit feedback export` writes.
_READ_FIELDS = (
    "prompt", "chosen", "rejected", "margin", "response", "rating", "rating_min", "rating_max", "liked", "annotator"
)
_KNOWN_EXTRA_FIELDS = frozenset(
    {"id", "feedback_id", "kind", "source", "user", "metadata", "model_name", "model_version", "created_at"}
)

Row = dict[str, object]
RatingScale = tuple[float, float]


@dataclass(frozen=True)
class Dataset:
    """Examples from one or more files, with what is needed to reproduce and audit them.

    `sha256` is the hash of the files' bytes, concatenated in the order given (for one
    file it equals `sha256sum FILE`). `warnings` are oddities that did not stop loading.
    """

    examples: list[Example]
    files: list[str]
    sha256: str
    warnings: list[str] = field(default_factory=list)

    @property
    def pairs(self) -> list[PairExample]:
        return [e for e in self.examples if isinstance(e, PairExample)]

    @property
    def ratings(self) -> list[RatingExample]:
        return [e for e in self.examples if isinstance(e, RatingExample)]

    @property
    def likes(self) -> list[LikeExample]:
        return [e for e in self.examples if isinstance(e, LikeExample)]

    def counts(self) -> dict[str, int]:
        return {"pairs": len(self.pairs), "ratings": len(self.ratings), "likes": len(self.likes)}


def load_examples(path: str | Path, rating_scale: RatingScale = (1.0, 5.0)) -> list[Example]:
    """All examples of one file; raises DataValidationError listing every problem."""
    return load_dataset([path], rating_scale).examples


def load_dataset(paths: Sequence[str | Path], rating_scale: RatingScale = (1.0, 5.0)) -> Dataset:
    """All examples of `paths`, in order; raises DataValidationError listing every problem."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise ValueError("no data files given: pass at least one .jsonl, .ndjson or .csv file")
    scale = _check_scale(rating_scale)
    loader = _Loader(scale)
    digest = hashlib.sha256()
    for path in paths:
        if loader.truncated:
            break
        data = loader.read_file(str(path))
        if data is not None:
            digest.update(data)
    if loader.errors:
        raise DataValidationError(loader.errors, truncated=loader.truncated)
    return Dataset(
        examples=loader.examples,
        files=[str(p) for p in paths],
        sha256=digest.hexdigest(),
        warnings=loader.warnings,
    )


def _check_scale(rating_scale: RatingScale) -> RatingScale:
    low, high = (float(v) for v in rating_scale)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"rating_scale must be (min, max) with finite min < max, got {rating_scale!r}")
    return low, high


class _RowError(Exception):
    """The first problem found in a row; becomes a DataError with the row's line."""

    def __init__(self, field_name: str | None, message: str) -> None:
        super().__init__(message)
        self.field_name = field_name
        self.message = message


class _Loader:
    """Accumulates examples, warnings and errors over the files of one load."""

    def __init__(self, scale: RatingScale) -> None:
        self.scale = scale
        self.examples: list[Example] = []
        self.warnings: list[str] = []
        self.errors: list[DataError] = []
        self.truncated = False  # an error beyond MAX_ERRORS was found: stop reading
        self.foreign: dict[tuple[str, str], int] = {}  # (shape, field read by another shape) -> first line, per file

    def error(self, path: str, line: int | None, field_name: str | None, message: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(DataError(path, line, field_name, message))
        else:
            self.truncated = True

    def read_file(self, path: str) -> bytes | None:
        """Parse one file; returns its bytes (for the hash), or None if it cannot be read."""
        file = Path(path)
        if not path.strip():
            # Path("") is the current folder: it would be called a directory.
            self.error(repr(path), None, None, f"the path is empty; pass the path of a data file ({', '.join(SUPPORTED_SUFFIXES)})")
            return None
        if not file.exists():
            self.error(path, None, None, "file not found")
            return None
        if file.is_dir():
            self.error(path, None, None, "is a directory; pass the data files inside it")
            return None
        suffix = file.suffix.lower()
        if suffix not in SUPPORTED_SUFFIXES:
            shown = f"'{file.suffix}'" if file.suffix else "(no extension)"
            self.error(
                path, None, None, f"unsupported file type {shown}: expected one of {', '.join(SUPPORTED_SUFFIXES)}"
            )
            return None
        try:
            data = file.read_bytes()
        except OSError as exc:
            self.error(path, None, None, f"cannot be read: {exc.strerror or type(exc).__name__}")
            return None
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            # exc.start counts in exc.object, the bytes decoded: after a leading BOM, which
            # utf-8-sig strips first, so indexing `data` with it would name the wrong byte.
            line = exc.object[: exc.start].count(b"\n") + 1
            self.error(
                path, line, None, f"not valid UTF-8 text (byte 0x{exc.object[exc.start]:02x}); save the file as UTF-8"
            )
            return data
        rows = _csv_rows(text) if suffix == ".csv" else _jsonl_rows(text)
        n_rows = 0
        unknown: dict[str, int] = {}  # ignored field -> first line
        self.foreign = {}
        for line, row in rows:
            if self.truncated:
                break
            n_rows += 1
            if isinstance(row, _RowError):
                self.error(path, line, row.field_name, row.message)
                continue
            for key in row:
                if key not in _READ_FIELDS and key not in _KNOWN_EXTRA_FIELDS:
                    unknown.setdefault(key, line)
            try:
                self.examples.append(self._parse(row, path, line, from_csv=suffix == ".csv"))
            except _RowError as exc:
                self.error(path, line, exc.field_name, exc.message)
        if n_rows == 0:
            what = "has a header but no rows" if suffix == ".csv" and text.strip() else "is empty"
            self.error(path, None, None, f"file {what}: expected rows of pairs, ratings or likes")
        if unknown:
            # Extra fields are ignored, as by TRL and datasets; said once, since a typo
            # ("margn") would otherwise drop its value without a word.
            shown = ", ".join(f"'{k}' (first on line {n})" for k, n in sorted(unknown.items(), key=lambda kv: kv[1]))
            self.warnings.append(
                f"{path}: ignored field(s) {shown}; the fields read are {', '.join(_READ_FIELDS)}"
            )
        for (shape, key), line in sorted(self.foreign.items(), key=lambda kv: kv[1]):
            # A margin on a likes row, a response on a pair: read for other shapes, not for this one.
            self.warnings.append(
                f"{path}: field '{key}' is ignored on {shape} rows (first on line {line}); "
                f"{shape} rows read {', '.join(k for k in _READ_FIELDS if k in _SHAPE_FIELDS[shape])}"
            )
        return data

    def _parse(self, row: Row, path: str, line: int, *, from_csv: bool) -> Example:
        origin = f"{path}:{line}"
        fields = _Fields(row, from_csv)
        shape = _detect_shape(fields)
        for key in _READ_FIELDS:
            if key not in _SHAPE_FIELDS[shape] and fields.given(key):
                self.foreign.setdefault((shape, key), line)
        annotator = fields.optional_text("annotator")
        if shape == "ratings":
            prompt, response = fields.text("prompt", shape), fields.text("response", shape)
            rating = fields.number("rating", shape)
            low, high = self._row_scale(fields)
            if not low <= rating <= high:
                where = "this row's scale" if fields.given("rating_min") else "the declared scale"
                raise _RowError(
                    "rating",
                    f"rating {rating:g} is outside {where} {low:g}-{high:g}; "
                    "pass --rating-scale MIN-MAX if the scale differs",
                )
            return RatingExample(prompt, response, rating, low, high, annotator, origin)
        if shape == "likes":
            prompt, response = fields.text("prompt", shape), fields.text("response", shape)
            return LikeExample(prompt, response, fields.boolean("liked", shape), annotator, origin)
        if shape == "HH pairs":
            prompt, chosen, rejected = self._split_hh(fields, path, line)
        else:
            prompt = fields.text("prompt", shape)
            chosen, rejected = fields.text("chosen", shape), fields.text("rejected", shape)
        if " ".join(chosen.split()) == " ".join(rejected.split()):
            raise _RowError("rejected", "is identical to 'chosen': a pair needs two different responses")
        margin = 0.0
        if fields.given("margin"):
            margin = fields.number("margin", shape)
            if margin < 0:
                raise _RowError("margin", f"expected a number >= 0, got {margin:g}")
        return PairExample(prompt, chosen, rejected, margin, annotator, origin)

    def _row_scale(self, fields: _Fields) -> RatingScale:
        """A row's own rating_min/rating_max (what `plaudit feedback export` writes, so ratings
        given on different scales train alike), else the declared scale."""
        given = [fields.given("rating_min"), fields.given("rating_max")]
        if not any(given):
            return self.scale
        if not all(given):
            missing = "rating_max" if given[0] else "rating_min"
            raise _RowError(missing, "missing: a row that gives one end of its rating scale needs both")
        low, high = fields.number("rating_min", "ratings"), fields.number("rating_max", "ratings")
        if not low < high:
            raise _RowError("rating_max", f"expected rating_min < rating_max, got {low:g}-{high:g}")
        return low, high

    def _split_hh(self, fields: _Fields, path: str, line: int) -> tuple[str, str, str]:
        """Split two dialogues at their last assistant turn into (prompt, chosen, rejected).

        The prompt is the chosen dialogue's text before its last turn. A few real HH rows
        differ before that turn; they are kept (the labelled turn is still a valid
        comparison) and reported as a warning.
        """
        prompt, chosen = _split_dialogue(fields.text("chosen", "HH pairs"), "chosen")
        other_prompt, rejected = _split_dialogue(fields.text("rejected", "HH pairs"), "rejected")
        if prompt != other_prompt:
            self.warnings.append(
                f"{path}:{line}: the chosen and rejected dialogues differ before their last "
                "'\\n\\nAssistant:' turn; using the chosen dialogue's text as the prompt"
            )
        # An empty final turn is kept: in harmlessness data saying nothing can be the
        # preferred reply (2 rows of the HH file choose it).
        return prompt, chosen, rejected


def split_hh_dialogue(dialogue: str) -> tuple[str, str]:
    """(prompt, response) of an HH dialogue, cut at its last "\\n\\nAssistant:" turn.

    The prompt is the conversation before that turn; both parts are stripped. Raises
    ValueError saying what is wrong. `plaudit loadtest` splits with this too, so it sends
    the items that training and evaluation saw.
    """
    cut = dialogue.rfind(HH_MARKER)
    if cut < 0:
        raise ValueError("expected a dialogue with an '\\n\\nAssistant:' turn, found none")
    prompt = dialogue[:cut].strip()
    if not prompt:
        raise ValueError("expected dialogue text before the last '\\n\\nAssistant:' turn, found none")
    response = dialogue[cut + len(HH_MARKER) :]
    if "\n\nHuman:" in response:
        raise ValueError(
            "expected the dialogue to end with its '\\n\\nAssistant:' turn (the response judged), "
            "but a '\\n\\nHuman:' turn follows it"
        )
    return prompt, response.strip()


def _split_dialogue(dialogue: str, field_name: str) -> tuple[str, str]:
    try:
        return split_hh_dialogue(dialogue)
    except ValueError as exc:
        raise _RowError(field_name, str(exc)) from None


def _detect_shape(fields: _Fields) -> str:
    def shapes_with(has: Callable[[str], bool]) -> list[str]:
        return [name for name, keys in _DISCRIMINATORS if any(has(k) for k in keys)]

    # Null (or, in CSV, empty) values do not count: a writer that emits every column
    # for every row (prompt, chosen: null, rating: 4, ...) still yields one shape.
    shapes = shapes_with(fields.given)
    if not shapes:
        # A row whose one label is an empty CSV cell or a JSON null: its keys still tell the
        # shape, so the error can name the empty field.
        by_keys = shapes_with(lambda key: key in fields.row)
        shapes = by_keys if len(by_keys) == 1 else []
    keys = ", ".join(fields.keys()) or "none"
    if not shapes:
        raise _RowError(None, f"row matches no known shape (keys: {keys}); expected one of: {_SHAPES_HELP}")
    if len(shapes) > 1:
        raise _RowError(
            None,
            f"row mixes the fields of {' and '.join(shapes)} (keys: {keys}); put each judgement on its own row",
        )
    # A CSV with a prompt column holds explicit pairs even where a prompt cell is empty. So
    # does a JSON row with a null prompt (the error then names 'prompt', not a dialogue
    # it never held), unless its responses are HH dialogues: a writer that emits every
    # column for every row puts a null prompt on HH rows.
    has_prompt = "prompt" in fields.row if fields.from_csv else fields.given("prompt")
    if not has_prompt and "prompt" in fields.row:
        responses = [fields.row.get("chosen"), fields.row.get("rejected")]
        has_prompt = not any(isinstance(text, str) and HH_MARKER in text for text in responses)
    if shapes[0] == "pairs" and not has_prompt:
        return "HH pairs"
    return shapes[0]


_DISCRIMINATORS = (("pairs", ("chosen", "rejected")), ("ratings", ("rating",)), ("likes", ("liked",)))
_SHAPE_FIELDS = {  # what each shape reads of _READ_FIELDS
    "pairs": frozenset({"prompt", "chosen", "rejected", "margin", "annotator"}),
    "HH pairs": frozenset({"chosen", "rejected", "margin", "annotator"}),
    "ratings": frozenset({"prompt", "response", "rating", "rating_min", "rating_max", "annotator"}),
    "likes": frozenset({"prompt", "response", "liked", "annotator"}),
}
_REQUIRED = {
    "pairs": "prompt, chosen, rejected",
    "HH pairs": "chosen, rejected",
    "ratings": "prompt, response, rating",
    "likes": "prompt, response, liked",
}


class _Fields:
    """Typed access to one row's values, with errors that say expected vs found.

    CSV cells are strings, so numbers and booleans are parsed from text, and an empty
    cell leaves an optional field unset but is an error for a required one. JSON
    values must already have the right type; null counts as unset.
    """

    def __init__(self, row: Row, from_csv: bool) -> None:
        self.row = row
        self.from_csv = from_csv

    def keys(self) -> list[str]:
        return [k for k in self.row if self.given(k)]

    def given(self, name: str) -> bool:
        """The field has a value: not absent, not null, and (in CSV) not an empty cell."""
        value = self.row.get(name)
        return value is not None and not (self.from_csv and value == "")

    def _get(self, name: str, shape: str, expected: str) -> object:
        if self.from_csv and self.row.get(name) == "":
            raise _RowError(name, f"expected {expected}, got an empty cell")
        if name not in self.row:
            article = "an" if shape.startswith("HH") else "a"
            raise _RowError(name, f"missing: {article} {shape} row needs {_REQUIRED[shape]}")
        return self.row[name]

    def text(self, name: str, shape: str) -> str:
        value = self._get(name, shape, "a non-empty string")
        if not isinstance(value, str):
            raise _RowError(name, f"expected a non-empty string, got {_type_name(value)}")
        if not value.strip():
            raise _RowError(name, "expected a non-empty string, got an empty string")
        _check_unicode(name, value)
        return value

    def optional_text(self, name: str) -> str | None:
        if not self.given(name):
            return None
        value = self.row[name]
        if not isinstance(value, str) or not value.strip():
            found = _type_name(value) if not isinstance(value, str) else "an empty string"
            raise _RowError(name, f"expected a non-empty string, got {found}")
        _check_unicode(name, value)
        return value.strip()

    def number(self, name: str, shape: str) -> float:
        value = self._get(name, shape, "a number")
        if self.from_csv and isinstance(value, str):
            if not _CSV_NUMBER.fullmatch(value.strip()):
                raise _RowError(name, f"expected a number, got '{value}'")
            number = float(value.strip())
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # a JSON integer too large for a float
                raise _RowError(name, f"expected a finite number, got {value}") from None
        else:
            raise _RowError(name, f"expected a number, got {_type_name(value)}")
        if not math.isfinite(number):
            raise _RowError(name, f"expected a finite number, got {number}")
        return number

    def boolean(self, name: str, shape: str) -> bool:
        value = self._get(name, shape, _CSV_BOOL_HELP if self.from_csv else "true or false")
        if isinstance(value, bool):
            return value
        if self.from_csv and isinstance(value, str) and value.strip().lower() in _CSV_BOOLS:
            return _CSV_BOOLS[value.strip().lower()]
        if self.from_csv:
            raise _RowError(name, f"expected {_CSV_BOOL_HELP}, got '{value}'")
        raise _RowError(name, f"expected true or false, got {_type_name(value)}")


def _check_unicode(name: str, value: str) -> None:
    reason = invalid_unicode_reason(value)
    if reason is not None:
        raise _RowError(name, reason)


def _reject_duplicate_keys(pairs: list[tuple[str, object]]) -> Row:
    row: Row = {}
    for key, value in pairs:
        if key in row:
            raise _DuplicateKey(key)
        row[key] = value
    return row


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _type_name(value: object) -> str:
    names = {type(None): "null", bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "object"}
    return names.get(type(value), type(value).__name__)


def _jsonl_rows(text: str) -> Iterator[tuple[int, Row | _RowError]]:
    # Split on "\n" only: str.splitlines would also split inside JSON strings that
    # hold U+2028 and friends, which JSON allows unescaped.
    for line, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw, object_pairs_hook=_reject_duplicate_keys)
        except _DuplicateKey as exc:
            yield line, _RowError(exc.key, "appears twice in the row; keep one value")
            continue
        except json.JSONDecodeError as exc:
            yield line, _RowError(None, f"not valid JSON: {exc.msg} (column {exc.colno})")
            continue
        except (ValueError, RecursionError) as exc:  # e.g. an integer of over 4300 digits
            yield line, _RowError(None, f"not valid JSON: {exc}")
            continue
        if not isinstance(value, dict):
            yield line, _RowError(None, f"row is not a JSON object: got {_type_name(value)}")
            continue
        yield line, value


def _csv_rows(text: str) -> Iterator[tuple[int, Row | _RowError]]:
    # The default cap (131,072 characters a cell) would refuse long dialogues that JSONL takes.
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    # strict: a quote opened and never closed is an error, not a cell that swallows the rest.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    try:
        header = next((cells for cells in reader if any(cell.strip() for cell in cells)), None)
        if header is None:
            return
        columns = [name.strip() for name in header]
        repeated = sorted({name for name in columns if columns.count(name) > 1})
        if repeated:
            yield reader.line_num, _RowError(None, f"the header names column '{repeated[0]}' more than once")
            return
        start = reader.line_num + 1
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(columns):
                yield line, _RowError(
                    None,
                    f"row has {len(cells)} values but the header names {len(columns)} columns "
                    f"({', '.join(columns)}); quote any value that holds a comma",
                )
                continue
            yield line, dict(zip(columns, cells, strict=True))
    except csv.Error as exc:
        # Reported at the line where the broken row began (an unclosed quote reads to the end).
        yield start, _RowError(None, f"not valid CSV: {exc} (check the quotes of the row that starts here)")
