"""Shared helpers: compose a TrainConfig exactly as the CLI does, from conf/ (``ppo_core.api``)."""

from __future__ import annotations

import pytest
import torch
from ppo_core import api
from ppo_core.config import TrainConfig


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest, and reproducibly, on one intra-op thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_config(*overrides: str) -> TrainConfig:
    """The public API's composition, without a progress bar."""
    return api.make_config("progress=false", *overrides)


@pytest.fixture
def config_factory():
    return make_config
