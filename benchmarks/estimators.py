"""Advantage estimators on the valid-action policy: GAE (a value head, TWOSOME's) against the critic-free
group estimators GRPO, RLOO and GiGPO, same task, seeds and budget.

Every estimator trains the default model with the trainer's defaults (rollouts of 32 decision steps in 4
environments) and ``--group_size`` (environments per seed-sharing group; ``num_envs`` is ``--num_envs``).
A group estimator's episode rounds run on across rollouts, so its updates come as often as GAE's.
``--rollout_steps`` sets another rollout length for every estimator (a row of its own, ``gigpo_rollout200``;
the earliest runs used the task's episode limit, from when a round had to end within its rollout). The
figure of merit is the env steps until greedy success first reaches 0.9, and each group estimator's ratio
to GAE with the same rollout length on the same seed. GAE at the trainer's defaults is what
``sample_efficiency.py --method twosome`` runs, seed for seed: where this benchmark ran no ``gae`` of its
own, the report takes those runs (each record names its ``source``).

    python benchmarks/estimators.py --task tomato_salad --estimator gae grpo rloo gigpo --seed 0
    python benchmarks/estimators.py --task tomato_lettuce_salad --estimator gigpo --history_length 2
    python benchmarks/estimators.py --report
    python benchmarks/estimators.py --task tomato_lettuce_salad --estimator gae gigpo --update_timing 3

Each (task, estimator, seed) writes ``benchmarks/results/estimators/<task>/<estimator>_seed<k>.json``
(``<estimator>_history<n>_seed<k>.json`` with ``--history_length n``: prompts that carry the episode's last
n actions, a row of its own; ``_rollout<n>`` with another rollout length); ``--report`` merges them into ``benchmarks/results/estimators.json`` and
``estimators_<task>.png``. Records of a trainer version that a later change to the estimators superseded move
to a folder named after its commit (``estimators/<task>/<commit>/``): kept, and left out of the report.

``--update_timing N`` measures what an estimator's update costs, controlled: each estimator trains N + 1
PPO iterations and plays the rollout of one more from the same seed, one after the other in this run (the
same machine and load), without evaluations; the updates of iterations 2 to N + 1 are timed (the first
carries one-off costs; an update's time is logged by the next rollout), against GAE's: an iteration's mean,
and a minibatch's (the target-KL stop ends iterations after different numbers of minibatches). Early in
training the policies have barely moved, so the estimators update on rollouts alike. Writes ``benchmarks/results/estimators_update_time_<task>.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from common import (
    TARGET,
    add_checkpoint_argument,
    add_learning_arguments,
    isolated,
    learning_settings,
    train_twosome,
    write_json,
)
from sample_efficiency import TASKS, method_figures, ratios_to_baseline

from trl_embodied import EmbodiedPPOConfig

RESULTS = Path(__file__).parent / "results"
RUNS = RESULTS / "estimators"
ESTIMATORS = ("gae", "grpo", "rloo", "gigpo")
DEFAULT_ROLLOUT_STEPS = EmbodiedPPOConfig.__dataclass_fields__["rollout_steps"].default


def row_name(estimator: str, history_length: int = 0, rollout_steps: int = DEFAULT_ROLLOUT_STEPS) -> str:
    """``"gigpo"``; ``"gigpo_history2"`` for prompts with the last 2 actions; ``"gigpo_rollout200"`` for
    rollouts of 200 decision steps instead of the trainer's default."""
    return (
        estimator
        + (f"_history{history_length}" if history_length else "")
        + (f"_rollout{rollout_steps}" if rollout_steps != DEFAULT_ROLLOUT_STEPS else "")
    )


def baseline_row(record: dict) -> str:
    """GAE's row with the same rollout length: what a run is compared with."""
    return row_name("gae", 0, record["rollout_steps"])


