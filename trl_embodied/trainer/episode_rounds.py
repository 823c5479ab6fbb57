"""The episode rounds of a group estimator, kept across rollouts.

The env slots form groups of ``group_size`` consecutive slots. In a *round* every slot of a group resets with
one seed and plays its episode to the end; a slot whose episode ended waits (takes no steps) until the
group's last episode ends, and the group then starts its next round. A round is not bound to a rollout: it
runs on through as many rollouts as its longest episode needs, and each step keeps the log-probability it
was sampled with and the iteration that sampled it (the trainer learns from a stale step as decoupled PPO
does). When a round is over its episodes get their group advantages and their steps join a queue; each
update takes the oldest steps of the queue, up to a fixed row count, so that an iteration's optimizer
steps stay what the config says while rounds end at any time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .group_advantages import Episode, group_advantages

#: One decision step of a round, as plain data (it is saved in checkpoints).
Step = dict[str, Any]  # prompt, actions, chosen, logprob, reward, primitive_steps, iteration


class EpisodeRounds:
    """Rounds in flight, rounds over (waiting for their advantages), and the queue of scored steps.

    Args:
        num_slots: env slots on this process (a multiple of ``group_size``).
        group_size: slots per group.
    """

    def __init__(self, num_slots: int, group_size: int):
        self.group_size = group_size
        self.seeds: list[int | None] = [None] * (num_slots // group_size)  # each group's round, None: none
        self.steps: list[list[Step]] = [[] for _ in range(num_slots)]  # each slot's episode in its round
        self.ended: list[bool] = [False] * num_slots
        self.over: list[tuple[tuple[int, int], list[list[Step]]]] = []  # ((group, seed), episodes) to score
        self.queue: list[Step] = []  # scored steps (with "advantage"), oldest first

    def members(self, group: int) -> range:
        return range(group * self.group_size, (group + 1) * self.group_size)

    def idle_groups(self) -> list[int]:
        """The groups with no round in flight (at the start, after a round, after a dropped one)."""
        return [group for group, seed in enumerate(self.seeds) if seed is None]

    def start(self, group: int, seed: int) -> None:
        """A new round of ``group`` whose slots were just reset with ``seed``."""
        self.drop(group)
        self.seeds[group] = seed

    def playing(self, slot: int) -> bool:
        """Whether ``slot`` takes steps now: its group has a round in flight and its episode has not ended."""
        return self.seeds[slot // self.group_size] is not None and not self.ended[slot]

    def record(self, slot: int, step: Step, episode_ended: bool) -> bool:
        """Add ``slot``'s step to its round; returns whether this ended the round (the group is idle then)."""
        self.steps[slot].append(step)
        self.ended[slot] = episode_ended
        group = slot // self.group_size
        if not all(self.ended[n] for n in self.members(group)):
            return False
        self.over.append(((group, self.seeds[group]), [self.steps[n] for n in self.members(group)]))
        self.drop(group)
        return True

    def drop(self, group: int) -> None:
        """Forget ``group``'s round in flight: it is over (its steps were handed on) or void (on resume, its
        slots' episodes were not restored)."""
        self.seeds[group] = None
        for slot in self.members(group):
            self.steps[slot], self.ended[slot] = [], False

    def holds_episode(self, slot: int, seed: int | None, episode_length: int) -> bool:
        """Whether the episode ``slot`` runs (its reset seed and length so far) is the one its round recorded;
        after a resume, a slot whose episode was not restored runs another."""
        if not self.playing(slot):
            return True
        return seed == self.seeds[slot // self.group_size] and len(self.steps[slot]) == episode_length

    def score(
        self,
        estimator: str,
        *,
        gamma: float,
        step_advantage_weight: float,
    ) -> tuple[int, dict[str, float]]:
        """Give the steps of every round that is over their advantages and queue them. A step's anchor state
        (GiGPO) is its exact prompt and valid actions, what the scorer's state reuse keys on.

        Returns the number of episodes scored and the estimator's statistics (empty when none was)."""
        episodes: list[Sequence[Step]] = [steps for _, members in self.over for steps in members]
        groups = [key for key, members in self.over for _ in members]
        self.over = []
        if not episodes:
            return 0, {}
        advantages, stats = group_advantages(
            [
                Episode(
                    group=key,
                    rewards=[s["reward"] for s in steps],
                    states=[(s["prompt"], tuple(s["actions"])) for s in steps],
                    primitive_steps=[s["primitive_steps"] for s in steps],
                )
                for key, steps in zip(groups, episodes, strict=True)
            ],
            estimator,
            gamma=gamma,
            step_advantage_weight=step_advantage_weight,
        )
        for steps, values in zip(episodes, advantages, strict=True):
            self.queue += [{**step, "advantage": value} for step, value in zip(steps, values, strict=True)]
        return len(episodes), stats

    def take(self, rows: int) -> list[Step]:
        """The oldest ``rows`` scored steps (fewer if the queue holds fewer), removed from the queue."""
        taken, self.queue = self.queue[:rows], self.queue[rows:]
        return taken

    def state_dict(self) -> dict[str, Any]:
        return {
            "seeds": self.seeds,
            "steps": self.steps,
            "ended": self.ended,
            "over": self.over,
            "queue": self.queue,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["seeds"]) != len(self.seeds) or len(state["steps"]) != len(self.steps):
            raise ValueError(
                f"saved rounds of {len(state['seeds'])} groups and {len(state['steps'])} slots, for "
                f"{len(self.seeds)} groups and {len(self.steps)} slots"
            )
        self.seeds, self.steps, self.ended = list(state["seeds"]), list(state["steps"]), list(state["ended"])
        self.over = [(tuple(key), members) for key, members in state["over"]]
        self.queue = list(state["queue"])
