"""The PPO trainer over valid actions (in progress: PPO's arithmetic is here; the trainer follows)."""

from trl_embodied.trainer.ppo import (
    clipped_policy_loss,
    clipped_value_loss,
    compute_gae,
    explained_variance,
    normalize_advantages,
)

__all__ = [
    "clipped_policy_loss",
    "clipped_value_loss",
    "compute_gae",
    "explained_variance",
    "normalize_advantages",
]
