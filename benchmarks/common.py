"""What several benchmarks share: an isolated worker process, and a TWOSOME training run with greedy
evaluations on env-step boundaries. Benchmarks run as scripts, so this folder is on ``sys.path``."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

TARGET = 0.9  # the greedy success rate that counts as "solved"
EVAL_SEED = 10_000  # evaluation episodes play seeds the training never resets to
#: Where a family's figure of merit is another rate: BabyAI-Text's published results (GLAM) count 0.8.
TARGET_BY_ENV_FAMILY = {"BabyAI": 0.8}
#: TrainingArguments of every benchmark run: each optimizer step's row in the log history, no checkpoints,
#: no trackers, no progress bars in the logs.
QUIET_RUN = dict(logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True)
#: The paper's discounts per primitive step: 0.99 in Overcooked, 0.95 in the household (VirtualHome) tasks;
#: BabyAI's is GLAM's, 0.99; ScienceWorld has no TWOSOME figure: 0.99 as well. Every method of every
#: benchmark uses its task's.
GAMMA_BY_ENV_FAMILY = {"Overcooked": 0.99, "Household": 0.95, "BabyAI": 0.99, "ScienceWorld": 0.99}
#: Where a checkpointed run keeps its evaluation before training (the Trainer's log history starts after it).
BEFORE_TRAINING_FILE = "evaluation_before_training.json"
WALL_TIME_FILE = "wall_time.json"  # in each checkpoint of such a run: the wall seconds it has run so far


def env_family(env_id: str) -> str:
    """``"Overcooked"`` for ``trl_embodied/Overcooked-TomatoSalad-v0``."""
    return env_id.split("/")[-1].split("-")[0]


def target_success(env_id: str) -> float:
    """The greedy success rate that counts as solving ``env_id``: :data:`TARGET` unless its family has its own."""
    return TARGET_BY_ENV_FAMILY.get(env_family(env_id), TARGET)


def paper_gamma(env_id: str) -> float:
    """The paper's discount for ``env_id`` (``trl_embodied/<Family>-<Task>-v0``)."""
    family = env_family(env_id)
    if family not in GAMMA_BY_ENV_FAMILY:
        raise ValueError(f"No paper discount for {env_id!r}; known families: {sorted(GAMMA_BY_ENV_FAMILY)}.")
    return GAMMA_BY_ENV_FAMILY[family]


def add_bf16_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="Train TWOSOME with bf16 autocast: 1.6-2.5x the float32 trainer's decision steps per second on a "
        "CPU with native bf16 (benchmarks/results/train_speed.json), many times slower on one without (AVX2 "
        "only; the trainer warns).",
    )


