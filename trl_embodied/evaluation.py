"""Evaluating policies on text environments: success rate, return, episode length."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np
import torch
from tqdm.auto import tqdm

from trl_embodied.envs.registration import make_env
from trl_embodied.scoring import ActionScorer, memoized_states
from trl_embodied.vllm_scoring import VLLMActionScorer

#: ``policy(prompts, valid_actions) -> [B, K]`` action probabilities (0 at padding), or a scorer-like object.
Policy = Callable[[Sequence[str], Sequence[Sequence[str]]], torch.Tensor]
EnvSource = str | Callable[[], gymnasium.Env]


@dataclass
class EvaluationResult:
    success_rate: float
    mean_return: float  # undiscounted
    mean_length: float  # decision steps
    optimal_return_ratio: float | None  # mean return / the planner's mean return, where there is a planner
    episodes: list[dict[str, Any]] = field(default_factory=list)  # seed, return, length, success

    def metrics(self, prefix: str = "") -> dict[str, float]:
        metrics = {
            f"{prefix}success_rate": self.success_rate,
            f"{prefix}return": self.mean_return,
            f"{prefix}episode_length": self.mean_length,
        }
        if self.optimal_return_ratio is not None:
            metrics[f"{prefix}optimal_return_ratio"] = self.optimal_return_ratio
        return metrics


#: ``policy="planner"``: the env's own optimal planner (``TextEnv.plan``), the scripted expert.
PLANNER = "planner"
#: ``policy="uniform"``: every valid action equally likely, the uninformed control (greedily it takes the
#: first listed action; with ``no_repeat`` it tries a state's actions in their listed order).
UNIFORM = "uniform"


#: How to play a policy in an evaluation: the keyword arguments of :func:`evaluate_policy` per named mode.
#: Greedy play is the figure of merit; sampled play is the policy as trained; greedy play without repeats
#: breaks the loops a memoryless argmax can fall into (see ``no_repeat`` in :func:`play_episodes`).
PLAY_MODES: dict[str, dict[str, bool]] = {
    "greedy": {"greedy": True},
    "sampled": {"greedy": False},
    "greedy_no_repeat": {"greedy": True, "no_repeat": True},
}


def action_probabilities(
    policy,
    prompts: Sequence[str],
    actions: Sequence[Sequence[str]],
    infos: Sequence[dict[str, Any]],
    envs: Sequence[gymnasium.Env] = (),
    cache: dict | None = None,
) -> torch.Tensor:
    """``[B, K]`` probabilities from an EmbodiedActorCritic, an ActionScorer or VLLMActionScorer, a symbolic-observation policy
    (the MLP baseline, K = the action space's size), the planner (one-hot on its next action; needs
    ``envs``), the uniform policy or a plain callable.

    ``cache``: an LLM policy's probabilities per state, kept by the caller while the policy is fixed
    (see :func:`~trl_embodied.scoring.memoized_states`); a revisited state is not scored again.
    """
    if isinstance(policy, str):
        if policy not in (PLANNER, UNIFORM):
            raise ValueError(
                f"policy={policy!r}; the policies named by a string are {PLANNER!r} and {UNIFORM!r}."
            )
        probs = torch.zeros(len(prompts), max(len(a) for a in actions))
        if policy == UNIFORM:
            for i, valid in enumerate(actions):
                probs[i, : len(valid)] = 1.0 / len(valid)
            return probs
        for i, env in enumerate(envs):
            if not hasattr(env.unwrapped, "plan"):
                raise TypeError(f"{type(env.unwrapped).__name__} has no planner (TextEnv.plan).")
            probs[i, env.unwrapped.plan()[0]] = 1.0
        return probs
    if getattr(policy, "uses_symbolic_observation", False):
        # Such a policy answers over the env's action vocabulary; valid action j is vocabulary action
        # info["action_ids"][j].
        vocabulary_probs = policy.symbolic_probabilities(
            np.stack([info["symbolic_observation"] for info in infos]),
            np.stack([info["action_mask"] for info in infos]),
        )
        probs = torch.zeros(len(infos), max(len(a) for a in actions))
        for row, info in enumerate(infos):
            probs[row, : len(info["action_ids"])] = vocabulary_probs[row, info["action_ids"]]
        return probs
    scorer = getattr(policy, "scorer", policy)
    if isinstance(scorer, (ActionScorer, VLLMActionScorer)):

        def score(new_prompts: list[str], new_actions: list[list[str]]) -> list[torch.Tensor]:
            probs = scorer.score(new_prompts, new_actions).probs.float()
            return [probs[i, : len(a)] for i, a in enumerate(new_actions)]

        rows = memoized_states({} if cache is None else cache, prompts, actions, score)
        return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
    return policy(prompts, actions)


def make_env_factory(env: EnvSource, **env_kwargs: Any) -> Callable[[], gymnasium.Env]:
    if isinstance(env, str):
        return lambda: make_env(env, **env_kwargs)
    if callable(env):
        return env
    raise TypeError(f"env must be a gymnasium id or a factory returning an env, got {type(env).__name__}.")


def planner_return(env: gymnasium.Env, seed: int) -> float | None:
    """The undiscounted return of the env's planner from ``reset(seed=seed)``, or None without a planner."""
    if not hasattr(env.unwrapped, "plan"):
        return None
    env.reset(seed=seed)
    total = 0.0
    for action in env.unwrapped.plan():
        total += env.step(action)[1]
    return total


