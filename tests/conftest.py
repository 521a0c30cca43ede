"""Shared helpers: compose a TrainConfig exactly as the CLI does, from conf/."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from ppo_core.config import TrainConfig, register_configs

register_configs()


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest, and reproducibly, on one intra-op thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_config(*overrides: str) -> TrainConfig:
    with initialize_config_module(config_module="conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=["progress=false", *overrides])
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


@pytest.fixture
def config_factory():
    return make_config
