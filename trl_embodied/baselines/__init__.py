"""Baselines the paper compares against: PPO from scratch on symbolic observations (an MLP).

The SayCan-style zero-shot baseline needs no training: pass a base model's
:class:`~trl_embodied.ActionScorer` to :func:`~trl_embodied.evaluate_policy`.
"""

from trl_embodied.baselines.ppo_mlp import MLPActorCritic, MLPPPOConfig, train_mlp_ppo

__all__ = ["MLPActorCritic", "MLPPPOConfig", "train_mlp_ppo"]
