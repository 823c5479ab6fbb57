"""Environment helpers for the tests: small environments on the public TextEnv base, gymnasium's FrozenLake
through TextEnvWrapper, and ``act``."""

from __future__ import annotations

import itertools

import gymnasium
import numpy as np

from trl_embodied import EpisodeReplay, TextEnv, TextEnvWrapper
from trl_embodied.envs.core import Transition

MOVES = {"move left": 0, "move down": 1, "move right": 2, "move up": 3}


class TwoChoiceEnv(TextEnv[int]):
    """One decision: ``win the game`` pays 1 (success), ``lose the game`` pays 0. Both end the episode."""

    ACTIONS = ["win the game", "lose the game"]

    def __init__(self):
        super().__init__(max_actions=2, symbolic_size=1, max_primitive_steps=10)

    def initial_state(self) -> int:
        return 0

    def valid_actions(self, state: int) -> list[str]:
        return self.ACTIONS

    def transition(self, state: int, action: int) -> Transition[int]:
        won = action == 0
        return Transition(state + 1, 1.0 if won else 0.0, terminated=True, success=won)

    def describe(self, state: int) -> str:
        return "There are two buttons in front of you. To finish, you should"

    def symbolic(self, state: int) -> np.ndarray:
        return np.zeros(1, dtype=np.float32)


class NoActionsEnv(TwoChoiceEnv):
    """Breaks the contract: its reset info lacks valid actions."""

    def reset(self, *, seed=None, options=None):
        prompt, info = super().reset(seed=seed, options=options)
        del info["valid_actions"]
        return prompt, info


class FlakyEnv(TwoChoiceEnv):
    """Raises as a dead engine would on every ``every``-th call of ``step`` (counted per instance)."""

    def __init__(self, every: int):
        super().__init__()
        self.every, self.calls = every, 0

    def step(self, action):
        self.calls += 1
        if self.calls % self.every == 0:
            raise ConnectionError("engine process died")
        return super().step(action)


def act(env, text):
    """Step the action whose text is ``text`` (fails the test if it is not offered)."""
    actions = env.valid_actions(env.state)
    assert text in actions, f"{text!r} not in {actions}"
    return env.step(actions.index(text))


class DoorEnv(TextEnv[bool]):
    """A closed door to walk through (the state: is it open?). Opening an open door, closing a closed one
    and walking into a closed one change nothing: a policy that prefers them can loop to the step limit."""

    ACTIONS = ["open the door", "close the door", "walk through the door"]

    def __init__(self):
        super().__init__(max_actions=3, symbolic_size=1, max_primitive_steps=20)

    def initial_state(self) -> bool:
        return False

    def valid_actions(self, state: bool) -> list[str]:
        return self.ACTIONS

    def transition(self, state: bool, action: int) -> Transition[bool]:
        if action == 2 and state:
            return Transition(state, 1.0, terminated=True, success=True)
        return Transition({0: True, 1: False}.get(action, state), 0.0, terminated=False, success=False)

    def describe(self, state: bool) -> str:
        return f"The door is {'open' if state else 'closed'}. To leave the room, you should"

    def symbolic(self, state: bool) -> np.ndarray:
        return np.array([float(state)], dtype=np.float32)


def frozen_lake(is_slippery=False, **kwargs) -> TextEnvWrapper:
    """gymnasium's 4x4 FrozenLake as a text env (no state_dict of its own); ``kwargs`` for TextEnvWrapper."""

    def describe(obs, info):
        row, col = divmod(int(obs), 4)
        return (
            f"You stand on a 4x4 frozen lake at row {row}, column {col}. The goal is at row 3, column 3. You"
        )

    return TextEnvWrapper(
        gymnasium.make("FrozenLake-v1", is_slippery=is_slippery),
        describe,
        lambda obs, info: MOVES,
        max_actions=4,
        is_success=lambda obs, reward, terminated, truncated, info: terminated and reward > 0,
        **kwargs,
    )


def slippery_lake() -> EpisodeReplay:
    """The slippery lake, whose moves' outcomes come from the env's generator, saved by replay."""
    return EpisodeReplay(frozen_lake(is_slippery=True))


_ATTEMPTS = itertools.count()  # shared by every numbered lake


def replayed_lake(describe, moves) -> EpisodeReplay:
    """The non-slippery lake in EpisodeReplay with a prompt and an action list of the test's making."""
    return EpisodeReplay(
        TextEnvWrapper(
            gymnasium.make("FrozenLake-v1", is_slippery=False),
            describe,
            lambda obs, info: moves,
            max_actions=4,
        )
    )


def numbered_lake() -> EpisodeReplay:
    """A lake whose prompt numbers every observation across all its instances: no replay in another
    instance reaches a saved prompt."""
    return replayed_lake(lambda obs, info: f"Attempt {next(_ATTEMPTS)}: you are on tile {obs}. You", MOVES)
