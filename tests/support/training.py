"""A standard PyTorch fine-tuning loop, for tests that a converted model trains."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def fine_tune(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
              loss_fn: Loss | None = None, steps: int = 8) -> list[float]:
    """Train ``model`` on one batch with Adam (lr 1e-2) in train mode and ``loss_fn``
    (``nn.CrossEntropyLoss()`` by default); returns each step's loss."""
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    torch.manual_seed(0)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
