import math

import pytest
import torch

from training.losses import bradley_terry_loss, like_loss, rating_loss


def _nls(x: float) -> float:
    """-log sigmoid(x), by hand."""
    return math.log(1.0 + math.exp(-x))


def test_bradley_terry_matches_hand_computed_value() -> None:
    chosen = torch.tensor([1.0, 0.0, 3.0])
    rejected = torch.tensor([0.0, 2.0, 3.0])
    # By hand: (-log σ(1) - log σ(-2) - log σ(0)) / 3 = (0.31326 + 2.12693 + 0.69315) / 3
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(1.04445, abs=1e-5)


def test_bradley_terry_margin_is_subtracted() -> None:
    chosen, rejected = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0])
    margin = torch.tensor([0.5, 3.0])
    expected = (_nls(0.5) + _nls(-1.0)) / 2
    assert bradley_terry_loss(chosen, rejected, margin).item() == pytest.approx(expected, abs=1e-6)


def test_bradley_terry_label_smoothing_trusts_the_label_with_probability_one_minus_eps() -> None:
    chosen, rejected = torch.tensor([2.0, -1.0]), torch.tensor([0.0, 0.0])
    expected = (0.9 * _nls(2.0) + 0.1 * _nls(-2.0) + 0.9 * _nls(-1.0) + 0.1 * _nls(1.0)) / 2
    got = bradley_terry_loss(chosen, rejected, label_smoothing=0.1).item()
    assert got == pytest.approx(expected, abs=1e-6)
    assert got == pytest.approx(0.77009, abs=1e-5)  # (0.9*0.12693 + 0.1*2.12693 + 0.9*1.31326 + 0.1*0.31326) / 2


def test_rating_loss_is_mean_squared_error() -> None:
    assert rating_loss(torch.tensor([0.5, -1.0]), torch.tensor([1.0, 0.0])).item() == pytest.approx((0.25 + 1.0) / 2)


def test_like_loss_is_logistic_loss() -> None:
    reward, liked = torch.tensor([2.0, -1.0]), torch.tensor([1.0, 1.0])
    expected = (_nls(2.0) + _nls(-1.0)) / 2
    assert like_loss(reward, liked).item() == pytest.approx(expected, abs=1e-6)
    # a dislike is the same loss on the negated reward
    assert like_loss(torch.tensor([2.0]), torch.tensor([0.0])).item() == pytest.approx(_nls(-2.0), abs=1e-6)
