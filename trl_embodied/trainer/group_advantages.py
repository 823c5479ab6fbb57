"""Critic-free advantages from groups of episodes: GRPO, RLOO and GiGPO, as pure functions.

A *group* is the episodes of several environments reset with the same seed: the same task, the same start,
different samples of the policy. Each estimator compares an episode with its group instead of with a value
head's prediction:

- GRPO (DeepSeekMath, arXiv 2402.03300; TRL's ``GRPOTrainer``): an episode's return minus its group's mean,
  over the group's standard deviation; every step of the episode gets that advantage.
- RLOO (Ahmadian et al., arXiv 2402.14740): the return minus the mean of the *other* episodes of the group
  (leave-one-out), unscaled.
- GiGPO (Feng et al., arXiv 2505.10978): GRPO's episode term plus a step term. Steps of the group's
  episodes that act from the *same state* (the anchor: the exact prompt and valid actions, which is what
  the scorer's state reuse keys on) form a step group; a step's discounted return-to-go is normalized
  within its step group. A state visited twice in one episode contributes both visits. A step whose state
  no other step of the group shares has no step term.

Standard deviations are the unbiased ones over the group and ``eps`` keeps a group of equal returns at
zero, as in TRL's GRPO.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch

GROUP_ESTIMATORS = ("grpo", "rloo", "gigpo")
#: The statistics :func:`group_advantages` returns for each estimator (the trainer logs them).
GROUP_STATISTICS = {
    "grpo": ("advantages/mean", "advantages/std"),
    "rloo": ("advantages/mean", "advantages/std"),
    "gigpo": (
        "advantages/mean",
        "advantages/std",
        "advantages/anchor_group_size",
        "advantages/anchored_share",
    ),
}
EPS = 1e-4  # TRL's GRPO: (r - mean) / (std + 1e-4)


@dataclass
class Episode:
    """One finished episode of a group.

    Attributes:
        group: the group it belongs to (episodes of a group were reset with the same seed).
        rewards: the reward of each decision step.
        states: each step's anchor key (the state acted from; equal keys are the same state).
        primitive_steps: each step's length in primitive steps (the discount of a macro action is
            ``gamma ** k``); by default 1.
    """

    group: Hashable
    rewards: Sequence[float]
    states: Sequence[Hashable]
    primitive_steps: Sequence[int] | None = None

    def __post_init__(self):
        if len(self.states) != len(self.rewards):
            raise ValueError(f"an episode has {len(self.rewards)} rewards but {len(self.states)} states.")
        if self.primitive_steps is not None and len(self.primitive_steps) != len(self.rewards):
            raise ValueError(
                f"an episode has {len(self.rewards)} rewards but {len(self.primitive_steps)} primitive step counts."
            )

    @property
    def episode_return(self) -> float:
        return float(sum(self.rewards))

    def returns_to_go(self, gamma: float) -> list[float]:
        """The discounted return from each step to the episode's end."""
        steps = self.primitive_steps or [1] * len(self.rewards)
        returns, following = [], 0.0
        for reward, k in zip(reversed(self.rewards), reversed(steps), strict=True):
            following = reward + gamma**k * following
            returns.append(following)
        return returns[::-1]


def _groups(episodes: Sequence[Episode]) -> dict[Hashable, list[int]]:
    members: dict[Hashable, list[int]] = defaultdict(list)
    for index, episode in enumerate(episodes):
        members[episode.group].append(index)
    return members


def _normalized(values: torch.Tensor) -> torch.Tensor:
    """``(x - mean) / (std + eps)`` over ``values``; one value alone has no spread: zero."""
    if values.numel() < 2:
        return torch.zeros_like(values)
    return (values - values.mean()) / (values.std() + EPS)


def episode_advantages(episodes: Sequence[Episode], estimator: str) -> list[float]:
    """One advantage per episode: ``"grpo"`` (normalized within the group) or ``"rloo"`` (leave-one-out)."""
    returns = torch.tensor([e.episode_return for e in episodes], dtype=torch.float64)
    advantages = torch.zeros_like(returns)
    for group, members in _groups(episodes).items():
        group_returns = returns[members]
        if estimator in ("grpo", "gigpo"):
            advantages[members] = _normalized(group_returns)
        elif estimator == "rloo":
            if len(members) < 2:
                raise ValueError(
                    f"RLOO needs at least 2 episodes a group; group {group!r} has {len(members)}."
                )
            others_mean = (group_returns.sum() - group_returns) / (len(members) - 1)
            advantages[members] = group_returns - others_mean
        else:
            raise ValueError(f"estimator={estimator!r}; use one of {GROUP_ESTIMATORS}.")
    return advantages.tolist()


def step_advantages(episodes: Sequence[Episode], gamma: float) -> tuple[list[list[float]], list[int]]:
    """GiGPO's step term: each step's discounted return-to-go normalized within the steps of its group that
    act from the same state. Returns the per-step terms and, per step, the size of its step group."""
    returns = [e.returns_to_go(gamma) for e in episodes]
    anchors: dict[tuple[Hashable, Hashable], list[tuple[int, int]]] = defaultdict(list)
    for i, episode in enumerate(episodes):
        for t, state in enumerate(episode.states):
            anchors[(episode.group, state)].append((i, t))
    terms = [[0.0] * len(e.rewards) for e in episodes]
    sizes = [[0] * len(e.rewards) for e in episodes]
    for steps in anchors.values():
        normalized = _normalized(torch.tensor([returns[i][t] for i, t in steps], dtype=torch.float64))
        for (i, t), value in zip(steps, normalized.tolist(), strict=True):
            terms[i][t], sizes[i][t] = value, len(steps)
    return terms, [size for episode_sizes in sizes for size in episode_sizes]


def group_advantages(
    episodes: Sequence[Episode], estimator: str, *, gamma: float = 1.0, step_advantage_weight: float = 1.0
) -> tuple[list[list[float]], dict[str, float]]:
    """Per-step advantages of every episode under ``estimator``, and statistics to log.

    Returns:
        ``(advantages, stats)``: ``advantages[i][t]`` for step ``t`` of episode ``i``; ``stats`` holds the
        mean and std of the advantages and, for GiGPO, the mean step-group size and the share of steps in a
        step group of two or more.
    """
    if estimator not in GROUP_ESTIMATORS:
        raise ValueError(f"estimator={estimator!r}; use one of {GROUP_ESTIMATORS}.")
    per_episode = episode_advantages(episodes, estimator)
    advantages = [[a] * len(e.rewards) for a, e in zip(per_episode, episodes, strict=True)]
    stats: dict[str, float] = {}
    if estimator == "gigpo":
        terms, sizes = step_advantages(episodes, gamma)
        advantages = [
            [a + step_advantage_weight * s for a, s in zip(row, term_row, strict=True)]
            for row, term_row in zip(advantages, terms, strict=True)
        ]
        if sizes:
            stats["advantages/anchor_group_size"] = sum(sizes) / len(sizes)
            stats["advantages/anchored_share"] = sum(size >= 2 for size in sizes) / len(sizes)
    flat = torch.tensor([a for row in advantages for a in row], dtype=torch.float64)
    if flat.numel():
        stats["advantages/mean"] = float(flat.mean())
        stats["advantages/std"] = float(flat.std()) if flat.numel() > 1 else 0.0
    return advantages, stats
