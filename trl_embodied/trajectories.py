"""Trajectories as ``datasets.Dataset``: one row per decision step, the same schema whether the steps come
from :func:`collect_trajectories` (the planner, a zero-shot model, a trained adapter) or from the
trainer's own rollouts (``EmbodiedPPOConfig(save_rollouts=True)``).

Columns (:data:`TRAJECTORY_FEATURES`):

- ``env`` (str): the environment's gymnasium id (or class name); ``episode`` (int): episode id, unique
  within the dataset; ``seed`` (int or None): the seed of the episode's ``reset``; ``step`` (int): the
  decision step within the episode, from 0.
- ``prompt`` (str), ``valid_actions`` (list[str]): what the policy saw; ``action`` (int) and
  ``action_text`` (str): what it chose; ``action_probs`` (list[float], one per valid action).
- ``reward`` (float); ``return_to_go`` (float): the sum of this and the later rewards of the episode,
  discounted by ``gamma`` per decision step (1.0: undiscounted); ``done`` (bool): the episode's last step;
  ``success`` (bool): whether the episode ended in success (the same on each of its rows, to filter
  demonstrations).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import gymnasium
import torch

from trl_embodied.evaluation import EnvSource, play_episodes

TRAJECTORY_FEATURES = datasets.Features(
    {
        "env": datasets.Value("string"),
        "episode": datasets.Value("int64"),
        "seed": datasets.Value("int64"),
        "step": datasets.Value("int32"),
        "prompt": datasets.Value("string"),
        "valid_actions": datasets.Sequence(datasets.Value("string")),
        "action": datasets.Value("int32"),
        "action_text": datasets.Value("string"),
        "action_probs": datasets.Sequence(datasets.Value("float32")),
        "reward": datasets.Value("float32"),
        "return_to_go": datasets.Value("float32"),
        "done": datasets.Value("bool"),
        "success": datasets.Value("bool"),
    }
)


def env_name(env: gymnasium.Env) -> str:
    """The gymnasium id an env was made with, else its class name."""
    spec = getattr(env, "spec", None)
    return spec.id if spec is not None else type(env.unwrapped).__name__


def episode_rows(
    steps: Sequence[dict[str, Any]],
    *,
    env: str,
    episode: int,
    seed: int | None,
    success: bool,
    gamma: float = 1.0,
) -> list[dict[str, Any]]:
    """Rows of one finished episode from its steps (each: ``prompt``, ``valid_actions``, ``action``,
    ``action_probs``, ``reward``), with the return-to-go summed backwards."""
    rows: list[dict[str, Any]] = []
    return_to_go = 0.0
    for step in reversed(steps):
        return_to_go = float(step["reward"]) + gamma * return_to_go
        rows.append({"return_to_go": return_to_go})
    rows.reverse()
    for index, (row, step) in enumerate(zip(rows, steps, strict=True)):
        valid = list(step["valid_actions"])
        row.update(
            env=env,
            episode=episode,
            seed=seed,
            step=index,
            prompt=step["prompt"],
            valid_actions=valid,
            action=int(step["action"]),
            action_text=valid[int(step["action"])],
            action_probs=[float(p) for p in step["action_probs"]],
            reward=float(step["reward"]),
            done=index == len(steps) - 1,
            success=bool(success),
        )
    return rows


def rows_to_dataset(rows: Sequence[dict[str, Any]]) -> datasets.Dataset:
    """A dataset with :data:`TRAJECTORY_FEATURES` (an empty one keeps the schema)."""
    columns = {name: [row[name] for row in rows] for name in TRAJECTORY_FEATURES}
    return datasets.Dataset.from_dict(columns, features=TRAJECTORY_FEATURES)


def collect_trajectories(
    policy,
    env: EnvSource,
    episodes: int,
    *,
    greedy: bool = False,
    seed: int = 0,
    gamma: float = 1.0,
    batch_size: int = 8,
    generator: torch.Generator | None = None,
    progress: bool = True,
    env_kwargs: dict[str, Any] | None = None,
) -> datasets.Dataset:
    """Play ``episodes`` episodes (seeds ``seed ..``) and return their steps as a dataset.

    Args:
        policy: what :func:`~trl_embodied.evaluate_policy` plays: an
            :class:`~trl_embodied.EmbodiedActorCritic` (a trained adapter), an
            :class:`~trl_embodied.ActionScorer` (the zero-shot model), ``"planner"`` (expert
            demonstrations), the MLP baseline or a callable.
        greedy: take the most probable action; by default sample, as the trainer's rollouts do.
        gamma: the discount of ``return_to_go`` per decision step.

    Returns:
        a ``datasets.Dataset`` of ``sum(episode lengths)`` rows in episode then step order; the episode id
        is its seed. ``save_to_disk`` and ``push_to_hub`` work on it as on any dataset.
    """
    records, reference_env = play_episodes(
        policy,
        env,
        episodes,
        greedy=greedy,
        seed=seed,
        batch_size=batch_size,
        generator=generator,
        progress=progress,
        record_steps=True,
        env_kwargs=env_kwargs,
        description="collecting",
    )
    name = env if isinstance(env, str) else env_name(reference_env)
    rows = [
        row
        for record in records
        for row in episode_rows(
            record["steps"],
            env=name,
            episode=record["seed"],
            seed=record["seed"],
            success=record["success"],
            gamma=gamma,
        )
    ]
    return rows_to_dataset(rows)


def to_prompt_completion(trajectories: datasets.Dataset, *, successful_only: bool = True) -> datasets.Dataset:
    """TRL's prompt-completion format from trajectories: ``prompt`` the observation, ``completion`` the chosen
    action's text after a space (the continuation the scorer rates), ready for ``trl.SFTTrainer``.

    ``successful_only`` keeps the episodes that ended in success (behaviour cloning of what worked).
    """
    if successful_only:
        trajectories = trajectories.filter(lambda row: row["success"])
    if len(trajectories) == 0:
        raise ValueError(
            "no steps to turn into prompt/completion pairs"
            + (
                ": no episode succeeded; pass successful_only=False or collect more episodes."
                if successful_only
                else "."
            )
        )
    return trajectories.map(
        lambda row: {"prompt": row["prompt"], "completion": " " + row["action_text"]},
        remove_columns=[c for c in trajectories.column_names if c != "prompt"],
    )
