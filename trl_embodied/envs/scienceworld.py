"""ScienceWorld tasks as text environments: states with hundreds of valid actions.

ScienceWorld (Wang et al., arXiv 2203.07540) runs 30 science tasks (boil water, test conductivity, find a
living thing...) in a Java engine, each in many variations. This adapter plays one task and variation:
the prompt is the task description, the look-around and the inventory, ending where an action completes
it ("..., you should"); the valid actions are the engine's valid action list (417 in the first state of
``boil``), optionally narrowed by ``action_pattern`` or ``action_filter`` (an action whose words name several
objects, "focus on paint on cup" among several cups of paint, acts on the first the engine lists); the
reward is the increase of the engine's score as a share of the full score (the engine counts 0 to 100
points; a solved task returns 1, as every task of this project does, where rewards of tens of points would
make the value loss dwarf the policy's on a shared backbone), ``info["score"]`` the engine's points, and
success is a finished task at score 100.

Needs the ``textenvs`` extra (``scienceworld``) and Java 17. ``make_env("trl_embodied/ScienceWorld-v0",
task_name="boil", variation=0)``. There is no symbolic observation (the PPO-MLP baseline does not play it).
The engine cannot export its state: :func:`make_scienceworld_env` (what the id builds) wraps the env in
:class:`~trl_embodied.envs.core.EpisodeReplay`, so a resumed training run replays its running episodes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium
from gymnasium import spaces

from trl_embodied.envs.core import (
    PROMPT_CHARSET,
    EpisodeReplay,
    check_action_index,
    invalid_action_error,
    prompt_space,
)

ActionFilter = Callable[[Sequence[str], str, dict[str, Any]], Sequence[str]]
SUCCESS_SCORE = 100
AMBIGUOUS = "Ambiguous request"  # how the engine's answer to an action that names several objects begins
_ALLOWED = set(PROMPT_CHARSET)


def printable(text: str) -> str:
    """``text`` within the prompt's character set: tabs become two spaces, anything else a space."""
    return "".join(c if c in _ALLOWED else ("  " if c == "\t" else " ") for c in text)