def default_twosome_runs(task: str) -> list[dict]:
    """``sample_efficiency.py``'s TWOSOME runs of ``task`` at the trainer's defaults (no trainer settings,
    history, bf16, warm start or env arguments of their own): GAE at the default rollout length, the very
    runs this benchmark's ``--estimator gae`` would make (a seed names one run), so the report takes them
    as the ``gae`` row where this benchmark ran none of its own. Records of the script before it wrote
    ``trainer_settings`` (unseeded inits, another evaluation timing) are not those runs and are left out."""
    runs = []
    for path in sorted((RESULTS / "sample_efficiency" / task).glob("twosome_seed*.json")):
        record = json.loads(path.read_text())
        if (
            record.get("trainer_settings") == {}
            and not record.get("history_length")
            and not record.get("bf16")
            and not record.get("env_kwargs")
            and "warm_start_sft" not in record
        ):
            runs.append(
                {
                    **record,
                    "estimator": "gae",
                    "rollout_steps": DEFAULT_ROLLOUT_STEPS,
                    "source": str(path.relative_to(RESULTS)),
                }
            )
    return runs


def report() -> dict:
    from trl_embodied.plotting import plot_learning_curves

    summary: dict = {"target_success": TARGET, "tasks": {}}
    for task_dir in sorted(p for p in RUNS.iterdir() if p.is_dir()):
        records: dict[str, list[dict]] = {}
        for path in sorted(task_dir.glob("*.json")):
            record = json.loads(path.read_text())
            name = row_name(record["estimator"], record.get("history_length", 0), record["rollout_steps"])
            records.setdefault(name, []).append(record)
        needs_default_gae = any(
            baseline_row(runs[0]) == "gae" for name, runs in records.items() if not name.startswith("gae")
        )
        if needs_default_gae and "gae" not in records and (borrowed := default_twosome_runs(task_dir.name)):
            records["gae"] = borrowed
        rows = {estimator: method_figures(runs) for estimator, runs in records.items()}
        for estimator, runs in records.items():  # what each costs: update time and peak memory
            rows[estimator]["update_seconds_per_iteration"] = [
                r["seconds_per_iteration"]["update"] for r in runs
            ]
            rows[estimator]["peak_rss_mb"] = [r.get("peak_rss_mb") for r in runs]
            # What each run played: before commit eccc690 a group estimator's slots that waited for their
            # group took no steps, and its runs ended short of their budget.
            rows[estimator]["env_steps_played"] = [
                max(row.get("env_steps", 0) for row in r["history"]) for r in runs
            ]
            # Group estimators: how many updates old the learned steps were (mean and max over updates).
            # NaN: an update that had no rows to learn from.
            lags = [
                [
                    row["rollout/policy_lag"]
                    for row in r["history"]
                    if np.isfinite(row.get("rollout/policy_lag", np.nan))
                ]
                for r in runs
            ]
            if any(lags):
                rows[estimator]["policy_lag_mean"] = [float(np.mean(run)) if run else None for run in lags]
                rows[estimator]["policy_lag_max"] = [max(run) if run else None for run in lags]
        for estimator, row in rows.items():
            gae = rows.get(baseline_row(records[estimator][0]))
            if estimator.startswith("gae") or gae is None:
                continue
            # GAE's steps over the estimator's ("ratio"), or GAE's budget over them where GAE never got there
            row["steps_ratio_gae_over_estimator"] = ratios_to_baseline(row, gae)
            gae_update = [t for t in gae["update_seconds_per_iteration"] if t]
            own_update = [t for t in row["update_seconds_per_iteration"] if t]
            if gae_update and own_update:  # the mean update of an iteration, against GAE's on the same task
                row["update_time_ratio_to_gae"] = (sum(own_update) / len(own_update)) / (
                    sum(gae_update) / len(gae_update)
                )
        summary["tasks"][task_dir.name] = rows
        plot_learning_curves(
            {estimator: [r["history"] for r in runs] for estimator, runs in records.items()},
            RESULTS / f"estimators_{task_dir.name}",
            title=f"{task_dir.name.replace('_', ' ')}: advantage estimators",
        )
        for estimator, row in rows.items():
            print(
                f"{task_dir.name} {estimator}: steps to {TARGET} greedy success {row['steps_to_target']} "
                f"(seeds {row['seeds']}, budgets {row['budget_env_steps']}), final {row['final_greedy_success']}"
            )
    write_json(RESULTS / "estimators.json", summary)
    return summary


