"""TextWorld games (Microsoft's text-game engine) through trl_embodied's text-env contract.

Needs the extra ``textenvs`` (``pip install "trl-embodied[textenvs]"``, package ``textworld``). TextWorld's
own gym API is the old 4-tuple one; here a game is a gymnasium env in two layers:

- :class:`TextWorldGame`: the game as a plain gymnasium env (the command text is the action, the score's
  increase the reward, ``terminated`` on a win or a loss, ``truncated`` after ``max_steps`` commands);
- :func:`make_textworld_env`: that game in :class:`~trl_embodied.TextEnvWrapper`, with the admissible
  commands as valid actions and the objective, room description and inventory as the prompt. This is what
  ``make_env("trl_embodied/TextWorld-v0", game_file=...)`` returns.

Games are generated offline (:func:`make_cooking_game`, or TextWorld's ``tw-make``), about a second each.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium
from gymnasium import spaces

from trl_embodied.envs.core import (
    MAX_PROMPT_CHARS,
    PROMPT_CHARSET,
    EpisodeReplay,
    InvalidActionMode,
    TextEnvWrapper,
)

INSTALL_HINT = 'TextWorld is not installed: pip install "trl-embodied[textenvs]" (package textworld).'
#: The sentence every prompt ends with: an admissible command completes it.
PROMPT_END = "Your next action is to"


def _textworld():
    try:
        import textworld
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    return textworld


class TextWorldGame(gymnasium.Env):
    """A compiled TextWorld game (``.z8`` or ``.ulx``) as a gymnasium env whose actions are command strings.

    ``info`` holds TextWorld's ``objective``, ``description``, ``inventory``, ``admissible_commands``,
    ``score``, ``max_score``, ``won``, ``lost`` and ``walkthrough`` (the generator's solution), and
    ``success`` (= won). The observation is TextWorld's feedback text.
    """

    metadata = {"render_modes": []}

    def __init__(self, game_file: str | os.PathLike, max_steps: int = 100):
        textworld = _textworld()
        if not Path(game_file).is_file():
            raise FileNotFoundError(
                f"game_file={game_file!s} does not exist; generate one with trl_embodied.envs.textworld."
                "make_cooking_game(path) or TextWorld's tw-make."
            )
        if max_steps < 1:
            raise ValueError(f"max_steps={max_steps}; allow at least one command.")
        self.game_file = str(game_file)
        self.max_steps = max_steps
        infos = textworld.EnvInfos(
            objective=True,
            description=True,
            inventory=True,
            admissible_commands=True,
            score=True,
            max_score=True,
            won=True,
            lost=True,
            feedback=True,
            extras=["walkthrough"],
        )
        self._game = textworld.start(self.game_file, request_infos=infos)
        self.observation_space = spaces.Text(max_length=MAX_PROMPT_CHARS * 4)
        self.action_space = spaces.Text(max_length=256)
        self._score = 0.0
        self._steps = 0

    def _info(self, state) -> dict[str, Any]:
        return {
            "objective": state["objective"],
            "description": state["description"],
            "inventory": state["inventory"],
            "admissible_commands": list(state["admissible_commands"]),
            "score": float(state["score"]),
            "max_score": float(state["max_score"]),
            "won": bool(state["won"]),
            "lost": bool(state["lost"]),
            "walkthrough": list(state.get("extra.walkthrough") or []),
            "success": bool(state["won"]),
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)  # a compiled game is deterministic: the seed only seeds np_random
        state = self._game.reset()
        self._score, self._steps = float(state["score"]), 0
        return state["feedback"], self._info(state)

    def step(self, action: str):
        state, score, done = self._game.step(action)
        reward = float(score) - self._score
        self._score = float(score)
        self._steps += 1
        info = self._info(state)
        terminated = bool(done) and (info["won"] or info["lost"])
        truncated = not terminated and (bool(done) or self._steps >= self.max_steps)
        return state["feedback"], reward, terminated, truncated, info

    def close(self):
        self._game.close()


def clean_text(text: str) -> str:
    """TextWorld text in the prompt's charset: ASCII, single blank lines, no banner whitespace."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    ascii_text = "".join(c if c in PROMPT_CHARSET else " " for c in ascii_text)
    lines = [re.sub(r" +", " ", line).strip() for line in ascii_text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def describe(_feedback: str, info: dict[str, Any]) -> str:
    """The prompt: the objective, where the agent is and what it carries, then a sentence the action ends."""
    text = f"{info['objective']}\n\n{info['description']}\n\n{info['inventory']}"
    return f"{clean_text(text)[: MAX_PROMPT_CHARS - 100]}\n\n{PROMPT_END}"


def make_textworld_env(
    game_file: str | os.PathLike,
    *,
    max_steps: int = 100,
    max_actions: int = 128,
    command_filter: Callable[[str], bool] | None = None,
    invalid_action: InvalidActionMode = "raise",
) -> EpisodeReplay:
    """A TextWorld game as a trl_embodied text environment (in :class:`~trl_embodied.TextEnvWrapper`, and
    :class:`~trl_embodied.envs.core.EpisodeReplay` so that a checkpoint saves the running episode).

    Args:
        game_file: a compiled game (``.z8``/``.ulx``).
        max_steps: commands per episode before truncation.
        max_actions: the ``Discrete`` action space's size, a bound on the admissible commands.
        command_filter: keep the admissible commands for which it returns True (e.g. drop ``examine ...``
            to shrink the choice); by default all are valid actions.
        invalid_action: ``"raise"`` (default) or ``"noop"``, as for :class:`~trl_embodied.TextEnvWrapper`.
    """
    keep = command_filter or (lambda command: True)

    def valid_actions(_feedback: str, info: dict[str, Any]) -> dict[str, str]:
        commands = [c for c in info["admissible_commands"] if keep(c)]
        return {command: command for command in commands}

    text_env = TextEnvWrapper(
        TextWorldGame(game_file, max_steps=max_steps),
        describe,
        valid_actions,
        max_actions=max_actions,
        is_success=lambda obs, reward, terminated, truncated, info: info["won"],
        invalid_action=invalid_action,
    )
    return EpisodeReplay(text_env)  # the game's interpreter state stays inside it: a resumed run replays


def make_cooking_game(
    path: str | os.PathLike,
    *,
    recipe: int = 1,
    take: int = 1,
    go: int = 1,
    open_containers: bool = True,
    cook: bool = False,
    cut: bool = False,
    seed: int = 0,
) -> Path:
    """Generate and compile a TextWorld cooking game (the FTWP family) at ``path`` (``.z8``); returns it.

    ``recipe`` ingredients, ``take`` of them to fetch, ``go`` rooms (1, 6, 9 or 12), containers to open,
    ingredients to cook or cut: the difficulty knobs of TextWorld's ``tw-cooking`` challenge.
    """
    textworld = _textworld()
    from textworld.challenges import CHALLENGES

    path = Path(path).with_suffix(".z8")
    path.parent.mkdir(parents=True, exist_ok=True)
    settings = {
        "recipe": recipe,
        "take": take,
        "go": go,
        "open": open_containers,
        "cook": cook,
        "cut": cut,
        "drop": False,
        "recipe_seed": seed,
        "split": None,
    }
    options = textworld.GameOptions()
    options.seeds = seed
    options.path = str(path)
    options.force_recompile = True
    make_game = CHALLENGES["tw-cooking"][1]
    game = make_game(settings, options)
    return Path(textworld.generator.compile_game(game, options))