class ScienceWorldTextEnv(gymnasium.Env[str, int]):
    """One ScienceWorld task and variation as a text environment.

    Args:
        task_name: a ScienceWorld task (``boil``, ``find-living-thing``, ...; the error for an unknown one
            lists them).
        variation: the task's variation index.
        max_steps: decision steps before the episode is truncated.
        action_pattern: offer only the valid actions that this regular expression matches from their start
            (``r"(focus on|pick up|teleport to)\b|move .* to red box$"``, say): a filter that, unlike a
            function, can live in a config's ``env_kwargs`` or a task row. ``None``: every valid action.
        action_filter: ``action_filter(valid_actions, prompt, info) -> actions``, a subset of the engine's
            valid actions to offer (to drop the ``connect ...`` combinations, say), applied after
            ``action_pattern``; together they must keep one.
        max_actions: the size of the ``Discrete`` action space, an upper bound on the valid actions.
        simplifications: the engine's simplification string (``"easy"``, ``"teleportAction"``, ...).
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        task_name: str = "boil",
        variation: int = 0,
        max_steps: int = 100,
        action_pattern: str | None = None,
        action_filter: ActionFilter | None = None,
        max_actions: int = 8192,
        simplifications: str = "",
    ):
        try:
            pattern = re.compile(action_pattern) if action_pattern is not None else None
        except re.error as error:
            raise ValueError(
                f"action_pattern={action_pattern!r} is not a regular expression: {error}."
            ) from error
        try:
            from scienceworld import ScienceWorldEnv
        except ImportError as error:
            raise ImportError(
                "ScienceWorld needs the scienceworld package and Java 17: pip install 'trl-embodied[textenvs]'."
            ) from error
        self.engine = ScienceWorldEnv("", envStepLimit=max_steps + 1)  # the step limit is this env's own
        tasks = list(self.engine.get_task_names())
        if task_name not in tasks:
            self.close()
            raise ValueError(f"unknown ScienceWorld task {task_name!r}; the tasks are {', '.join(tasks)}.")
        variations = self.engine.get_max_variations(task_name)
        if not 0 <= variation < variations:
            self.close()
            raise ValueError(f"variation={variation}; task {task_name!r} has variations 0..{variations - 1}.")
        self.task_name, self.variation, self.simplifications = task_name, variation, simplifications
        self.max_steps, self.action_filter = max_steps, action_filter
        self.action_pattern = pattern
        self.observation_space = prompt_space()
        self.action_space = spaces.Discrete(max_actions)
        self._valid: list[str] = []
        self._score = 0
        self._steps = 0
        self._loaded = False

    def _prompt(self, info: dict[str, Any]) -> str:
        task = info["taskDesc"].removeprefix("Task Description:").strip()
        return printable(f"{task}\n{info['look'].strip()}\n{info['inv'].strip()}\nTo do the task, you should")

    def _info(
        self, prompt: str, engine_info: dict[str, Any], success: bool, done: bool = False
    ) -> dict[str, Any]:
        valid = list(dict.fromkeys(engine_info["valid"]))  # unique, in the engine's order
        if self.action_pattern is not None:
            valid = [action for action in valid if self.action_pattern.match(action)]
        if self.action_filter is not None:
            valid = list(dict.fromkeys(self.action_filter(valid, prompt, engine_info)))
        # A finished task (solved, or failed by focusing on the wrong thing) may offer none; a live state must.
        if not valid and not done:
            raise ValueError(
                f"action_pattern and action_filter left no valid action in this state of "
                f"{self.task_name!r}; offer more actions. The state: {prompt!r}"
            )
        if len(valid) > self.action_space.n:
            raise ValueError(
                f"{len(valid)} valid actions exceed max_actions={self.action_space.n}; raise max_actions or pass an "
                "action_filter."
            )
        self._valid = valid
        return {
            "valid_actions": valid,
            "action_ids": list(range(len(valid))),  # no fixed vocabulary: the list is the action space
            "success": success,
            "primitive_steps": 1,
            "score": engine_info["score"],
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if not self._loaded:  # the Java engine loads a task once; reset() starts it again
            self.engine.load(self.task_name, self.variation, self.simplifications)
            self._loaded = True
        _, engine_info = self.engine.reset()
        self._score, self._steps = engine_info["score"], 0
        prompt = self._prompt(engine_info)
        return prompt, self._info(prompt, engine_info, success=False)

    def step(self, action: int):
        index = check_action_index(action, self._valid, type(self).__name__)
        if index is None:
            raise invalid_action_error(int(action), self._valid, type(self).__name__)
        observation, _, done, engine_info = self.engine.step(self._valid[index])
        if observation.startswith(AMBIGUOUS):
            # The action's words name several objects (several cups of paint): the engine asks which one,
            # offers only the numbers of its readings and reports a score of 0 until answered. The offered
            # text cannot tell them apart, so the first reading is taken (one move in the engine's count).
            _, _, done, engine_info = self.engine.step("0")
        done, score = bool(done), engine_info["score"]
        reward, self._score = (score - self._score) / SUCCESS_SCORE, score
        self._steps += 1
        success = done and score >= SUCCESS_SCORE
        truncated = not done and self._steps >= self.max_steps
        prompt = self._prompt(engine_info)
        return prompt, reward, done, truncated, self._info(prompt, engine_info, success, done)

    def close(self):
        self.engine.close()  # asks the Java process to exit
        # The engine closes itself again when garbage-collected, and writes to the process's stdin if it is
        # still running then: a BrokenPipeError printed at exit. Waiting for the exit makes that a no-op.
        self.engine._gateway.java_process.wait(timeout=30)


def make_scienceworld_env(**kwargs: Any) -> EpisodeReplay:
    """A :class:`ScienceWorldTextEnv` (``kwargs`` are its arguments) whose running episode a checkpoint saves
    and a resumed run replays (:class:`~trl_embodied.envs.core.EpisodeReplay`)."""
    return EpisodeReplay(ScienceWorldTextEnv(**kwargs))
