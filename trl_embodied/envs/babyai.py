"""BabyAI levels (minigrid) as text environments: the mission and what the agent sees, in words.

The prompt follows BabyAI-Text (Carta et al., GLAM, arXiv 2302.02662) in spirit: every object in the
agent's 7x7 egocentric view with its position relative to the agent ("a red ball 2 steps forward and 1
step left"), the nearest wall straight ahead and to each side, what the agent carries, and the mission as
the sentence the action completes ("To go to the red ball, you should"). The valid actions are the six
meaningful ones, in minigrid's order: turn left, turn right, go forward, pick up, drop, toggle.
``info["symbolic_observation"]`` is minigrid's encoded view (object, color, state per cell, scaled to
[0, 1]) and the agent's direction, so the PPO-from-scratch baseline plays the same env. Reward is
minigrid's (``1 - 0.9 * steps / max_steps`` on success, else 0).

Needs the ``textenvs`` extra (``minigrid``). Ids: ``trl_embodied/BabyAI-<Level>-v0`` for :data:`LEVELS`, or
``make_env("trl_embodied/BabyAI-v0", level="GoToObj")`` for any level minigrid registers as
``BabyAI-<level>-v0``.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import gymnasium
import numpy as np

from trl_embodied.envs.core import EpisodeReplay, TextEnvWrapper
from trl_embodied.envs.registration import BABYAI_LEVELS as LEVELS  # noqa: F401  (ids of their own)

#: minigrid's action indices 0-5 (6, "done", does nothing in BabyAI and is left out).
ACTIONS = ("turn left", "turn right", "go forward", "pick up", "drop", "toggle")
VIEW = 7  # minigrid's egocentric view: the agent at column 3 of the bottom row, facing up
AGENT_COLUMN, AGENT_ROW = VIEW // 2, VIEW - 1


def _steps(count: int, direction: str) -> str:
    return f"{count} step{'s' if count != 1 else ''} {direction}"


def relative_position(column: int, row: int) -> str:
    """Where cell ``(column, row)`` of the view lies from the agent: "2 steps forward and 1 step left"."""
    forward, right = AGENT_ROW - row, column - AGENT_COLUMN
    parts = [_steps(forward, "forward")] if forward else []
    if right:
        parts.append(_steps(abs(right), "right" if right > 0 else "left"))
    return " and ".join(parts)


def describe_view(image: np.ndarray, carrying: Any, mission: str) -> str:
    """The prompt for minigrid's encoded view ``image`` (``[7, 7, 3]``: object, color, state per cell)."""
    from minigrid.core.constants import IDX_TO_COLOR, IDX_TO_OBJECT, STATE_TO_IDX

    states = {index: name for name, index in STATE_TO_IDX.items()}
    seen = []
    for column in range(VIEW):
        for row in range(VIEW):
            kind = IDX_TO_OBJECT[int(image[column, row, 0])]
            if kind in ("unseen", "empty", "floor", "wall", "agent") or (column, row) == (
                AGENT_COLUMN,
                AGENT_ROW,
            ):
                continue  # the agent's own cell shows what it carries
            color = IDX_TO_COLOR[int(image[column, row, 1])]
            name = (
                f"{states[int(image[column, row, 2])]} {color} door" if kind == "door" else f"{color} {kind}"
            )
            distance = (AGENT_ROW - row) + abs(column - AGENT_COLUMN)
            seen.append((distance, f"You see a {name} {relative_position(column, row)}."))
    walls = []
    for direction, cells in (
        ("forward", [(AGENT_COLUMN, row) for row in range(AGENT_ROW - 1, -1, -1)]),
        ("left", [(column, AGENT_ROW) for column in range(AGENT_COLUMN - 1, -1, -1)]),
        ("right", [(column, AGENT_ROW) for column in range(AGENT_COLUMN + 1, VIEW)]),
    ):
        for distance, (column, row) in enumerate(cells, start=1):
            kind = IDX_TO_OBJECT[int(image[column, row, 0])]
            if kind == "wall":
                walls.append(f"You see a wall {_steps(distance, direction)}.")
            if kind not in ("empty", "floor"):
                break  # what stands in the way hides what lies behind it
    held = f"a {carrying.color} {carrying.type}" if carrying is not None else "nothing"
    sentences = [text for _, text in sorted(seen)] + walls + [f"You carry {held}."]
    return " ".join(sentences) + f" To {mission}, you should"


def symbolic_view(image: np.ndarray, direction: int) -> np.ndarray:
    """``float32[7 * 7 * 3 + 4]`` in [0, 1]: the encoded view, scaled, and the direction one-hot."""
    scaled = image.astype(np.float32) / np.array([10.0, 5.0, 2.0], dtype=np.float32)
    return np.concatenate([scaled.reshape(-1), np.eye(4, dtype=np.float32)[int(direction)]])


class _BabyAIObservation(gymnasium.ObservationWrapper):
    """minigrid's dict observation as :func:`symbolic_view`'s vector (what TextEnvWrapper flattens)."""

    def __init__(self, env: gymnasium.Env):
        super().__init__(env)
        self.observation_space = gymnasium.spaces.Box(
            0.0, 1.0, shape=(VIEW * VIEW * 3 + 4,), dtype=np.float32
        )
        self.last_image: np.ndarray | None = None

    def reset(self, **kwargs: Any):
        # Level generation retries a layout whose objects it cannot place and prints every retry ("Sampling
        # rejected: ..."); a normal part of making a level, not a message for the user, so it is kept quiet.
        with contextlib.redirect_stdout(io.StringIO()):
            return super().reset(**kwargs)

    def observation(self, observation: dict[str, Any]) -> np.ndarray:
        self.last_image = observation["image"]
        return symbolic_view(observation["image"], observation["direction"])


def make_babyai_env(level: str = "GoToRedBall", **kwargs: Any) -> EpisodeReplay:
    """The BabyAI ``level`` (minigrid's ``BabyAI-<level>-v0``) as a text environment: a
    :class:`~trl_embodied.TextEnvWrapper` in :class:`~trl_embodied.envs.core.EpisodeReplay`, so that a
    checkpoint saves the running episode.

    Args:
        level: a BabyAI level name, such as those of :data:`LEVELS`.
        kwargs: for ``gymnasium.make`` of the minigrid level (``max_steps``, ...).
    """
    try:
        import minigrid  # noqa: F401  (registers the BabyAI levels)
    except ImportError as error:
        raise ImportError(
            "BabyAI needs minigrid: pip install 'trl-embodied[textenvs]' (or pip install minigrid)."
        ) from error
    env_id = f"BabyAI-{level}-v0"
    if env_id not in gymnasium.registry:
        known = sorted(
            k.removeprefix("BabyAI-").removesuffix("-v0")
            for k in gymnasium.registry
            if k.startswith("BabyAI-")
        )
        raise ValueError(f"unknown BabyAI level {level!r}; minigrid has {', '.join(known)}.")
    observed = _BabyAIObservation(gymnasium.make(env_id, **kwargs))
    minigrid_env = observed.unwrapped

    def describe(observation: np.ndarray, info: dict[str, Any]) -> str:
        return describe_view(observed.last_image, minigrid_env.carrying, minigrid_env.mission)

    text_env = TextEnvWrapper(
        observed,
        describe=describe,
        valid_actions=lambda observation, info: {text: index for index, text in enumerate(ACTIONS)},
        max_actions=len(ACTIONS),
        is_success=lambda observation, reward, terminated, truncated, info: bool(terminated and reward > 0),
    )
    return EpisodeReplay(text_env)  # minigrid cannot export its grid: a resumed run replays the episode