def timed_updates(
    task: str, estimator: str, seed: int, iterations: int, settings: dict, model: str | None = None
) -> dict:
    """Seconds of each PPO update of ``iterations + 2`` iterations, but the first's and the last's. The last
    iteration only plays its rollout, which logs the update before it: its own update would be timed by no
    one (and can run all its minibatches: half an hour)."""
    from transformers import TrainerCallback

    transitions = settings["num_envs"] * settings["rollout_steps"]

    class StopAfterTheLastRollout(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            # An iteration's rollout runs in its first optimizer step.
            if state.global_step > (iterations + 1) * args.optimizer_steps_per_rollout:
                control.should_training_stop = True

    trainer, record = train_twosome(
        TASKS[task],
        seed=seed,
        model=model,
        advantage_estimator=estimator,
        total_env_steps=(iterations + 2) * transitions,
        eval_every=10**9,  # no evaluation but the one before training
        eval_episodes=1,
        callbacks=[StopAfterTheLastRollout()],
        **settings,
    )
    history = record["history"]
    starts = [i for i, row in enumerate(history) if "time/scoring_seconds" in row]  # a rollout's first row
    rollouts = [history[i] for i in starts]
    # Minibatches that ran a forward and backward (rows with a policy loss; the target-KL stop and
    # all-dropped minibatches run none), per iteration.
    forwarded = [
        sum("loss/policy" in row for row in history[begin:end])
        for begin, end in zip(starts, starts[1:] + [len(history)], strict=True)
    ]
    timed = range(1, iterations + 1)
    # An iteration's update time is logged with the next iteration's rollout.
    updates = [rollouts[k + 1]["time/update_seconds"] for k in timed]
    return {
        "update_seconds": updates,
        "mean_update_seconds": sum(updates) / len(updates),
        "minibatches_forwarded": [forwarded[k] for k in timed],
        "seconds_per_forwarded_minibatch": sum(updates) / ran
        if (ran := sum(forwarded[k] for k in timed))
        else None,
        # Every estimator's iterations play num_envs * rollout_steps (before commit eccc690 a group
        # estimator's slots that waited for their group played none: its iterations played fewer).
        "env_steps_per_iteration": np.diff([0] + [row["env_steps"] for row in rollouts]).tolist(),
        "states_scored_per_rollout": [row["rollout/states_scored"] for row in rollouts],
        "optimizer_steps_run": trainer.state.global_step,
        "peak_rss_mb": record["peak_rss_mb"],
        "device": record["device"],
        "code_version": record["code_version"],
    }


def update_timing(args: argparse.Namespace) -> dict:
    settings = dict(
        num_envs=args.num_envs,
        group_size=args.group_size,
        rollout_steps=args.rollout_steps,
        history_length=args.history_length,
    )
    header = {"task": args.task, "iterations_timed": args.update_timing, **settings}
    result = {**header, "seeds": {}}
    path = RESULTS / f"estimators_update_time_{args.task}.json"
    if path.exists():  # seeds measured by earlier runs with the same settings stay in the record
        earlier = json.loads(path.read_text())
        if {key: earlier.get(key) for key in header} == header:
            result["seeds"] = earlier["seeds"]
    for seed in args.seed:
        rows = {
            estimator: isolated(timed_updates, args.task, estimator, seed, args.update_timing, settings)
            for estimator in args.estimator
        }
        for estimator, row in rows.items():
            if "gae" in rows:
                gae = rows["gae"]
                row["update_time_ratio_to_gae"] = row["mean_update_seconds"] / gae["mean_update_seconds"]
                per_minibatch = row["seconds_per_forwarded_minibatch"], gae["seconds_per_forwarded_minibatch"]
                row["minibatch_time_ratio_to_gae"] = (
                    per_minibatch[0] / per_minibatch[1] if None not in per_minibatch else None
                )
            print(
                f"{args.task} seed {seed} {estimator}: update {row['mean_update_seconds']:.1f} s an iteration "
                f"({', '.join(f'{t:.0f}' for t in row['update_seconds'])}; minibatches run "
                f"{row['minibatches_forwarded']}, {row['seconds_per_forwarded_minibatch'] or 0:.1f} s each)"
                + (
                    f", {row['update_time_ratio_to_gae']:.2f}x GAE's an iteration, "
                    f"{row['minibatch_time_ratio_to_gae'] or 0:.2f}x a minibatch"
                    if "gae" in rows
                    else ""
                )
            )
        result["seeds"][str(seed)] = rows
        write_json(path, with_pooled_ratios(result))  # each seed is kept as soon as it is measured
    return result


def with_pooled_ratios(result: dict) -> dict:
    """``result`` with ``"over_seeds"``: each estimator's update time against GAE's pooled over the seeds that
    timed both (all their timed updates summed, so one iteration the target-KL stop made long weighs what it
    cost), an iteration's and a minibatch's."""
    totals: dict[str, dict[str, float]] = {}
    for rows in result["seeds"].values():
        if "gae" not in rows:
            continue
        for estimator, row in rows.items():
            total = totals.setdefault(
                estimator, {"seeds": 0, "seconds": 0.0, "iterations": 0, "minibatches": 0}
            )
            total["seeds"] += 1
            total["seconds"] += sum(row["update_seconds"])
            total["iterations"] += len(row["update_seconds"])
            total["minibatches"] += sum(row["minibatches_forwarded"])
    gae = totals.get("gae")
    result["over_seeds"] = {
        estimator: {
            "seeds": total["seeds"],
            "update_time_ratio_to_gae": (total["seconds"] / total["iterations"])
            / (gae["seconds"] / gae["iterations"]),
            "minibatch_time_ratio_to_gae": (total["seconds"] / total["minibatches"])
            / (gae["seconds"] / gae["minibatches"])
            if total["minibatches"] and gae["minibatches"]
            else None,
        }
        for estimator, total in totals.items()
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="tomato_salad")
    parser.add_argument("--estimator", choices=ESTIMATORS, nargs="+", default=list(ESTIMATORS))
    parser.add_argument(
        "--rollout_steps",
        type=int,
        default=DEFAULT_ROLLOUT_STEPS,
        help="Decision steps per env per iteration, for every estimator (the trainer's default: 32).",
    )
    parser.add_argument("--num_envs", type=int, default=4)
    parser.add_argument("--group_size", type=int, default=4)
    parser.add_argument(
        "--history_length",
        type=int,
        default=0,
        help="Prompts carry the episode's last N actions (EmbodiedPPOConfig.history_length; 0: none).",
    )
    add_checkpoint_argument(parser, "DIR/<task>/<estimator>_seed<k>")
    parser.add_argument(
        "--update_timing",
        type=int,
        metavar="N",
        help="Only time N updates of each estimator, controlled (see above), instead of learning runs.",
    )
    add_learning_arguments(parser, total_env_steps=10_240)
    args = parser.parse_args()
    if args.report:
        report()
        return
    if args.update_timing:
        update_timing(args)
        return
    for seed in args.seed:
        for estimator in args.estimator:
            name = f"{row_name(estimator, args.history_length, args.rollout_steps)}_seed{seed}"
            _, record = train_twosome(
                TASKS[args.task],
                seed=seed,
                advantage_estimator=estimator,
                group_size=args.group_size,
                num_envs=args.num_envs,
                rollout_steps=args.rollout_steps,
                history_length=args.history_length,
                checkpoint_dir=args.checkpoint_dir / args.task / name if args.checkpoint_dir else None,
                **learning_settings(args),
            )
            record.update(
                estimator=estimator,
                task=args.task,
                seed=seed,
                total_env_steps=args.total_env_steps,
                rollout_steps=args.rollout_steps,
                num_envs=args.num_envs,
                group_size=args.group_size,
                history_length=args.history_length,
            )
            write_json(RUNS / args.task / f"{name}.json", record, indent=1)
            print(
                f"{args.task} {estimator} seed {seed}: steps to {TARGET} greedy success {record['steps_to_target']}"
            )


if __name__ == "__main__":
    main()
