"""trl-embodied: train language models to act in text environments with PPO over valid actions.

``import trl_embodied`` registers the built-in tasks with gymnasium
(``gymnasium.make("trl_embodied/Overcooked-TomatoSalad-v0")``).
"""

__version__ = "0.1.0.dev0"

from trl_embodied.callbacks import LogEpisodesCallback
from trl_embodied.envs import (
    ENV_IDS,
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

__all__ = [
    "EmbodiedPPOConfig",
    "EmbodiedPPOTrainer",
    "EvaluationResult",
    "evaluate_policy",
    "ExpertAgreement",
    "expert_agreement",
    "plot_learning_curves",
    "LogEpisodesCallback",
    "EmbodiedGRPOEnvironment",
    "grpo_environment_factory",
    "grpo_prompts",
    "collect_trajectories",
    "to_prompt_completion",
    "ActionScorer",
    "ActionScores",
    "memoized_states",
    "ActorCriticOutput",
    "EmbodiedActorCritic",
    "ValueHead",
    "default_lora_config",
    "load_base_model",
    "ENV_IDS",
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
