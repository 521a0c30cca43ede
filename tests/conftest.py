"""Shared helpers: compose a TrainConfig exactly as the CLI does, from conf/."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from ppo_core.config import TrainConfig, register_configs

register_configs()


def make_config(*overrides: str) -> TrainConfig:
    with initialize_config_module(config_module="conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=["progress=false", *overrides])
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


@pytest.fixture
def config_factory():
    return make_config
