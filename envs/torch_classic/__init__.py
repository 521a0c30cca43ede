"""The classic-control tasks stepped as batched torch tensors on the training device (``vectorization=torch``)."""

from envs.torch_classic.tasks import TASK_KWARGS, TASKS, ClassicTask
from envs.torch_classic.vec_env import TorchClassicVecEnv

__all__ = ["TASKS", "TASK_KWARGS", "ClassicTask", "TorchClassicVecEnv"]
