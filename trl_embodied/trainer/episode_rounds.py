"""The episode rounds of a group estimator, kept across rollouts.

The env slots form groups of ``group_size`` consecutive slots. A group's *round* is ``group_size`` episodes
that start from one reset seed, one in each slot of the group. No slot waits for the others: a slot whose
episode ended starts at once on its group's next round (the first of the group to get there opens it with a
new seed, the others join it when their own episodes end), so a group may have several rounds in flight,
its slots in different ones, and every slot takes a step at every decision step of a rollout. A round is
not bound to a rollout either: it runs on through as many rollouts as its longest episode needs, and each
step keeps the log-probability it was sampled with and the iteration that sampled it (the trainer learns
from a stale step as decoupled PPO does). When a round is over its episodes get their group advantages and
their steps join a queue; each update takes the oldest steps of the queue, up to a fixed row count, so that
an iteration's optimizer steps stay what the config says while rounds end at any time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .group_advantages import Episode, group_advantages

#: One decision step of a round, as plain data (it is saved in checkpoints).
Step = dict[str, Any]  # prompt, actions, chosen, logprob, reward, primitive_steps, iteration
#: A round in flight: {"group", "number" (the group's count of rounds before it), "seed",
#: "steps" (each member slot's episode so far), "ended" (each member's episode is over)}.
Round = dict[str, Any]


class EpisodeRounds:
    """Rounds in flight, rounds over (waiting for their advantages), and the queue of scored steps.

    Args:
        num_slots: env slots on this process (a multiple of ``group_size``).
        group_size: slots per group.
        first_seed: the reset seed of the first round; each round opened after it takes the next integer.
    """

    def __init__(self, num_slots: int, group_size: int, first_seed: int = 0):
        self.group_size = group_size
        self.first_seed = first_seed
        self.rounds_opened = 0  # over all groups: the next round opened gets seed first_seed + rounds_opened
        self.next_number = [0] * (num_slots // group_size)  # each group's next round to open
        self.joined = [-1] * num_slots  # the number of the last round each slot joined (-1: none)
        self.open: list[Round] = []
        self.over: list[tuple[tuple[int, int], list[list[Step]]]] = []  # ((group, seed), episodes) to score
        self.queue: list[Step] = []  # scored steps (with "advantage"), oldest first

    def members(self, group: int) -> range:
        return range(group * self.group_size, (group + 1) * self.group_size)

    def round_of(self, slot: int) -> Round | None:
        """The round ``slot`` plays now; None when it plays none (at the start, or after its group's rounds
        were dropped): :meth:`begin` gives it one."""
        group, number = slot // self.group_size, self.joined[slot]
        return next((r for r in self.open if r["group"] == group and r["number"] == number), None)

    def idle_slots(self) -> list[int]:
        return [slot for slot in range(len(self.joined)) if self.round_of(slot) is None]

    def begin(self, slot: int) -> int:
        """``slot`` starts its episode of its group's next round (opening the round if no slot of the group
        has yet); returns the seed to reset it with."""
        group = slot // self.group_size
        number = self.joined[slot] + 1
        if number == self.next_number[group]:
            self.open.append(
                {
                    "group": group,
                    "number": number,
                    "seed": self.first_seed + self.rounds_opened,
                    "steps": [[] for _ in self.members(group)],
                    "ended": [False for _ in self.members(group)],
                }
            )
            self.rounds_opened += 1
            self.next_number[group] += 1
        self.joined[slot] = number
        return self.round_of(slot)["seed"]

    def record(self, slot: int, step: Step, episode_ended: bool) -> int | None:
        """Add ``slot``'s step to its round. When the step ended the slot's episode, the round is over if it
        was the group's last episode of the round, and the slot begins its next round: returns the seed to
        reset it with (None while the episode goes on)."""
        round_ = self.round_of(slot)
        member = slot % self.group_size
        round_["steps"][member].append(step)
        if not episode_ended:
            return None
        round_["ended"][member] = True
        if all(round_["ended"]):
            self.open.remove(round_)
            self.over.append(((round_["group"], round_["seed"]), round_["steps"]))
        return self.begin(slot)

    def drop(self, group: int) -> None:
        """Forget ``group``'s rounds in flight (void: on resume, one of its slots' episodes was not restored);
        its slots are idle then, and begin a new round together."""
        self.open = [r for r in self.open if r["group"] != group]
        for slot in self.members(group):
            self.joined[slot] = self.next_number[group] - 1

    def holds_episode(self, slot: int, seed: int | None, episode_length: int) -> bool:
        """Whether the episode ``slot`` runs (its reset seed and length so far) is the one its round recorded;
        after a resume, a slot whose episode was not restored runs another."""
        round_ = self.round_of(slot)
        if round_ is None:
            return True
        return seed == round_["seed"] and len(round_["steps"][slot % self.group_size]) == episode_length

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
            "rounds_opened": self.rounds_opened,
            "next_number": self.next_number,
            "joined": self.joined,
            "open": self.open,
            "over": self.over,
            "queue": self.queue,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["next_number"]) != len(self.next_number) or len(state["joined"]) != len(self.joined):
            raise ValueError(
                f"saved rounds of {len(state['next_number'])} groups and {len(state['joined'])} slots, for "
                f"{len(self.next_number)} groups and {len(self.joined)} slots"
            )
        self.rounds_opened = int(state["rounds_opened"])
        self.next_number, self.joined = list(state["next_number"]), list(state["joined"])
        self.open = [dict(r) for r in state["open"]]
        self.over = [(tuple(key), members) for key, members in state["over"]]
        self.queue = list(state["queue"])
