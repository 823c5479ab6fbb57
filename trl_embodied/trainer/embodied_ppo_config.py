"""EmbodiedPPOConfig: the trainer's settings, a ``TrainingArguments`` through TRL's base config."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from trl.trainer.base_config import _BaseConfig

from trl_embodied.scoring import NORMALIZATIONS

ADVANTAGE_ESTIMATORS = ("gae", "grpo", "rloo", "gigpo")


@dataclass
class EmbodiedPPOConfig(_BaseConfig):
    r"""Configuration of [`EmbodiedPPOTrainer`]: PPO over valid actions (TWOSOME) with a LoRA policy.

    Batch sizes count *transitions* (decision steps), not sequences. One PPO iteration rolls out
    ``num_envs x rollout_steps`` transitions per process, then runs ``num_ppo_epochs`` passes over them in
    minibatches of ``per_device_train_batch_size``; with ``gradient_accumulation_steps`` minibatches per
    optimizer step, an iteration is ``num_envs * rollout_steps * num_ppo_epochs /
    (per_device_train_batch_size * gradient_accumulation_steps)`` optimizer steps. ``max_steps`` counts
    optimizer steps; ``total_env_steps`` sets it from a budget of decision steps instead.

    Defaults follow TWOSOME (arXiv 2401.14151) except where the paper's values suit a 7B model and not the
    135M default model: the learning rates (paper: actor 5e-7 / 1e-6, critic 1e-5 / 5e-5; a 135M model
    barely moves at 1e-4 and learns at 1e-3) and the minibatch (paper: 4 transitions x 8 accumulation
    steps; here 32 transitions in one forward, the same optimizer batch, several times faster on CPU).

    Parameters:
        env_id (`str`): gymnasium id of the training task (``trl_embodied/...`` or any registered id).
        env_kwargs (`dict` or `str`, *optional*): keyword arguments for ``gymnasium.make`` (JSON on the
            command line).
        history_length (`int`, defaults to 0): begin each prompt with the episode's last ``history_length``
            actions (:class:`~trl_embodied.ActionHistory`), in training and evaluation alike; 0 keeps the
            state alone, as TWOSOME's prompts.
        num_envs (`int`, defaults to 4): environments per process, stepped in lockstep.
        rollout_steps (`int`, defaults to 32): decision steps per environment per PPO iteration.
        normalization (`str`, defaults to ``"word"``): action score normalization, ``"none"``, ``"token"`` or
            ``"word"`` (the paper's best).
        advantage_estimator (`str`, defaults to ``"gae"``): ``"gae"`` (a value head and GAE, TWOSOME's) or a
            critic-free group estimator, ``"grpo"``, ``"rloo"`` or ``"gigpo"``
            (:mod:`trl_embodied.trainer.group_advantages`): the ``num_envs`` environments form groups of
            ``group_size`` that play episode rounds, one episode per member from the round's seed (a slot
            whose episode ended starts at once on its group's next round, which the others join when their
            episodes end; a round runs on across rollouts, and each update learns from the oldest steps of
            the rounds that ended, up to twice a rollout's ``num_envs * rollout_steps`` in as many minibatches
            as a rollout's, each up to twice ``per_device_train_batch_size``,
            :class:`~trl_embodied.trainer.episode_rounds.EpisodeRounds`); no value head is built, trained or
            saved.
        group_size (`int`, defaults to 4): environments per group for a group estimator.
        step_advantage_weight (`float`, defaults to 1.0): GiGPO's weight of the step term.
        beta (`float`, defaults to 0.0): weight of the KL divergence between the policy and the base model's
            (the adapter disabled) over each state's valid actions, added to the loss as in TRL's GRPO; it
            costs a second forward per minibatch.
        gamma (`float`, defaults to 0.99): discount per primitive step (0.95 in the paper's household tasks).
        gae_lambda (`float`, defaults to 0.95): GAE's lambda.
        clip_range (`float`, defaults to 0.2): PPO's policy ratio clip.
        clip_range_value (`float` or `None`, defaults to 0.2): value clip around the rollout's values; None
            for an unclipped value loss.
        vf_coef (`float`, defaults to 0.5): value loss coefficient (it also scales the value gradients that
            reach a shared backbone).
        ent_coef (`float`, defaults to 0.01): entropy bonus coefficient.
        target_kl (`float` or `None`, defaults to 0.02): once a minibatch's approximate KL (averaged over
            processes) passes it, the rest of the iteration's minibatches are skipped. None disables it.
        on_env_error (`str`, defaults to ``"raise"``): what an exception from an environment's ``step`` does.
            ``"raise"``: stop with an error that names the environment, its slot, the step and the action,
            chained to the original. ``"reset"``: cut the episode there (a truncation, bootstrapped from the
            state the action was tried in), rebuild the environment from its factory, reset it and go on;
            counted in ``rollout/env_errors``. For engines that can die (a Java or Z-machine process).
        max_env_errors (`int`, defaults to 10): with ``on_env_error="reset"``, errors in a row from one slot
            before the run stops anyway (an environment that never recovers).
        num_ppo_epochs (`int`, defaults to 4): passes over each rollout. The paper takes 1; on the 135M default
            model one pass barely moves the policy (approximate KL ~1e-4), and 4 (TRL's and CleanRL's default)
            solved Tomato-Lettuce Salad where 1 did not (``benchmarks/ppo_settings.py``).
        normalize_advantages (`bool`, defaults to True): normalize advantages over the global batch (zero mean,
            unit std). A rollout without any reward then loses what it has to teach (its advantages are
            negative on the whole; centring removes that and scales the value head's errors up): ``False``
            kept a Food Preparation seed from collapsing onto an unrewarded cycle (benchmarks/README.md,
            PPO settings).
        critic_learning_rate (`float`, defaults to 1e-3): the value head's learning rate (the actor's is
            ``learning_rate``).
        critic_backbone (`str`, defaults to ``"shared"``): ``"shared"`` (value gradients reach the LoRA
            weights) or ``"frozen"`` (TWOSOME: the critic reads the base model without the adapter).
        value_head_sizes (`list[int]`, defaults to ``[1024, 512]``): the value MLP's hidden layers.
        model_init_kwargs (`dict` or `str`, *optional*): for :func:`~trl_embodied.load_base_model` when the
            trainer loads the model by name: ``load_in_4bit``, ``load_in_8bit``, ``dtype``, ``device_map``.
            The LoRA adapter is the trainer's ``peft_config`` (TWOSOME's r=8, alpha=16, q/v by default); as in
            TRL's recipes, LoRA and quantization flags on the command line come from ``trl.ModelConfig``.
        adapter_path (`str` or `None`, defaults to None): continue from this LoRA adapter (a PEFT folder such as
            ``recipes/sft_warmstart.py`` writes, or a ``save_model`` folder, whose value head is loaded too)
            instead of a fresh one.
        reuse_states (`bool`, defaults to True): run each distinct (prompt, valid actions) state of a rollout
            and of a minibatch through the model once, with the same values and gradients as scoring every
            row (the tests check both); False scores every row, the speed ablation.
        max_actions_per_forward (`int` or `None`, defaults to None): score a state's actions in chunks of at
            most this many, each a sequence of the prompt and its share of the actions (rollouts and updates
            alike; equal scores and gradients, memory bounded for states with hundreds of actions).
        eval_episodes (`int`, defaults to 10): episodes per ``evaluate()``.
        eval_greedy (`bool`, defaults to True): evaluate the greedy (argmax) policy, else sample.
        eval_no_repeat (`bool`, defaults to False): in evaluation, choose among the actions taken least often
            from the current state in the episode (see :func:`~trl_embodied.evaluate_policy`): greedy play
            that cannot loop on a no-op or a cycle.
        save_rollouts (`bool`, defaults to False): keep every finished training episode as trajectory rows
            (one per decision step, :data:`~trl_embodied.trajectories.TRAJECTORY_FEATURES`) and save them with
            each checkpoint and ``save_model`` as ``<dir>/rollouts`` (``datasets.load_from_disk``).
        total_env_steps (`int`, *optional*): training budget in decision steps over all processes; sets
            ``max_steps``.
    """

    # -- the environment ---------------------------------------------------------------------------------
    env_id: str = field(
        default="trl_embodied/Overcooked-TomatoSalad-v0",
        metadata={"help": "Gymnasium id of the training task."},
    )
    env_kwargs: dict | str | None = field(
        default=None, metadata={"help": "Keyword arguments for gymnasium.make, as JSON on the command line."}
    )
    history_length: int = field(
        default=0,
        metadata={
            "help": "Begin each prompt with the episode's last N actions (trl_embodied.ActionHistory), so the "
            "policy tells a state's first visit from a return to it; 0: the state alone, as TWOSOME."
        },
    )
    num_envs: int = field(default=4, metadata={"help": "Environments per process."})
    rollout_steps: int = field(
        default=32, metadata={"help": "Decision steps per environment per PPO iteration."}
    )
    # -- the policy --------------------------------------------------------------------------------------
    normalization: str = field(
        default="word",
        metadata={"help": "Action score normalization: none, token or word.", "choices": NORMALIZATIONS},
    )
    # -- PPO ---------------------------------------------------------------------------------------------
    advantage_estimator: str = field(
        default="gae",
        metadata={
            "help": "gae: a value head and GAE (TWOSOME); grpo, rloo, gigpo: critic-free advantages from groups "
            "of group_size environments reset with the same seed.",
            "choices": ADVANTAGE_ESTIMATORS,
        },
    )
    group_size: int = field(
        default=4,
        metadata={"help": "Group estimators: environments per group (num_envs is a multiple of it)."},
    )
    step_advantage_weight: float = field(
        default=1.0, metadata={"help": "GiGPO: the weight of the step term (anchor-state groups)."}
    )
    beta: float = field(
        default=0.0,
        metadata={
            "help": "Weight of a KL penalty to the base policy (the adapter disabled), as in TRL's GRPO."
        },
    )
    gamma: float = field(default=0.99, metadata={"help": "Discount per primitive step."})
    gae_lambda: float = field(default=0.95, metadata={"help": "GAE lambda."})
    clip_range: float = field(default=0.2, metadata={"help": "Policy ratio clip."})
    clip_range_value: float | None = field(default=0.2, metadata={"help": "Value clip; None: unclipped."})
    vf_coef: float = field(default=0.5, metadata={"help": "Value loss coefficient."})
    ent_coef: float = field(default=0.01, metadata={"help": "Entropy bonus coefficient."})
    target_kl: float | None = field(
        default=0.02,
        metadata={"help": "Skip the rest of an iteration's minibatches past this approximate KL."},
    )
    on_env_error: str = field(
        default="raise",
        metadata={
            "help": "An exception in env.step: 'raise' (stop, naming the env, step and action) or 'reset' "
            "(cut the episode, rebuild and reset the env, go on).",
            "choices": ["raise", "reset"],
        },
    )
    max_env_errors: int = field(
        default=10,
        metadata={"help": "With on_env_error='reset': errors in a row from one env before stopping."},
    )
    num_ppo_epochs: int = field(default=4, metadata={"help": "Passes over each rollout."})
    normalize_advantages: bool = field(
        default=True, metadata={"help": "Normalize advantages over the global batch."}
    )
    critic_learning_rate: float = field(default=1e-3, metadata={"help": "The value head's learning rate."})
    critic_backbone: str = field(
        default="shared",
        metadata={
            "help": "shared: value gradients reach LoRA; frozen: TWOSOME's detached critic.",
            "choices": ("shared", "frozen"),
        },
    )
    value_head_sizes: list[int] = field(
        default_factory=lambda: [1024, 512], metadata={"help": "Value MLP hidden sizes."}
    )
    reuse_states: bool = field(
        default=True,
        metadata={
            "help": "Run each distinct (prompt, valid actions) state of a rollout and of a minibatch through "
            "the model once; False runs every row (the speed ablation)."
        },
    )
    max_actions_per_forward: int | None = field(
        default=None,
        metadata={
            "help": "Score at most this many of a state's actions in one sequence (bounded memory for states "
            "with hundreds of actions); None: all of them at once."
        },
    )
    # -- the model ---------------------------------------------------------------------------------------
    model_init_kwargs: dict | str | None = field(
        default=None,
        metadata={
            "help": "Keyword arguments for load_base_model when the model is given by name: load_in_4bit, "
            "load_in_8bit, dtype, device_map (JSON on the command line)."
        },
    )
    adapter_path: str | None = field(
        default=None,
        metadata={
            "help": "Start the policy from this LoRA adapter instead of a fresh one: a PEFT folder (an SFT warm "
            "start; the value head starts fresh) or a folder written by save_model (the value head too)."
        },
    )
    # -- vLLM rollouts (TRL's names) ---------------------------------------------------------------------
    use_vllm: bool = field(
        default=False,
        metadata={
            "help": "Score the rollout's and evaluation's actions with a vLLM engine (prompt_logprobs, prefix "
            "caching; the policy's weights are synced into it after every update); the update stays in the "
            "Trainer. Needs the vllm extra."
        },
    )
    vllm_mode: str = field(
        default="colocate",
        metadata={
            "help": "'colocate': the engine runs in the training process; 'server': a vLLM server started apart "
            "(VLLM_SERVER_DEV_MODE=1 vllm serve <base model> --enable-prefix-caching) scores, and takes the "
            "policy's weights through vllm_sync_dir."
        },
    )
    vllm_server_base_url: str | None = field(
        default=None,
        metadata={
            "help": "Server mode: the server's address, e.g. http://10.0.0.2:8000; None: vllm_server_host/port."
        },
    )
    vllm_server_host: str = field(default="0.0.0.0", metadata={"help": "Server mode: the server's host."})
    vllm_server_port: int = field(default=8000, metadata={"help": "Server mode: the server's port."})
    vllm_server_timeout: float = field(
        default=240.0,
        metadata={"help": "Server mode: seconds to wait for the server to come up, and for any one request."},
    )
    vllm_sync_dir: str | None = field(
        default=None,
        metadata={
            "help": "Server mode: the folder the policy's merged weights are written to for the server to reload "
            "(it must see it: the same machine or a shared mount); None: a temporary folder on this machine."
        },
    )
    vllm_gpu_memory_utilization: float = field(
        default=0.3,
        metadata={
            "help": "Share of the device's memory the colocated engine takes (on vLLM's CPU build: of the "
            "machine's memory)."
        },
    )
    vllm_kv_cache_memory_bytes: int | None = field(
        default=None,
        metadata={
            "help": "The colocated engine's KV cache in bytes, in place of the share above (vLLM's "
            "kv_cache_memory_bytes). On vLLM's CPU build the share is of the machine's memory and what the "
            "training process already holds counts against it, so a share that fits one machine fails on a "
            "smaller one; a size in bytes does not depend on the machine. None: sized by the share."
        },
    )
    vllm_max_model_length: int | None = field(
        default=None,
        metadata={
            "help": "The longest prompt + action the engine serves (its KV cache must hold one); None: the "
            "model's context."
        },
    )
    vllm_model: str | None = field(
        default=None,
        metadata={
            "help": "The checkpoint folder or Hub id vLLM loads (the policy's base model); None: the base "
            "model's own name_or_path (for the embedded default model, its converted folder)."
        },
    )
    # -- evaluation and budget ---------------------------------------------------------------------------
    eval_episodes: int = field(default=10, metadata={"help": "Episodes per evaluate()."})
    eval_greedy: bool = field(default=True, metadata={"help": "Evaluate the argmax policy (else sample)."})
    eval_no_repeat: bool = field(
        default=False, metadata={"help": "In evaluation, take the least-tried actions of a state first."}
    )
    save_rollouts: bool = field(
        default=False,
        metadata={
            "help": "Keep the rollouts' finished episodes as trajectory rows (trl_embodied.trajectories) and "
            "write them as a datasets folder 'rollouts' with every checkpoint and save_model."
        },
    )
    total_env_steps: int | None = field(
        default=None,
        metadata={"help": "Training budget in decision steps over all processes; sets max_steps."},
    )
    # -- TrainingArguments defaults changed for PPO --------------------------------------------------------
    learning_rate: float = field(default=1e-3, metadata={"help": "The actor's (LoRA) learning rate."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Transitions per minibatch."})
    max_grad_norm: float = field(default=0.5, metadata={"help": "Gradient clipping norm."})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "Linear decay, as PPO usually does."})
    logging_steps: float = field(default=1, metadata={"help": "Log every N optimizer steps."})
    # TRL turns gradient checkpointing on; it trades speed for memory that a LoRA policy rarely needs.
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Recompute activations in backward."}
    )
    # TRL's base config would default bf16 to True, which on CPU means bf16 autocast; opt in explicitly.
    bf16: bool | None = field(default=False, metadata={"help": "bf16 mixed precision."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep task rows as they are."})

    def __post_init__(self):
        self.env_kwargs = parse_dict_argument("env_kwargs", self.env_kwargs)
        self.model_init_kwargs = parse_dict_argument("model_init_kwargs", self.model_init_kwargs)
        unknown = set(self.model_init_kwargs) - {"load_in_4bit", "load_in_8bit", "dtype", "device_map"}
        if unknown:
            raise ValueError(
                f"model_init_kwargs has unknown keys {sorted(unknown)}; use load_in_4bit, load_in_8bit, dtype, device_map."
            )
        if self.model_init_kwargs.get("load_in_4bit") and self.model_init_kwargs.get("load_in_8bit"):
            raise ValueError("model_init_kwargs sets both load_in_4bit and load_in_8bit; choose one.")
        positive = {
            "num_envs": self.num_envs,
            "rollout_steps": self.rollout_steps,
            "num_ppo_epochs": self.num_ppo_epochs,
            "per_device_train_batch_size": self.per_device_train_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "eval_episodes": self.eval_episodes,
        }
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}; it must be a positive integer.")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization={self.normalization!r}; use one of {NORMALIZATIONS}.")
        if self.vllm_mode not in ("colocate", "server"):
            raise ValueError(
                f"vllm_mode={self.vllm_mode!r}; use 'colocate' (the engine in the training process) or 'server' "
                "(a vLLM server started apart, at vllm_server_base_url)."
            )
        if not 0.0 < self.vllm_gpu_memory_utilization <= 1.0:
            raise ValueError(
                f"vllm_gpu_memory_utilization={self.vllm_gpu_memory_utilization!r}; use a share in (0, 1]."
            )
        if self.vllm_kv_cache_memory_bytes is not None and (
            not isinstance(self.vllm_kv_cache_memory_bytes, int) or self.vllm_kv_cache_memory_bytes < 1
        ):
            raise ValueError(
                f"vllm_kv_cache_memory_bytes={self.vllm_kv_cache_memory_bytes!r}; use a positive number of "
                "bytes (e.g. 2**30 for 1 GiB), or None to size the cache by vllm_gpu_memory_utilization."
            )
        if self.critic_backbone not in ("shared", "frozen"):
            raise ValueError(f"critic_backbone={self.critic_backbone!r}; use 'shared' or 'frozen'.")
        if not 0.0 < self.gamma <= 1.0 or not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(
                f"gamma={self.gamma}, gae_lambda={self.gae_lambda}; use 0 < gamma <= 1, 0 <= lambda <= 1."
            )
        for name in ("clip_range", "vf_coef", "ent_coef", "critic_learning_rate"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)}; it must be >= 0.")
        if not isinstance(self.history_length, int) or self.history_length < 0:
            raise ValueError(
                f"history_length={self.history_length!r}; use 0 (no history) or a positive count."
            )
        if self.advantage_estimator not in ADVANTAGE_ESTIMATORS:
            raise ValueError(
                f"advantage_estimator={self.advantage_estimator!r}; use one of {ADVANTAGE_ESTIMATORS}."
            )
        if self.advantage_estimator != "gae":
            if not isinstance(self.group_size, int) or self.group_size < 2:
                raise ValueError(f"group_size={self.group_size!r}; a group compares at least 2 episodes.")
            if self.num_envs % self.group_size:
                raise ValueError(
                    f"num_envs={self.num_envs} is not a multiple of group_size={self.group_size}; every "
                    "environment belongs to one group."
                )
        if self.max_actions_per_forward is not None and self.max_actions_per_forward < 1:
            raise ValueError(
                f"max_actions_per_forward={self.max_actions_per_forward}; use None or a positive count."
            )
        if self.beta < 0:
            raise ValueError(f"beta={self.beta}; the KL penalty's weight must be >= 0.")
        if self.on_env_error not in ("raise", "reset"):
            raise ValueError(f"on_env_error={self.on_env_error!r}; use 'raise' or 'reset'.")
        if self.max_env_errors < 1:
            raise ValueError(f"max_env_errors={self.max_env_errors}; it must be at least 1.")
        if self.target_kl is not None and self.target_kl <= 0:
            raise ValueError(f"target_kl={self.target_kl}; use a positive value or None.")
        if self.total_env_steps is not None and self.total_env_steps < 1:
            raise ValueError(f"total_env_steps={self.total_env_steps}; it must be a positive integer.")
        transitions = self.num_envs * self.rollout_steps
        if transitions % self.per_device_train_batch_size:
            raise ValueError(
                f"num_envs * rollout_steps = {transitions} transitions per rollout is not a multiple of "
                f"per_device_train_batch_size={self.per_device_train_batch_size}; choose a minibatch that divides it."
            )
        if self.micro_steps_per_rollout % self.gradient_accumulation_steps:
            raise ValueError(
                f"a rollout gives {self.micro_steps_per_rollout} minibatches, not a multiple of "
                f"gradient_accumulation_steps={self.gradient_accumulation_steps}; every optimizer step must "
                "use minibatches of one rollout."
            )
        super().__post_init__()

    @property
    def minibatches_per_epoch(self) -> int:
        """Minibatches in one pass over a rollout's ``num_envs * rollout_steps`` transitions."""
        return self.num_envs * self.rollout_steps // self.per_device_train_batch_size

    @property
    def micro_steps_per_rollout(self) -> int:
        """Minibatches (forward + backward passes) per PPO iteration, all epochs included."""
        return self.minibatches_per_epoch * self.num_ppo_epochs

    @property
    def critic_free(self) -> bool:
        """Advantages from groups of episodes: no value head."""
        return self.advantage_estimator != "gae"

    @property
    def optimizer_steps_per_rollout(self) -> int:
        return self.micro_steps_per_rollout // self.gradient_accumulation_steps


def parse_dict_argument(name: str, value: dict | str | None) -> dict:
    """A dict given as a dict, a JSON object string (the command line) or None (empty)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"{name} is not valid JSON ({error}): {value!r}") from error
    if value is not None and not isinstance(value, dict):
        raise ValueError(f"{name} must be a dict (or a JSON object), got {value!r}.")
    return dict(value or {})
