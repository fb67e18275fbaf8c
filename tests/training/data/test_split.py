"""Splitting by prompt: no leakage, deterministic, independent of row order."""

from __future__ import annotations

import random

import pytest

from training.data.examples import Example, LikeExample, PairExample, RatingExample
from training.data.split import split_by_prompt


def examples_for(n_prompts: int) -> list[Example]:
    rows: list[Example] = []
    for i in range(n_prompts):
        prompt = f"question {i}"
        rows.append(PairExample(prompt, "good", "bad", origin=f"f:{3 * i + 1}"))
        rows.append(RatingExample(f"  question   {i} ", "good", 5, origin=f"f:{3 * i + 2}"))  # same prompt, reformatted
        rows.append(LikeExample(prompt, "bad", False, origin=f"f:{3 * i + 3}"))
    return rows


def prompts(rows: list[Example]) -> set[str]:
    return {" ".join(e.prompt.split()) for e in rows}


def test_no_prompt_on_both_sides_and_every_row_kept() -> None:
    rows = examples_for(300)
    train, val = split_by_prompt(rows, val_fraction=0.2, seed=3)
    assert not prompts(train) & prompts(val)
    assert len(train) + len(val) == len(rows)
    assert sorted(e.origin for e in train + val) == sorted(e.origin for e in rows)
    assert 0.12 < len(prompts(val)) / 300 < 0.28
    assert [e.origin for e in train] == [e.origin for e in rows if e in train]  # input order kept


def test_deterministic_and_seed_dependent() -> None:
    rows = examples_for(200)
    first = split_by_prompt(rows, seed=1)
    assert split_by_prompt(rows, seed=1) == first
    assert prompts(split_by_prompt(rows, seed=2)[1]) != prompts(first[1])


def test_invariant_to_row_order() -> None:
    rows = examples_for(200)
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    train, val = split_by_prompt(rows, seed=0)
    s_train, s_val = split_by_prompt(shuffled, seed=0)
    assert {e.origin for e in s_train} == {e.origin for e in train}
    assert {e.origin for e in s_val} == {e.origin for e in val}


def test_adding_prompts_moves_no_existing_prompt() -> None:
    small_val = prompts(split_by_prompt(examples_for(200), seed=0)[1])
    big_val = prompts(split_by_prompt(examples_for(400), seed=0)[1])
    assert small_val == {p for p in big_val if int(p.split()[1]) < 200}


def test_val_gets_one_prompt_when_the_hash_leaves_it_empty() -> None:
    rows = examples_for(3)
    train, val = split_by_prompt(rows, val_fraction=1e-12)
    assert len(prompts(val)) == 1 and len(prompts(train)) == 2
    assert split_by_prompt(rows, val_fraction=1e-12) == (train, val)
    train, val = split_by_prompt(rows, val_fraction=1 - 1e-12)
    assert len(prompts(train)) == 1 and len(prompts(val)) == 2


def test_a_single_prompt_stays_in_train() -> None:
    rows = examples_for(1)
    assert split_by_prompt(rows, val_fraction=0.1) == (rows, [])
    assert split_by_prompt(rows, val_fraction=0.999) == (rows, [])
    assert split_by_prompt([], val_fraction=0.1) == ([], [])


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, float("nan"), True, "0.1"])
def test_val_fraction_outside_zero_one_is_refused(fraction: object) -> None:
    with pytest.raises(ValueError, match=r"val_fraction must be .*between 0 and 1 \(exclusive\), got"):
        split_by_prompt(examples_for(3), val_fraction=fraction)  # type: ignore[arg-type]


def test_one_conversation_at_several_depths_stays_on_one_side() -> None:
    # HH-style data holds a conversation cut after each of its turns; the shorter prompt's
    # replies are text inside the longer one, so the two must not be split apart.
    rows: list[Example] = []
    for i in range(200):
        first = f"Human: question {i}"
        rows.append(PairExample(first, f"answer {i}", "no", origin=f"c{i}:1"))
        deeper = f"{first}\n\nAssistant: answer {i}\n\nHuman: and then?"
        rows.append(PairExample(deeper, "more", "no", origin=f"c{i}:2"))
    for seed in range(5):
        train, val = split_by_prompt(rows, val_fraction=0.2, seed=seed)
        assert val
        sides = {}
        for side, part in (("train", train), ("val", val)):
            for e in part:
                sides.setdefault(e.origin.split(":")[0], set()).add(side)
        assert all(len(s) == 1 for s in sides.values()), seed


def test_the_legacy_whole_prompt_grouping_is_kept_for_older_versions() -> None:
    from training.pipeline import split_for_eval

    rows = [PairExample(f"Human: q{i}\n\nAssistant: a\n\nHuman: {d}", "x", "y") for i in range(40) for d in "ab"]
    legacy = split_by_prompt(rows, seed=2, group_by="prompt")
    assert split_for_eval(rows, {"split": {"val_fraction": 0.1, "seed": 2}}) == legacy[1]
    current = split_by_prompt(rows, seed=2)
    assert split_for_eval(rows, {"split": {"val_fraction": 0.1, "seed": 2, "group_by": "conversation"}}) == current[1]
    with pytest.raises(ValueError, match="group_by must be one of conversation, prompt"):
        split_by_prompt(rows, group_by="turn")


@pytest.mark.hh
def test_on_the_hh_file_no_validation_reply_is_inside_a_training_prompt(hh_pairs) -> None:
    from training.data.loaders import load_dataset

    pairs = load_dataset([hh_pairs]).pairs
    for seed in range(3):
        train, val = split_by_prompt(pairs, val_fraction=0.1, seed=seed)
        training_text = "\n".join(e.prompt for e in train)
        leaked = [r for e in val for r in (e.chosen, e.rejected) if len(r) > 40 and r in training_text]
        assert leaked == [], (seed, leaked[:2])
