"""Objectives on scalar rewards; pure functions, no logging, no model code.

- pairs:   Bradley-Terry, -log sigmoid(r_chosen - r_rejected - margin)
- ratings: mean squared error between the reward and the rating mapped to [-1, 1]
- likes:   logistic loss, P(liked) = sigmoid(reward)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    r_chosen: torch.Tensor, r_rejected: torch.Tensor, margin: torch.Tensor | None = None
) -> torch.Tensor:
    diff = r_chosen - r_rejected
    if margin is not None:
        diff = diff - margin
    return -F.logsigmoid(diff).mean()


def rating_loss(reward: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(reward, target)


def like_loss(reward: torch.Tensor, liked: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(reward, liked.to(reward.dtype))
