"""Text environments: the contract, the built-in tasks and their gymnasium registration."""

from trl_embodied.envs.core import (
    ActionHistory,
    EpisodeReplay,
    SymbolicObservation,
    TextEnv,
    TextEnvWrapper,
    Transition,
)
from trl_embodied.envs.household import HouseholdEnv, HouseholdTask, register_household_task
from trl_embodied.envs.overcooked import OvercookedEnv, OvercookedTask
from trl_embodied.envs.registration import ENV_IDS, make_env, register_envs

register_envs()

__all__ = [
    "ActionHistory",
    "ENV_IDS",
    "EpisodeReplay",
    "HouseholdEnv",
    "HouseholdTask",
    "OvercookedEnv",
    "OvercookedTask",
    "SymbolicObservation",
    "TextEnv",
    "TextEnvWrapper",
    "Transition",
    "make_env",
    "register_envs",
    "register_household_task",
]
