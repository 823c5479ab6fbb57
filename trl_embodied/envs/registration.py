"""Gymnasium ids for every built-in task, under the ``trl_embodied/`` namespace.

After ``import trl_embodied``, ``gymnasium.make("trl_embodied/Overcooked-TomatoSalad-v0")`` works, and so
do gymnasium's vector envs. :func:`make_env` adds a clear error for unknown ids.
"""

from __future__ import annotations

from typing import Any

import gymnasium

from trl_embodied.envs import household, overcooked

NAMESPACE = "trl_embodied"


def _registry() -> dict[str, tuple[str, dict[str, Any]]]:
    """``{id: (entry point, kwargs)}`` for every built-in task."""
    ids = {
        f"{NAMESPACE}/Overcooked-{task}-v0": ("trl_embodied.envs.overcooked:OvercookedEnv", {"task": task})
        for task in overcooked.TASKS
    }
    ids |= {
        household.household_env_id(task): ("trl_embodied.envs.household:HouseholdEnv", {"task": task})
        for task in household.TASKS
    }
    return ids


ENV_IDS: tuple[str, ...] = tuple(_registry())


#: The BabyAI levels with an id of their own (any other: ``trl_embodied/BabyAI-v0`` with ``level=``).
BABYAI_LEVELS = ("GoToRedBall", "GoToLocal", "PickupLoc", "PutNextLocal", "OpenDoor")
_BABYAI = "trl_embodied.envs.babyai:make_babyai_env"
#: Third-party engines, registered without being built-in tasks (they need the ``textenvs`` extra, and
#: TextWorld a game file): ``make_env("trl_embodied/TextWorld-v0", game_file="game.z8")``,
#: ``make_env("trl_embodied/BabyAI-GoToLocal-v0")``, ``make_env("trl_embodied/ScienceWorld-v0", task_name="boil")``.
#: Id -> (entry point, keyword arguments).
ADAPTER_IDS: dict[str, tuple[str, dict[str, Any]]] = {
    f"{NAMESPACE}/TextWorld-v0": ("trl_embodied.envs.textworld:make_textworld_env", {}),
    f"{NAMESPACE}/BabyAI-v0": (_BABYAI, {}),
    f"{NAMESPACE}/ScienceWorld-v0": ("trl_embodied.envs.scienceworld:make_scienceworld_env", {}),
    **{f"{NAMESPACE}/BabyAI-{level}-v0": (_BABYAI, {"level": level}) for level in BABYAI_LEVELS},
}


def register_envs() -> None:
    """Register every built-in task and adapter with gymnasium (idempotent)."""
    entries = dict(ADAPTER_IDS) | _registry()
    for env_id, (entry_point, kwargs) in entries.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=entry_point, kwargs=kwargs)


def make_env(env_id: str, **kwargs: Any) -> gymnasium.Env:
    """``gymnasium.make`` for trl_embodied tasks; the ``trl_embodied/`` prefix may be left out.

    Raises:
        ValueError: ``env_id`` names no registered environment; the message lists the built-in ids.
    """
    if not isinstance(env_id, str):
        raise TypeError(f"env_id must be a str such as {ENV_IDS[0]!r}, got {type(env_id).__name__}.")
    register_envs()
    candidates = [env_id, f"{NAMESPACE}/{env_id}"]
    for candidate in candidates:
        if candidate in gymnasium.registry:
            return gymnasium.make(candidate, **kwargs)
    raise ValueError(
        f"unknown environment id {env_id!r}. Built-in ids: {', '.join(ENV_IDS)}. Any id registered with "
        "gymnasium also works."
    )
