"""Choosing the next batch: the oldest item always goes, the rest by nearest length."""

from __future__ import annotations

from dataclasses import dataclass

from service.batch_packing import is_full, padded_tokens, select_batch


@dataclass(eq=False)
class Waiting:
    n_tokens: int


def lengths(items: list[Waiting]) -> list[int]:
    return sorted(it.n_tokens for it in items)


def test_oldest_item_is_always_in_the_batch_and_neighbours_fill_it():
    waiting = [Waiting(50), Waiting(10), Waiting(48), Waiting(200), Waiting(52), Waiting(11)]
    batch = select_batch(waiting, max_items=3, max_tokens=10_000)
    assert waiting[0] in batch
    assert lengths(batch) == [48, 50, 52]


def test_token_budget_counts_padding():
    waiting = [Waiting(100), Waiting(100), Waiting(30), Waiting(400)]
    batch = select_batch(waiting, max_items=10, max_tokens=300)
    # 3 x 100 = 300 fits; the 400-token item would make it 4 x 400.
    assert lengths(batch) == [30, 100, 100]
    assert padded_tokens(batch) == 300


def test_shorter_items_still_fill_when_the_nearer_longer_one_does_not_fit():
    waiting = [Waiting(60), Waiting(100), Waiting(10)]
    # 100 is nearer to 60 than 10 is, but 2 x 100 = 200 > 150; 2 x 60 = 120 fits.
    batch = select_batch(waiting, max_items=10, max_tokens=150)
    assert lengths(batch) == [10, 60]


def test_a_lone_item_over_the_budget_still_runs():
    waiting = [Waiting(900), Waiting(5)]
    assert select_batch(waiting, max_items=8, max_tokens=512) == [waiting[0]]


def test_item_cap_and_empty_input():
    waiting = [Waiting(5) for _ in range(10)]
    assert len(select_batch(waiting, max_items=4, max_tokens=10_000)) == 4
    assert select_batch([], max_items=4, max_tokens=100) == []


def test_is_full():
    assert is_full([Waiting(1)] * 4, max_items=4, max_tokens=1000)
    assert is_full([Waiting(300), Waiting(10)], max_items=4, max_tokens=600)
    assert not is_full([Waiting(10)] * 3, max_items=4, max_tokens=1000)


def test_padding_waste_cap_keeps_only_items_that_pad_little():
    waiting = [Waiting(100), Waiting(104), Waiting(120), Waiting(60)]
    # 100 + 104 pad to 208 for 204 real tokens (2%); adding 120 pads 360 for 324 (11%),
    # adding 60 instead pads 312 for 264 (18%): both over 10%.
    assert lengths(select_batch(waiting, max_items=8, max_tokens=10_000, max_padding_waste=0.1)) == [100, 104]
    # At 20% the 120 fits (11%), and then the 60 would pad 480 for 384 (25%).
    assert lengths(select_batch(waiting, max_items=8, max_tokens=10_000, max_padding_waste=0.2)) == [100, 104, 120]
    assert len(select_batch(waiting, max_items=8, max_tokens=10_000)) == 4  # no cap


def test_zero_waste_batches_only_equal_lengths_and_a_lone_item_always_runs():
    waiting = [Waiting(50), Waiting(51), Waiting(50), Waiting(49)]
    assert lengths(select_batch(waiting, max_items=8, max_tokens=10_000, max_padding_waste=0.0)) == [50, 50]
    lone = [Waiting(7), Waiting(8)]
    assert select_batch(lone, max_items=8, max_tokens=1, max_padding_waste=0.0) == [lone[0]]
