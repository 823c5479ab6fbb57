"""The PPO trainer over valid actions: config, trainer and PPO's arithmetic."""

from trl_embodied.trainer.embodied_ppo_config import EmbodiedPPOConfig
from trl_embodied.trainer.embodied_ppo_trainer import EmbodiedPPOTrainer
from trl_embodied.trainer.ppo import (
    clipped_policy_loss,
    clipped_value_loss,
    compute_gae,
    explained_variance,
    normalize_advantages,
)

__all__ = [
    "EmbodiedPPOConfig",
    "EmbodiedPPOTrainer",
    "clipped_policy_loss",
    "clipped_value_loss",
    "compute_gae",
    "explained_variance",
    "normalize_advantages",
]
