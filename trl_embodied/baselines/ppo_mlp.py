"""PPO from scratch with an MLP on the symbolic observations: the paper's non-LLM baseline.

One readable file in the manner of CleanRL's ``ppo.py``: the config names every hyperparameter, the
training loop reads top to bottom (rollout, GAE, K epochs of clipped PPO over shuffled minibatches). The
PPO arithmetic is the trainer's own (:mod:`trl_embodied.trainer.ppo`), macro steps included (gamma^k), and
the logged keys are the trainer's, so the two methods' learning curves overlay.

The policy sees ``info["symbolic_observation"]`` and picks among the env's ``action_space.n`` vocabulary
actions, those not offered now masked out (``info["action_mask"]``), and steps the chosen action's index
among the valid ones (``info["action_ids"]``): each output unit means the same action in every state.

    from trl_embodied.baselines import MLPPPOConfig, train_mlp_ppo
    model, history = train_mlp_ppo(MLPPPOConfig(env_id="trl_embodied/Overcooked-TomatoSalad-v0"))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from trl_embodied.envs.registration import make_env
from trl_embodied.trainer.ppo import (
    clipped_policy_loss,
    clipped_value_loss,
    compute_gae,
    explained_variance,
    next_state_values,
    normalize_advantages,
)


@dataclass
class MLPPPOConfig:
    """Hyperparameters of PPO-MLP. Defaults: CleanRL's discrete PPO (4 epochs x 4 minibatches, Adam 1e-3
    with linear decay) on TWOSOME's rollout shape (4 envs x 32 steps), so both methods see the same data
    per iteration."""

    env_id: str = "trl_embodied/Overcooked-TomatoSalad-v0"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    total_env_steps: int = 10_000  # decision steps over all envs
    num_envs: int = 4
    rollout_steps: int = 32  # decision steps per env per iteration
    learning_rate: float = 1e-3
    anneal_lr: bool = True  # linear decay to 0 over the run
    gamma: float = 0.99  # per primitive step
    gae_lambda: float = 0.95
    num_minibatches: int = 4
    num_ppo_epochs: int = 4
    clip_range: float = 0.2
    clip_range_value: float | None = 0.2
    normalize_advantages: bool = True
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = None
    hidden_sizes: tuple[int, ...] = (64, 64)
    # Warm start: behaviour cloning of the planner's episodes (seeds 0..N-1) before PPO, the baseline's
    # counterpart of the LLM's SFT warm start on the same demonstrations. 0: a cold start.
    demonstration_episodes: int = 0
    bc_epochs: int = 200  # full-batch steps of cross-entropy on the demonstrations
    bc_learning_rate: float = 1e-3
    eval_every: int | None = None  # env steps between greedy evaluations (None: at the end only)
    eval_episodes: int = 10
    seed: int = 0

    def __post_init__(self):
        for name in ("total_env_steps", "num_envs", "rollout_steps", "num_minibatches", "num_ppo_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}; it must be at least 1.")
        if self.demonstration_episodes < 0 or self.bc_epochs < 1:
            raise ValueError(
                f"demonstration_episodes={self.demonstration_episodes}, bc_epochs={self.bc_epochs}; use "
                "demonstration_episodes >= 0 (0: no warm start) and bc_epochs >= 1."
            )
        if (self.num_envs * self.rollout_steps) % self.num_minibatches:
            raise ValueError(
                f"num_envs * rollout_steps = {self.num_envs * self.rollout_steps} does not split into "
                f"num_minibatches={self.num_minibatches}; pick a divisor."
            )

    @property
    def iterations(self) -> int:
        return -(-self.total_env_steps // (self.num_envs * self.rollout_steps))


def _layer(size_in: int, size_out: int, std: float = np.sqrt(2)) -> nn.Linear:
    """CleanRL's initialization: orthogonal weights, zero bias."""
    layer = nn.Linear(size_in, size_out)
    nn.init.orthogonal_(layer.weight, std)
    nn.init.zeros_(layer.bias)
    return layer


def _mlp(size_in: int, hidden_sizes: Sequence[int], size_out: int, output_std: float) -> nn.Sequential:
    sizes = [size_in, *hidden_sizes]
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [_layer(a, b), nn.Tanh()]
    return nn.Sequential(*layers, _layer(sizes[-1], size_out, output_std))


