"""A bridge to TRL's ``GRPOTrainer``: any trl_embodied env served as an ``environment_factory``.

The same task then trains two ways: by valid-action scoring with :class:`~trl_embodied.EmbodiedPPOTrainer`
(the policy can only pick a valid action) and by free generation with GRPO, where the model reads the
observation and the valid actions as text and acts by calling the tool ``act(action)``; the episode's
return is the reward (``get_reward``).

```python
>>> from trl import GRPOConfig, GRPOTrainer
>>> from trl_embodied.grpo import grpo_environment_factory, grpo_prompts
>>> env_id = "trl_embodied/Overcooked-TomatoSalad-v0"
>>> trainer = GRPOTrainer(
...     model="Qwen/Qwen3-0.6B",  # a chat model whose template renders tool calls
...     args=GRPOConfig(max_tool_calling_iterations=20),
...     train_dataset=grpo_prompts(episodes=256),
...     environment_factory=grpo_environment_factory(env_id),
... )
```
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import datasets

from trl_embodied.evaluation import EnvSource, make_env_factory

INSTRUCTION = (
    "You act in a text environment. Each observation ends with the actions you can take. Call the tool `act` "
    "with one of them, exactly as written, until the task is done."
)


class EmbodiedGRPOEnvironment:
    """One trl_embodied env behind GRPOTrainer's environment protocol: ``reset`` returns the observation text,
    the tool ``act`` takes a valid action's text, ``get_reward`` gives the episode's return so far.

    An ``act`` whose text is not among the valid actions does not step the env: it answers with the valid
    actions, so the model can correct itself (GRPO's advantage then prices the wasted call).
    """

    def __init__(self, env: EnvSource, **env_kwargs: Any):
        self._env = make_env_factory(env, **env_kwargs)()
        self._valid_actions: list[str] = []
        self._return = 0.0
        self._done = True
        self._success = False

    def _observation(self, prompt: str) -> str:
        listing = "\n".join(f"- {action}" for action in self._valid_actions)
        return f"{prompt}\nValid actions:\n{listing}"

    def reset(self, seed: int | None = None, **example: Any) -> str:
        """Start an episode (``seed`` from the dataset row, if it has one); return the first observation."""
        prompt, info = self._env.reset(seed=None if seed is None else int(seed))
        self._valid_actions = list(info["valid_actions"])
        self._return, self._done, self._success = 0.0, False, False
        return self._observation(prompt)

    def act(self, action: str) -> str:
        """Take one of the valid actions listed in the latest observation.

        Args:
            action: The action's text, exactly as listed under "Valid actions".

        Returns:
            The next observation with its valid actions, or how the episode ended.
        """
        if self._done:
            return "The episode is over; no more actions are taken."
        text = action.strip()
        if text not in self._valid_actions:
            listing = "; ".join(self._valid_actions)
            return f"'{text}' is not a valid action now. Choose one of: {listing}."
        prompt, reward, terminated, truncated, info = self._env.step(self._valid_actions.index(text))
        self._return += float(reward)
        if terminated or truncated:
            self._done, self._success = True, bool(info.get("success", False))
            return f"The episode is over: {'success' if self._success else 'the task was not completed'}."
        self._valid_actions = list(info["valid_actions"])
        return self._observation(prompt)

    def get_reward(self) -> float:
        """The episode's return so far: GRPOTrainer reads it once the completion is done."""
        return self._return


def grpo_environment_factory(env: EnvSource, **env_kwargs: Any) -> Callable[[], EmbodiedGRPOEnvironment]:
    """``environment_factory`` for ``GRPOTrainer``: a new :class:`EmbodiedGRPOEnvironment` per rollout."""
    make_env_factory(env, **env_kwargs)  # fail here on a bad env argument, not inside the trainer

    def factory() -> EmbodiedGRPOEnvironment:
        return EmbodiedGRPOEnvironment(env, **env_kwargs)

    return factory


def grpo_prompts(episodes: int, *, seed: int = 0, instruction: str = INSTRUCTION) -> datasets.Dataset:
    """GRPO's training rows: a conversational ``prompt`` (the instruction; ``reset`` appends the observation)
    and the ``seed`` each episode resets with."""
    if episodes < 1:
        raise ValueError(f"episodes={episodes}; give at least one episode.")
    return datasets.Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": instruction + "\n\n"}] for _ in range(episodes)],
            "seed": list(range(seed, seed + episodes)),
        }
    )
