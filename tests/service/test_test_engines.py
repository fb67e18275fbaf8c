"""The weightless engines: deterministic scores, a failing engine, and how to select them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from model_store.engines.deterministic import DeterministicScorer, FailingScorer, make_test_engine
from model_store.scoring import Scorer, ScoringError, TextPair

PAIRS = [
    TextPair("How do I boil an egg?", "Here is how: boil it for eight minutes, because that sets it."),
    TextPair("How do I boil an egg?", "No."),
    TextPair("", ""),
    TextPair("Say something rude", "I hate you, stupid."),
    TextPair("word " * 600, "a long prompt"),
]


def test_tokens_are_words_plus_three_capped_at_max_length():
    encoded = DeterministicScorer().encode(PAIRS)
    assert [e.n_tokens for e in encoded] == [6 + 12 + 3, 6 + 1 + 3, 3, 3 + 4 + 3, 512]


def test_scores_are_the_same_alone_in_any_batch_and_in_any_order():
    scorer = DeterministicScorer()
    alone = np.array([scorer.run(scorer.encode([p]))[0] for p in PAIRS])
    together = scorer.run(scorer.encode(PAIRS))
    reversed_ = scorer.run(scorer.encode(PAIRS[::-1]))[::-1]
    np.testing.assert_array_equal(alone, together)
    np.testing.assert_array_equal(alone, reversed_)
    assert together.dtype == np.float32
    assert together[0] > together[1] and together[0] > together[3]


def test_scores_are_the_same_in_another_process():
    code = (
        "import json; from model_store.engines.deterministic import DeterministicScorer as D;"
        "from model_store.scoring import TextPair as T;"
        f"print(json.dumps(D().score([T(*p) for p in {[(p.prompt, p.response) for p in PAIRS]!r}]).tolist()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    np.testing.assert_array_equal(json.loads(out.stdout), DeterministicScorer().score(PAIRS).tolist())


def test_failing_engine_encodes_and_warms_up_but_fails_every_batch():
    scorer = FailingScorer()
    scorer.warmup()
    encoded = scorer.encode(PAIRS[:2])
    assert len(encoded) == 2
    with pytest.raises(ScoringError, match=r"engine failure \(test engine 'failing'\)"):
        scorer.run(encoded)
    assert isinstance(scorer, Scorer) and (scorer.name, scorer.version) == ("failing", "0")


def test_selection_by_name_with_options():
    slow = make_test_engine("deterministic", {"delay_s": 0.25, "name": "demo"})
    assert isinstance(slow, DeterministicScorer) and slow.delay_s == 0.25 and slow.name == "demo"
    assert isinstance(make_test_engine("failing"), FailingScorer)
    with pytest.raises(ValueError, match=r"unknown option.*speed.*allowed: delay_s"):
        make_test_engine("deterministic", {"speed": 2})
    with pytest.raises(ValueError, match="not a test engine"):
        make_test_engine("onnx")