def write_json(path: Path, data: Any, indent: int = 2) -> Path:
    """Write ``data`` to ``path`` whole or not at all (a temporary file renamed into place), and say so: a
    benchmark stopped mid-write never leaves a truncated result that a later ``--report`` would read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
        handle.write(json.dumps(data, indent=indent) + "\n")
    os.chmod(handle.name, 0o644)  # a temporary file is private (0600); a result is for everyone to read
    os.replace(handle.name, path)
    print(f"wrote {path}", flush=True)
    return path


def code_version() -> str | None:
    """The commit of the trl_embodied this process imported (which may be another checkout than the
    benchmark's, on PYTHONPATH), with ``-dirty`` where that working tree's code differed from it (the result
    files that benchmarks write do not count), so a record says which trainer measured it; None outside a
    git checkout."""
    import trl_embodied

    def git(*arguments: str) -> subprocess.CompletedProcess:
        library = Path(trl_embodied.__file__).parent
        return subprocess.run(["git", *arguments], cwd=library, capture_output=True, text=True)

    try:
        commit = git("rev-parse", "--short", "HEAD")
        changed = git("diff", "--quiet", "HEAD", "--", ":/", ":(exclude,top)benchmarks/results")
    except OSError:
        return None
    if commit.returncode != 0:
        return None
    return commit.stdout.strip() + ("-dirty" if changed.returncode == 1 else "")


def isolated(function, *job) -> Any:
    """``function(*job)`` in a fresh spawned process: its peak memory is its own, and a worker killed for
    memory raises BrokenProcessPool here instead of hanging."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *job).result()


def add_learning_arguments(parser: argparse.ArgumentParser, total_env_steps: int) -> None:
    """The command line every learning benchmark shares: seeds, budget, evaluation, and --report."""
    parser.add_argument("--seed", type=int, nargs="+", default=[0])
    parser.add_argument("--total_env_steps", type=int, default=total_env_steps, help="TWOSOME's budget.")
    parser.add_argument("--eval_every", type=int, default=1024, help="Env steps between greedy evaluations.")
    parser.add_argument(
        "--eval_episodes",
        type=int,
        default=10,
        help="Greedy episodes per evaluation. On a fixed layout greedy episodes are all alike: 4 fill one batch.",
    )
    parser.add_argument(
        "--stop_at_target",
        action="store_true",
        help=f"End a run at its first evaluation with greedy success >= the task's target ({TARGET}; BabyAI "
        f"{TARGET_BY_ENV_FAMILY['BabyAI']}): the figure of merit is known by then.",
    )
    parser.add_argument("--report", action="store_true", help="Only merge finished runs and plot.")


def add_checkpoint_argument(parser: argparse.ArgumentParser, layout: str, more: str = "") -> None:
    """``--checkpoint_dir``: a checkpoint per PPO iteration under ``layout`` (the run's folder in DIR), so that
    the same command continues a stopped run."""
    parser.add_argument(
        "--checkpoint_dir",
        type=Path,
        help=f"Keep a checkpoint per PPO iteration under {layout}; the same command then continues a stopped "
        f"run where it was{more}.",
    )


def add_model_arguments(parser: argparse.ArgumentParser, run_name_help: str) -> None:
    """``--model_name_or_path``: another base model than the embedded default, and ``--run_name``, the record
    name's part that keeps its runs apart (see :func:`check_model_arguments`)."""
    parser.add_argument(
        "--model_name_or_path",
        default=None,
        help="Another base model (a Hub id, a local checkpoint folder or a .gguf file) instead of the embedded "
        "default; needs --run_name, which keeps its runs beside the default model's.",
    )
    parser.add_argument("--run_name", default="", help=run_name_help)


def check_model_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse another model without a run name: its records would overwrite the default model's."""
    if args.model_name_or_path and not args.run_name:
        parser.error(
            "--model_name_or_path needs --run_name (e.g. the model's name), so its runs are kept apart."
        )


def learning_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The budget, evaluation and stop of :func:`add_learning_arguments`' command line, as
    :func:`train_twosome`'s keyword arguments (the seed is each run's own)."""
    return dict(
        total_env_steps=args.total_env_steps,
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        stop_at_target=args.stop_at_target,
    )


def steps_to_target(history: list[dict], target: float = TARGET) -> int | None:
    """The env steps at the first evaluation whose greedy success reaches ``target``."""
    evals = sorted(
        (row["env_steps"], row["eval_success_rate"]) for row in history if "eval_success_rate" in row
    )
    return next((steps for steps, success in evals if success >= target), None)


def steps_to_sampled_target(history: list[dict], target: float = TARGET, window: int = 20) -> int | None:
    """The env steps at the first PPO iteration after which the last ``window`` finished training episodes
    (sampled play, counted by each row's ``episode/count``) succeed at rate ``target`` or more. A window of
    episodes rather than one iteration's: an iteration finishes a handful, and a lucky handful is no
    learned policy."""
    recent: list[tuple[float, float]] = []  # (episodes, success rate) per row, newest last
    for row in sorted((r for r in history if "episode/success_rate" in r), key=lambda r: r["env_steps"]):
        recent.append((row["episode/count"], row["episode/success_rate"]))
        episodes = successes = 0.0
        for count, rate in reversed(recent):
            episodes, successes = episodes + count, successes + count * rate
            if episodes >= window:
                break
        if episodes >= window and successes >= target * episodes:
            return row["env_steps"]
    return None


def final_greedy_success(history: list[dict]) -> float:
    """The greedy success rate of the last evaluation in a run's log history."""
    return [row for row in history if "eval_success_rate" in row][-1]["eval_success_rate"]


def peak_rss_mb() -> float:
    """The largest resident memory this process has had so far, in MB (Linux reports KB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def greedy_trace(
    model, env_id: str, history_length: int = 0, env_kwargs: dict | None = None, steps: int = 8
) -> dict:
    """The policy's first greedy episode on ``env_id`` (a fixed seed), its first ``steps`` decisions: the
    action and its probability. It shows where greedy play loops (without history in the prompt the policy
    has no memory: the same state brings the same argmax, a no-op's too)."""
    import functools

    from trl_embodied.envs.core import with_history
    from trl_embodied.envs.registration import make_env
    from trl_embodied.evaluation import play_episodes

    env = functools.partial(make_env, env_id, **(env_kwargs or {}))
    (episode,), _ = play_episodes(
        model.scorer,
        with_history(env, history_length) if history_length else env,
        1,
        greedy=True,
        seed=EVAL_SEED,
        record_steps=True,
        progress=False,
    )
    return {
        "env": env_id,
        "success": episode["success"],
        "length": episode["length"],
        "first_steps": [
            {"action": step["valid_actions"][step["action"]], "probability": max(step["action_probs"])}
            for step in episode["steps"][:steps]
        ],
    }


def train_twosome(
    env_id: str,
    *,
    total_env_steps: int,
    eval_every: int,
    eval_episodes: int,
    seed: int,
    stop_at_target: bool = False,
    model: str | None = None,
    checkpoint_dir: str | Path | None = None,
    callbacks: Sequence[Any] = (),
    task_rows: Sequence[dict] | None = None,
    **overrides: Any,
):
    """Train EmbodiedPPOTrainer on the default model (on the CUDA device when there is one, else the CPU),
    evaluating greedily before training and every ``eval_every`` env steps. ``overrides`` are
    EmbodiedPPOConfig fields (``normalization``, ``bf16``...); ``gamma`` defaults to the paper's for the task.
    ``stop_at_target``: end training at the first evaluation whose greedy success reaches the task's target
    (:func:`target_success`).
    ``model``: the base model's Hub id, local folder or ``.gguf`` file (``None``: the embedded default, SmolLM2-135M-Instruct).
    ``checkpoint_dir``: keep a checkpoint there after every PPO iteration and, when it already holds one,
    continue that run (the same call again resumes a run of hours that was stopped); ``None``: no checkpoints.
    ``callbacks``: more ``TrainerCallback`` objects for the trainer.
    ``task_rows``: train on several tasks at once (the trainer's ``train_dataset``: env slot ``i`` plays row
    ``i % len(rows)``); evaluation plays each task (logged per task beside their mean, which the stop
    reads), and the greedy trace stays on ``env_id``.

    Returns ``(trainer, record)``; ``record`` holds the log history (evaluation rows carry ``env_steps``),
    the wall time, the device, the mean seconds per PPO iteration spent scoring, in the env and updating, and
    the final policy's :func:`greedy_trace`.
    """
    import torch
    from transformers import TrainerCallback

    from trl_embodied import EmbodiedPPOConfig, EmbodiedPPOTrainer, StopAtSuccessCallback
    from trl_embodied.trainer.embodied_ppo_trainer import last_complete_checkpoint

    saving = {}
    if checkpoint_dir is not None:
        saving = dict(save_strategy="steps", save_total_limit=1)
    args = EmbodiedPPOConfig(
        output_dir=str(checkpoint_dir) if checkpoint_dir is not None else tempfile.mkdtemp(),
        env_id=env_id,
        total_env_steps=total_env_steps,
        eval_episodes=eval_episodes,
        use_cpu=not torch.cuda.is_available(),
        seed=seed,
        **{**QUIET_RUN, **saving},
        **{"gamma": paper_gamma(env_id), **overrides},
    )
    if checkpoint_dir is not None:
        args.save_steps = args.optimizer_steps_per_rollout  # one checkpoint per PPO iteration

    class EvaluateEvery(TrainerCallback):
        """Evaluate on env-step boundaries (the Trainer's eval_steps count optimizer steps), at the end of a PPO
        iteration's update: the policy evaluated at N env steps has learned from all N. (An iteration's rollout
        runs in its first optimizer step, so the env steps grow there, one minibatch into the update.)"""

        next_eval = eval_every

        def on_train_begin(self, args, state, control, **kwargs):
            # A resumed run has its env steps back by now: the next evaluation is the next boundary.
            self.next_eval = (trainer._env_steps // eval_every + 1) * eval_every

        def on_step_end(self, args, state, control, **kwargs):
            update_done = state.global_step % args.optimizer_steps_per_rollout == 0
            if update_done and trainer._env_steps >= self.next_eval:
                self.next_eval += eval_every
                control.should_evaluate = True

        def on_save(self, args, state, control, **kwargs):
            # Wall time so far travels with the checkpoint, so a resumed run's record counts all of it.
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            write_json(
                folder / WALL_TIME_FILE, {"wall_seconds": earlier_seconds + time.perf_counter() - start}
            )

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            per_task = [
                f"{name} {metrics[f'eval_{name}_success_rate']:.2f}" for name in trainer.eval_envs if name
            ]
            print(
                f"  {trainer._env_steps} steps: greedy success {metrics['eval_success_rate']:.2f}"
                + (f" ({', '.join(per_task)})" if per_task else ""),
                flush=True,
            )

    target = target_success(env_id)
    callbacks = [EvaluateEvery(), *callbacks] + ([StopAtSuccessCallback(target)] if stop_at_target else [])
    trainer = EmbodiedPPOTrainer(model=model, args=args, callbacks=callbacks, train_dataset=task_rows)
    start = time.perf_counter()
    resume = last_complete_checkpoint(checkpoint_dir) if checkpoint_dir is not None else None
    # train() starts a fresh log history: the evaluation before training is kept apart (on disk for a resume).
    before_file = Path(checkpoint_dir) / BEFORE_TRAINING_FILE if checkpoint_dir is not None else None
    earlier_seconds = 0.0  # wall time of the stopped run a resume continues
    if resume is not None and before_file.is_file():
        before = json.loads(before_file.read_text())
        wall_file = Path(resume) / WALL_TIME_FILE
        earlier_seconds = json.loads(wall_file.read_text())["wall_seconds"] if wall_file.is_file() else 0.0
        print(f"  resuming from {resume}", flush=True)
    else:
        resume = None
        before = trainer.evaluate()
        if before_file is not None:
            write_json(before_file, before)
    if not (stop_at_target and before["eval_success_rate"] >= target):
        trainer.train(resume_from_checkpoint=resume)
    evaluated = (
        r.get("env_steps") == trainer._env_steps and "eval_success_rate" in r
        for r in trainer.state.log_history
    )
    if not any(evaluated):
        trainer.evaluate()
    history = [{"env_steps": 0, **before}] + [dict(row) for row in trainer.state.log_history]
    iterations = [row for row in history if "time/scoring_seconds" in row]
    seconds_per_iteration = {}
    for key in ("scoring", "env", "update"):  # None where no row logged it (the update time is logged a
        # rollout later, so a run of one iteration has none)
        measured = [row[f"time/{key}_seconds"] for row in iterations if f"time/{key}_seconds" in row]
        seconds_per_iteration[key] = float(np.mean(measured)) if measured else None
    record = {
        "history": history,
        "wall_seconds": earlier_seconds + time.perf_counter() - start,
        "seconds_per_iteration": seconds_per_iteration,
        "steps_to_target": steps_to_target(history, target),
        "target_success": target,
        "stopped_at_target": stop_at_target,
        "bf16": bool(overrides.get("bf16", False)),
        "num_ppo_epochs": args.num_ppo_epochs,
        "gamma": args.gamma,
        **({"model": model} if model is not None else {}),
        # The CPU's vector extensions decide its speed, bf16's above all (AVX2: no native bf16).
        "device": torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"{platform.machine()} CPU ({torch.backends.cpu.get_cpu_capability()})",
        "code_version": code_version(),
        "peak_rss_mb": peak_rss_mb(),
        # Where the final policy's greedy play goes (and loops, where it fails).
        "greedy_trace": greedy_trace(
            trainer.accelerator.unwrap_model(trainer.model), env_id, args.history_length, args.env_kwargs, 16
        ),
    }
    return trainer, record


def warm_start(
    env_id: str | Sequence[str],
    seed: int,
    demonstration_episodes: int,
    epochs: float,
    learning_rate: float,
    env_kwargs: dict | None = None,
    model: str | None = None,
) -> tuple[str, dict]:
    """Clone ``env_id``'s planner demonstrations (``demonstration_episodes`` a task, when it names several) into
    a LoRA adapter on ``model`` (a Hub id, folder or ``.gguf`` file; ``None``: the embedded default) with TRL's
    SFTTrainer; return the adapter's folder and what it cost."""
    import torch
    from trl import SFTConfig

    from trl_embodied.scripts.sft import WarmStartArguments, main

    output_dir = tempfile.mkdtemp(prefix="sft-warm-start-")
    sft_args = SFTConfig(
        output_dir=output_dir,
        num_train_epochs=epochs,
        learning_rate=learning_rate,
        per_device_train_batch_size=8,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        seed=seed,
        **QUIET_RUN,
    )
    start = time.perf_counter()
    arguments = WarmStartArguments(
        env_id=env_id,
        env_kwargs=env_kwargs or {},
        demonstration_episodes=demonstration_episodes,
        model_name_or_path=model,
    )
    trainer = main(arguments, sft_args)
    cost = {
        "demonstrated_tasks": arguments.env_id,
        "demonstration_episodes": demonstration_episodes,
        "demonstration_steps": len(trainer.train_dataset),
        "sft_epochs": epochs,
        "sft_learning_rate": learning_rate,
        "sft_optimizer_steps": trainer.state.global_step,
        "sft_final_loss": next(
            (row["loss"] for row in reversed(trainer.state.log_history) if "loss" in row), None
        ),
        "sft_wall_seconds": time.perf_counter() - start,
    }
    return output_dir, cost
