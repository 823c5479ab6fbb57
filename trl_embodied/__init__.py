"""trl-embodied: train language models to act in text environments with PPO over valid actions.

``import trl_embodied`` registers the built-in tasks with gymnasium
(``gymnasium.make("trl_embodied/Overcooked-TomatoSalad-v0")``).
"""

__version__ = "0.1.0.dev0"

from typing import TYPE_CHECKING

# The environments are light (gymnasium and numpy) and register their ids on import; everything else
# loads on first use, as TRL and transformers do, so `import trl_embodied` and the environments need
# neither torch nor TRL, and print nothing.
from trl_embodied.envs import (
    ENV_IDS,
    ActionHistory,
    EpisodeReplay,
    HouseholdEnv,
    HouseholdTask,
    OvercookedEnv,
    OvercookedTask,
    SymbolicObservation,
    TextEnv,
    TextEnvWrapper,
    make_env,
    register_household_task,
)

#: Public name -> the module that defines it, imported when the name is first used.
_LAZY_NAMES = {
    "LogEpisodesCallback": "trl_embodied.callbacks",
    "StopAtSuccessCallback": "trl_embodied.callbacks",
    "EvaluationResult": "trl_embodied.evaluation",
    "ExpertAgreement": "trl_embodied.evaluation",
    "evaluate_policy": "trl_embodied.evaluation",
    "expert_agreement": "trl_embodied.evaluation",
    "EmbodiedGRPOEnvironment": "trl_embodied.grpo",
    "grpo_environment_factory": "trl_embodied.grpo",
    "grpo_prompts": "trl_embodied.grpo",
    "ActorCriticOutput": "trl_embodied.modeling",
    "EmbodiedActorCritic": "trl_embodied.modeling",
    "ValueHead": "trl_embodied.modeling",
    "default_lora_config": "trl_embodied.modeling",
    "load_base_model": "trl_embodied.modeling",
    "plot_learning_curves": "trl_embodied.plotting",
    "ActionScorer": "trl_embodied.scoring",
    "ActionScores": "trl_embodied.scoring",
    "memoized_states": "trl_embodied.scoring",
    "VLLMActionScorer": "trl_embodied.vllm_scoring",
    "VLLMClient": "trl_embodied.vllm_scoring",
    "EmbodiedPPOConfig": "trl_embodied.trainer",
    "EmbodiedPPOTrainer": "trl_embodied.trainer",
    "collect_trajectories": "trl_embodied.trajectories",
    "to_prompt_completion": "trl_embodied.trajectories",
}

if TYPE_CHECKING:
    from trl_embodied.callbacks import LogEpisodesCallback, StopAtSuccessCallback
    from trl_embodied.evaluation import EvaluationResult, ExpertAgreement, evaluate_policy, expert_agreement
    from trl_embodied.grpo import EmbodiedGRPOEnvironment, grpo_environment_factory, grpo_prompts
    from trl_embodied.modeling import (
        ActorCriticOutput,
        EmbodiedActorCritic,
        ValueHead,
        default_lora_config,
        load_base_model,
    )
    from trl_embodied.plotting import plot_learning_curves
    from trl_embodied.scoring import ActionScorer, ActionScores, memoized_states
    from trl_embodied.trainer import EmbodiedPPOConfig, EmbodiedPPOTrainer
    from trl_embodied.trajectories import collect_trajectories, to_prompt_completion
    from trl_embodied.vllm_scoring import VLLMActionScorer, VLLMClient


def __getattr__(name: str):
    if name not in _LAZY_NAMES:
        raise AttributeError(f"module 'trl_embodied' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_NAMES})


__all__ = [
    "__version__",
    "EmbodiedPPOConfig",
    "EmbodiedPPOTrainer",
    "EvaluationResult",
    "evaluate_policy",
    "ExpertAgreement",
    "expert_agreement",
    "plot_learning_curves",
    "LogEpisodesCallback",
    "StopAtSuccessCallback",
    "EmbodiedGRPOEnvironment",
    "grpo_environment_factory",
    "grpo_prompts",
    "collect_trajectories",
    "to_prompt_completion",
    "ActionScorer",
    "ActionScores",
    "memoized_states",
    "VLLMActionScorer",
    "VLLMClient",
    "ActorCriticOutput",
    "EmbodiedActorCritic",
    "ValueHead",
    "default_lora_config",
    "load_base_model",
    "ENV_IDS",
    "ActionHistory",
    "EpisodeReplay",
    "HouseholdEnv",
    "HouseholdTask",
    "OvercookedEnv",
    "OvercookedTask",
    "SymbolicObservation",
    "TextEnv",
    "TextEnvWrapper",
    "make_env",
    "register_household_task",
]
