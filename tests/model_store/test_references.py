from __future__ import annotations

import pytest

from model_store.errors import StoreError
from model_store.references import ModelRef, parse_ref, validate_name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my-model", ModelRef("my-model")),
        ("my-model@production", ModelRef("my-model", alias="production")),
        ("my-model:3", ModelRef("my-model", version=3)),
        ("rm.v2_base:12", ModelRef("rm.v2_base", version=12)),
        ("  spaced@staging ", ModelRef("spaced", alias="staging")),
    ],
)
def test_parse_ref_accepts_the_three_forms(text: str, expected: ModelRef) -> None:
    assert parse_ref(text) == expected


@pytest.mark.parametrize("text", ["m", "m@production", "m:3"])
def test_str_of_a_ref_round_trips(text: str) -> None:
    assert str(parse_ref(text)) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("my-model:abc", "version must be an integer, e.g. my-model:3"),
        ("my-model:", "version must be an integer"),
        ("my-model:-1", "version must be an integer"),
        ("my-model:0", "versions start at 1"),
        ("my-model@", "alias is empty"),
        ("my-model@prod:3", "not both"),
        ("", "empty model reference"),
        ("My-Model", "invalid model name 'My-Model'"),
        ("-model", "invalid model name"),
        ("m@Prod", "invalid alias 'Prod'"),
        ("a/b:1", "invalid model name 'a/b'"),
    ],
)
def test_parse_ref_rejects_malformed_refs_with_a_precise_message(text: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        parse_ref(text)


def test_validate_name_limits_length() -> None:
    assert validate_name("a" * 100) == "a" * 100
    with pytest.raises(StoreError, match="longer than 100"):
        validate_name("a" * 101)