@torch.no_grad()
def play_episodes(
    policy,
    env: EnvSource,
    episodes: int,
    *,
    greedy: bool = True,
    no_repeat: bool = False,
    seed: int = 0,
    batch_size: int = 8,
    generator: torch.Generator | None = None,
    progress: bool = True,
    record_steps: bool = False,
    env_kwargs: dict[str, Any] | None = None,
    description: str = "playing",
) -> tuple[list[dict[str, Any]], gymnasium.Env]:
    """Play ``episodes`` episodes (seeds ``seed .. seed + episodes - 1``), ``batch_size`` envs in lockstep
    scored in one batch. Returns the episodes sorted by seed (``seed``, ``return``, ``length``,
    ``success``, and with ``record_steps`` their ``steps``: prompt, valid actions, action, probabilities,
    reward) and one of the envs (for the planner's reference return).

    ``no_repeat``: within an episode, choose only among the valid actions taken least often so far from the
    current state (prompt and valid actions), the policy's probabilities renormalized over them: no action
    is repeated from a state while another is untried there, and once all were tried they take turns in
    the policy's order. A memoryless greedy policy whose argmax leads back to the same state (a no-op, or a
    cycle such as opening and closing a door) otherwise repeats it to the step limit; this is the
    decision-level counterpart of ``no_repeat_ngram_size`` in text generation.
    """
    if episodes < 1:
        raise ValueError(f"episodes={episodes}; play at least one episode.")
    factory = make_env_factory(env, **(env_kwargs or {}))
    envs = [factory() for _ in range(min(batch_size, episodes))]
    seeds = iter(range(seed, seed + episodes))
    records: list[dict[str, Any]] = []

    def start(slot: gymnasium.Env, episode_seed: int) -> dict[str, Any]:
        prompt, info = slot.reset(seed=episode_seed)
        return {
            "seed": episode_seed,
            "prompt": prompt,
            "info": info,
            "return": 0.0,
            "length": 0,
            "steps": [],
            "tried": {},  # state -> how often each action was taken from it this episode (for no_repeat)
        }

    def state_key(episode: dict[str, Any]) -> tuple:
        return episode["prompt"], tuple(episode["info"]["valid_actions"])

    running: list[dict[str, Any] | None] = [start(slot, next(seeds)) for slot in envs]  # None: seeds ran out
    state_cache: dict = {}  # the policy is fixed while it plays: each state is scored once
    bar = tqdm(total=episodes, desc=description, disable=not progress, leave=False)
    while any(r is not None for r in running):
        active = [i for i, r in enumerate(running) if r is not None]
        infos = [running[i]["info"] for i in active]
        probs = action_probabilities(
            policy,
            [running[i]["prompt"] for i in active],
            [info["valid_actions"] for info in infos],
            infos,
            [envs[i] for i in active],
            state_cache,
        ).float()
        if no_repeat:
            probs = probs.clone()  # the policy's own tensor stays as it returned it
            # Each row's tries per action from its current state; the chosen action is counted below.
            tries = [
                running[i]["tried"].setdefault(state_key(running[i]), torch.zeros(len(info["valid_actions"])))
                for i, info in zip(active, infos, strict=True)
            ]
            for row, counts in enumerate(tries):
                least_tried = torch.zeros_like(probs[row])
                least_tried[: len(counts)] = (counts == counts.min()).float()
                masked = probs[row] * least_tried
                if masked.sum() > 0:  # else the policy gives them no mass: leave it be
                    probs[row] = masked / masked.sum()
        choices = probs.argmax(-1) if greedy else torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        for row, (i, action) in enumerate(zip(active, choices.tolist(), strict=True)):
            episode = running[i]
            valid = list(episode["info"]["valid_actions"])
            if no_repeat:
                tries[row][action] += 1
            prompt, reward, terminated, truncated, info = envs[i].step(action)
            if record_steps:
                episode["steps"].append(
                    {
                        "prompt": episode["prompt"],
                        "valid_actions": valid,
                        "action": action,
                        "action_probs": probs[row, : len(valid)].tolist(),
                        "reward": float(reward),
                    }
                )
            episode.update(prompt=prompt, info=info)
            episode["return"] += reward
            episode["length"] += 1
            if terminated or truncated:
                records.append(
                    {
                        "seed": episode["seed"],
                        "return": episode["return"],
                        "length": episode["length"],
                        "success": bool(info["success"]),
                        **({"steps": episode["steps"]} if record_steps else {}),
                    }
                )
                bar.update(1)
                next_seed = next(seeds, None)
                running[i] = None if next_seed is None else start(envs[i], next_seed)
    bar.close()
    records.sort(key=lambda r: r["seed"])
    return records, envs[0]


