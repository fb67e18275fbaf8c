"""Objectives on scalar rewards; pure functions, no logging, no model code.

- pairs:   Bradley-Terry, -log sigmoid(r_chosen - r_rejected - margin); with label smoothing
           eps, (1 - eps) of that plus eps * -log sigmoid(-(r_chosen - r_rejected - margin)),
           i.e. the label is trusted with probability 1 - eps (human preference labels are
           noisy: annotators disagree on a sizeable share of HH pairs)
- ratings: mean squared error between the reward and the rating mapped to [-1, 1]
- likes:   logistic loss, P(liked) = sigmoid(reward)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    r_chosen: torch.Tensor,
    r_rejected: torch.Tensor,
    margin: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    diff = r_chosen - r_rejected
    if margin is not None:
        diff = diff - margin
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    if label_smoothing:
        eps = label_smoothing
        return (-(1.0 - eps) * F.logsigmoid(diff) - eps * F.logsigmoid(-diff)).mean()
    return -F.logsigmoid(diff).mean()


def rating_loss(reward: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(reward, target)


def like_loss(reward: torch.Tensor, liked: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(reward, liked.to(reward.dtype))
