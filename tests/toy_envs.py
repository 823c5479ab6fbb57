"""Environment helpers for the tests: small environments on the public TextEnv base, and ``act``."""

from __future__ import annotations

import numpy as np

from trl_embodied import TextEnv
from trl_embodied.envs.core import Transition


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


def act(env, text):
    """Step the action whose text is ``text`` (fails the test if it is not offered)."""
    actions = env.valid_actions(env.state)
    assert text in actions, f"{text!r} not in {actions}"
    return env.step(actions.index(text))