def evaluate_policy(
    policy,
    env: EnvSource,
    episodes: int = 10,
    *,
    greedy: bool = True,
    no_repeat: bool = False,
    seed: int = 0,
    batch_size: int = 8,
    generator: torch.Generator | None = None,
    progress: bool = True,
    env_kwargs: dict[str, Any] | None = None,
) -> EvaluationResult:
    """Play ``episodes`` episodes (seeds ``seed .. seed + episodes - 1``) and summarize them.

    Args:
        policy: an :class:`~trl_embodied.EmbodiedActorCritic`, an :class:`~trl_embodied.ActionScorer` (a
            zero-shot base model: the SayCan-style baseline) or a :class:`~trl_embodied.VLLMActionScorer`
            (the same, scored by a vLLM engine or server), the MLP baseline
            (:class:`~trl_embodied.baselines.MLPActorCritic`, which reads ``info["symbolic_observation"]``),
            ``"planner"`` (the env's optimal planner) or ``policy(prompts, actions) -> [B, K] probs``.
        env: a gymnasium id or a factory; ``batch_size`` copies run in lockstep, scored in one batch.
        greedy: take the most probable action (else sample with ``generator``).
        no_repeat: never repeat an action from a state it was taken from in the same episode while another
            is left (see :func:`play_episodes`): greedy play that cannot loop.
    """
    records, reference_env = play_episodes(
        policy,
        env,
        episodes,
        greedy=greedy,
        no_repeat=no_repeat,
        seed=seed,
        batch_size=batch_size,
        generator=generator,
        progress=progress,
        env_kwargs=env_kwargs,
        description="evaluating",
    )
    mean_return = float(np.mean([r["return"] for r in records]))
    optimal = [planner_return(reference_env, r["seed"]) for r in records]
    ratio = None
    if all(o is not None for o in optimal) and np.mean(optimal) != 0:
        ratio = mean_return / float(np.mean(optimal))
    return EvaluationResult(
        success_rate=float(np.mean([r["success"] for r in records])),
        mean_return=mean_return,
        mean_length=float(np.mean([r["length"] for r in records])),
        optimal_return_ratio=ratio,
        episodes=records,
    )


@dataclass
class ExpertAgreement:
    """How much a policy favours the planner's action on the states of the planner's own episodes."""

    states: int  # decision steps of the planner's episodes
    expert_probability: float  # mean probability the policy gives the planner's action
    uniform_probability: float  # the same for the uniform policy: mean 1 / number of valid actions
    argmax_agreement: float  # share of the states where the policy's most probable action is the planner's

    @property
    def lift(self) -> float:
        """``expert_probability / uniform_probability``: 1.0 is no prior at all."""
        return self.expert_probability / self.uniform_probability