class MLPActorCritic(nn.Module):
    """Separate actor and critic MLPs (tanh) on a symbolic observation ``[B, obs_size]``, with masking."""

    uses_symbolic_observation = True  # evaluate_policy feeds it info["symbolic_observation"]

    def __init__(self, obs_size: int, num_actions: int, hidden_sizes: Sequence[int] = (64, 64)):
        super().__init__()
        self.actor = _mlp(obs_size, hidden_sizes, num_actions, output_std=0.01)
        self.critic = _mlp(obs_size, hidden_sizes, 1, output_std=1.0)

    def forward(self, observations: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``([B, A] log-policy, -inf at invalid actions; [B] values)``."""
        logits = self.actor(observations).masked_fill(~masks.bool(), float("-inf"))
        return logits.log_softmax(-1), self.critic(observations).squeeze(-1)

    @torch.no_grad()
    def symbolic_probabilities(self, observations: np.ndarray, masks: np.ndarray) -> torch.Tensor:
        """``[B, A]`` action probabilities, 0 at invalid actions (what :func:`evaluate_policy` needs)."""
        log_policy, _ = self(torch.as_tensor(observations), torch.as_tensor(masks))
        return log_policy.exp()


def _entropy(log_policy: torch.Tensor) -> torch.Tensor:
    """``[B]`` entropy of masked distributions (the -inf entries contribute 0)."""
    probs = log_policy.exp()
    return -(probs * log_policy.masked_fill(probs == 0, 0.0)).sum(-1)


def planner_demonstrations(
    make: Callable[[], Any], episodes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The planner's episodes from seeds ``0..episodes-1`` as ``([S, obs] symbolic observations, [S, A] bool
    masks, [S] vocabulary ids of the expert's actions)``, S the number of decision steps."""
    observations, masks, actions = [], [], []
    env = make()
    for seed in range(episodes):
        _, info = env.reset(seed=seed)
        for action in env.unwrapped.plan():
            observations.append(info["symbolic_observation"])
            masks.append(info["action_mask"])
            actions.append(info["action_ids"][action])
            *_, info = env.step(action)
    env.close()
    return (
        torch.as_tensor(np.stack(observations)),
        torch.as_tensor(np.stack(masks)).bool(),
        torch.as_tensor(actions),
    )


def behaviour_clone(
    model: MLPActorCritic,
    demonstrations: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    epochs: int,
    learning_rate: float,
) -> float:
    """Fit the actor to the demonstrations by cross-entropy (full batch, Adam); the critic is left as it
    is, as the LLM's SFT leaves the value head. Returns the final loss."""
    observations, masks, actions = demonstrations
    optimizer = torch.optim.Adam(model.actor.parameters(), lr=learning_rate)
    for _ in range(epochs):
        log_policy, _ = model(observations, masks)
        loss = -log_policy.gather(1, actions[:, None]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss.item()


def train_mlp_ppo(
    config: MLPPPOConfig,
    env_factory: Callable[[], Any] | None = None,
    progress: bool = True,
) -> tuple[MLPActorCritic, list[dict[str, float]]]:
    """Train PPO-MLP; return the model and its history (one dict per iteration, the trainer's keys, plus
    ``eval_*`` entries at each evaluation)."""
    from trl_embodied.evaluation import evaluate_policy

    make = env_factory or (lambda: make_env(config.env_id, **config.env_kwargs))
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    envs = [make() for _ in range(config.num_envs)]
    obs_size = envs[0].get_wrapper_attr("symbolic_observation_space").shape[0]
    num_actions = int(envs[0].action_space.n)
    model = MLPActorCritic(obs_size, num_actions, config.hidden_sizes)
    if config.demonstration_episodes:
        demonstrations = planner_demonstrations(make, config.demonstration_episodes)
        behaviour_clone(model, demonstrations, config.bc_epochs, config.bc_learning_rate)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, eps=1e-5)

    T, N = config.rollout_steps, config.num_envs
    infos = [env.reset(seed=config.seed + i)[1] for i, env in enumerate(envs)]
    episode_returns, episode_lengths = np.zeros(N), np.zeros(N, dtype=int)
    history: list[dict[str, float]] = []
    env_steps, next_eval = 0, config.eval_every

    def evaluate() -> None:
        result = evaluate_policy(
            model, make, config.eval_episodes, seed=config.seed + 10_000, progress=False, batch_size=N
        )
        history.append({"env_steps": env_steps, **result.metrics(prefix="eval_")})

    evaluate()
    bar = tqdm(total=config.iterations * T * N, desc="PPO-MLP", unit="step", disable=not progress)
    for iteration in range(config.iterations):
        start = time.perf_counter()
        if config.anneal_lr:
            optimizer.param_groups[0]["lr"] = config.learning_rate * (1.0 - iteration / config.iterations)

        # -- rollout: T decision steps in each of N envs ------------------------------------------------
        observations = torch.zeros(T, N, obs_size)
        masks = torch.zeros(T, N, num_actions, dtype=torch.bool)
        actions = torch.zeros(T, N, dtype=torch.long)
        logprobs, rewards, values, next_values = (torch.zeros(T, N) for _ in range(4))
        terminated, truncated = torch.zeros(T, N, dtype=torch.bool), torch.zeros(T, N, dtype=torch.bool)
        primitive_steps = torch.ones(T, N)
        finished: list[tuple[float, int, bool]] = []
        for t in range(T):
            observations[t] = torch.as_tensor(np.stack([i["symbolic_observation"] for i in infos]))
            masks[t] = torch.as_tensor(np.stack([i["action_mask"] for i in infos])).bool()
            with torch.no_grad():
                log_policy, values[t] = model(observations[t], masks[t])
            actions[t] = torch.multinomial(log_policy.exp(), 1, generator=generator).squeeze(-1)
            logprobs[t] = log_policy.gather(1, actions[t][:, None]).squeeze(-1)
            for n, env in enumerate(envs):
                # The policy picks from the vocabulary; the env takes the index among the valid actions.
                _, reward, term, trunc, info = env.step(infos[n]["action_ids"].index(int(actions[t, n])))
                rewards[t, n], terminated[t, n], truncated[t, n] = reward, term, trunc and not term
                primitive_steps[t, n] = info.get("primitive_steps", 1)
                episode_returns[n] += reward
                episode_lengths[n] += 1
                if term or trunc:
                    if trunc and not term:  # bootstrap from the state the time limit cut off
                        with torch.no_grad():
                            next_values[t, n] = model.critic(torch.as_tensor(info["symbolic_observation"]))[0]
                    finished.append((episode_returns[n], int(episode_lengths[n]), bool(info["success"])))
                    episode_returns[n], episode_lengths[n] = 0.0, 0
                    _, info = env.reset()
                infos[n] = info
        with torch.no_grad():
            bootstrap = model.critic(torch.as_tensor(np.stack([i["symbolic_observation"] for i in infos])))
        next_values = next_state_values(values, next_values, bootstrap.squeeze(-1), terminated | truncated)
        advantages, returns = compute_gae(
            rewards,
            values,
            next_values,
            terminated,
            truncated,
            primitive_steps,
            gamma=config.gamma,
            gae_lambda=config.gae_lambda,
        )
        env_steps += T * N

        # -- update: K epochs over shuffled minibatches -------------------------------------------------
        b_obs, b_masks = observations.reshape(T * N, -1), masks.reshape(T * N, -1)
        b_actions, b_logprobs = actions.flatten(), logprobs.flatten()
        b_advantages, b_returns, b_values = advantages.flatten(), returns.flatten(), values.flatten()
        minibatch_size = T * N // config.num_minibatches
        stats: dict[str, list[float]] = {
            k: []
            for k in (
                "loss/policy",
                "loss/value",
                "policy/entropy",
                "policy/approx_kl",
                "policy/clip_fraction",
            )
        }
        stop = False
        for _ in range(config.num_ppo_epochs):
            order = torch.randperm(T * N, generator=generator)
            for begin in range(0, T * N, minibatch_size):
                index = order[begin : begin + minibatch_size]
                log_policy, new_values = model(b_obs[index], b_masks[index])
                new_logprobs = log_policy.gather(1, b_actions[index][:, None]).squeeze(-1)
                minibatch_advantages = b_advantages[index]
                if config.normalize_advantages:
                    minibatch_advantages = normalize_advantages(minibatch_advantages)
                policy = clipped_policy_loss(
                    new_logprobs, b_logprobs[index], minibatch_advantages, config.clip_range
                )
                value_loss = clipped_value_loss(
                    new_values, b_values[index], b_returns[index], config.clip_range_value
                )
                entropy = _entropy(log_policy).mean()
                loss = policy.loss + config.vf_coef * value_loss - config.ent_coef * entropy
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                for key, value in zip(
                    stats,
                    (policy.loss, value_loss, entropy, policy.approx_kl, policy.clip_fraction),
                    strict=True,
                ):
                    stats[key].append(float(value.detach()))
                if config.target_kl is not None and policy.approx_kl > config.target_kl:
                    stop = True
                    break
            if stop:
                break

        row = {"env_steps": env_steps, **{k: float(np.mean(v)) for k, v in stats.items()}}
        row["value/explained_variance"] = explained_variance(b_values, b_returns)
        row["env_steps_per_second"] = T * N / (time.perf_counter() - start)
        if finished:
            row["episode/return"] = float(np.mean([r for r, _, _ in finished]))
            row["episode/length"] = float(np.mean([length for _, length, _ in finished]))
            row["episode/success_rate"] = float(np.mean([s for _, _, s in finished]))
            row["episode/count"] = float(len(finished))
        history.append(row)
        bar.update(T * N)
        if next_eval is not None and env_steps >= next_eval:
            evaluate()
            next_eval += config.eval_every
    bar.close()
    if history[-1].get("env_steps") != env_steps or "eval_success_rate" not in history[-1]:
        evaluate()
    return model, history
