"""Shared test configuration: one torch thread, a seeded torch before every test."""

from __future__ import annotations

import pytest
import torch

# The suite runs on small shared machines: one thread is faster than oversubscribed cores.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded_torch() -> None:
    """Every test starts from the same random state, whatever ran before it."""
    torch.manual_seed(0)