@torch.no_grad()
def expert_agreement(
    policy, env: EnvSource, episodes: int = 1, *, seed: int = 0, batch_size: int = 8, progress: bool = False
) -> ExpertAgreement:
    """Score the states of the planner's episodes (seeds ``seed .. seed + episodes - 1``) with ``policy``.

    A measure of a base model's prior before any training, in a few forward passes: how much more than the
    uniform policy it favours the expert's action where the expert acts. Where it is near the uniform
    policy's, the LLM policy starts without the head start TWOSOME's sample efficiency comes from.

    Args:
        policy: an :class:`~trl_embodied.ActionScorer` (a base model), an
            :class:`~trl_embodied.EmbodiedActorCritic`, ``"uniform"`` or ``policy(prompts, actions) -> [B, K]``:
            a policy that reads the text (the states are replayed as prompts and valid actions).
        env: a gymnasium id or a factory of an env with a planner (:meth:`~trl_embodied.TextEnv.plan`).
    """
    if isinstance(policy, str) and policy == PLANNER:
        raise ValueError(
            "the planner is the expert itself; pass a model's policy, or 'uniform' for the control."
        )
    records, _ = play_episodes(
        PLANNER, env, episodes, seed=seed, record_steps=True, progress=progress, description="planning"
    )
    steps = [step for record in records for step in record["steps"]]
    cache: dict = {}  # the planner's episodes revisit states (a fixed layout replays the same path)
    chosen, agree = [], []
    for begin in range(0, len(steps), batch_size):
        batch = steps[begin : begin + batch_size]
        probs = action_probabilities(
            policy,
            [s["prompt"] for s in batch],
            [s["valid_actions"] for s in batch],
            [{} for _ in batch],
            cache=cache,
        )
        actions = torch.tensor([s["action"] for s in batch])
        chosen.append(probs.gather(1, actions[:, None]).squeeze(1))
        agree.append(probs.argmax(1) == actions)
    return ExpertAgreement(
        states=len(steps),
        expert_probability=float(torch.cat(chosen).mean()),
        uniform_probability=float(np.mean([1 / len(s["valid_actions"]) for s in steps])),
        argmax_agreement=float(torch.cat(agree).float().mean()),
    )


def compare_zero_shot(
    model,
    envs: Sequence[str],
    episodes: int = 10,
    *,
    seed: int = 0,
    progress: bool = True,
    greedy: bool = True,
    no_repeat: bool = False,
    history_length: int = 0,
) -> list[dict[str, Any]]:
    """Each env played by the same model without its adapter (zero-shot, SayCan-style) and with it.

    Args:
        model: an :class:`~trl_embodied.EmbodiedActorCritic` (its adapter is disabled for the zero-shot run,
            so no second copy of the base model is loaded).
        envs: gymnasium ids (e.g. the unseen household tasks).
        greedy: play the most probable action, else sample the policy (both runs from the same
            generator seed).
        no_repeat: see :func:`evaluate_policy`.
        history_length: play with the last actions in the prompt (:class:`~trl_embodied.ActionHistory`), as
            a policy trained with ``EmbodiedPPOConfig.history_length`` was.

    Returns:
        One row per env: ``{"env", "zero_shot": EvaluationResult, "trained": EvaluationResult}``.
    """
    from trl_embodied.envs.core import with_history

    def play(env_id: str) -> EvaluationResult:
        # Both runs of an env replay the same episodes (env seeds) and, when sampling, the same draws.
        generator = torch.Generator().manual_seed(seed)
        return evaluate_policy(
            model.scorer,
            with_history(env_id, history_length) if history_length else env_id,
            episodes,
            greedy=greedy,
            no_repeat=no_repeat,
            seed=seed,
            generator=generator,
            progress=progress,
        )

    rows = []
    for env_id in envs:
        with model.policy.disable_adapter():
            zero_shot = play(env_id)
        rows.append({"env": env_id, "zero_shot": zero_shot, "trained": play(env_id)})
    return rows


def format_comparison(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of :func:`compare_zero_shot`'s rows: success and return, zero-shot vs trained."""
    lines = [
        "| task | zero-shot success | trained success | zero-shot return | trained return |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        name = row["env"].split("/")[-1]
        zero, trained = row["zero_shot"], row["trained"]
        lines.append(
            f"| {name} | {zero.success_rate:.2f} | {trained.success_rate:.2f} | "
            f"{zero.mean_return:.3f} | {trained.mean_return:.3f} |"
        )
    return "\n".join(lines)
