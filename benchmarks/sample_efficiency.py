"""Sample efficiency: TWOSOME (EmbodiedPPOTrainer, word normalization, the default model) against PPO
from scratch with an MLP on symbolic observations, and the untrained model's zero-shot success.

Every ``--eval_every`` env steps each run plays ``--eval_episodes`` greedy episodes on held-out seeds;
the figure of merit is the env steps until greedy success first reaches 0.9 (0.8 on the BabyAI levels,
GLAM's figure), and the ratio
PPO-MLP / TWOSOME on each task (PPO-MLP gets ``--mlp_budget_factor`` times TWOSOME's budget, so "not
reached" means not reached within that many steps).

Runs are long on CPU, so each (task, method, seed) is its own invocation and writes its own file under
``benchmarks/results/sample_efficiency/``; ``--report`` merges whatever has finished into
``benchmarks/results/sample_efficiency.json`` and the plots ``sample_efficiency_<task>.png/.svg``.

    python benchmarks/sample_efficiency.py --task tomato_salad --method twosome --seed 0
    python benchmarks/sample_efficiency.py --task tomato_salad --method mlp --seed 0 1 2
    python benchmarks/sample_efficiency.py --task tomato_salad --method zero_shot
    python benchmarks/sample_efficiency.py --report

BabyAI levels draw a new layout every episode: evaluate on more episodes there
(``--task babyai_gotoredball --eval_episodes 20``).

``scienceworld_find_non_living_thing`` is ScienceWorld's task of that name, variation 0, in its easy setting
(teleporting between rooms), with the actions that focus on, pick up, teleport or look around offered, and
the moves to the task's red box (``TASK_ENV_KWARGS``; 25-104 a room of the engine's 97-1059): a short
TWOSOME run against the untrained model, no PPO-MLP (no symbolic observation).

The household tasks offer a state's applicable actions, as the paper's do. ``--valid_actions all``
runs the harder variant that offers the whole vocabulary in every state (its inapplicable actions
no-ops); its records go to ``<task>_all_actions/`` and form rows of their own.

A TWOSOME run of hours can keep checkpoints (``--checkpoint_dir runs/sample_efficiency``): the same command
continues it where it was stopped, and its record counts the wall time of every part.

``--history_length N`` gives TWOSOME's prompts the episode's last N actions (GLAM's BabyAI prompts carry the
last 3 steps), so a greedy policy can tell a loop's second turn from its first; records go to
``<task>_history<N>/`` and are compared with the base task's PPO-MLP runs (PPO-MLP reads no prompt).

``--warm_start`` starts both methods from the same planner demonstrations (seeds 0-3): TWOSOME from a
LoRA adapter that TRL's SFTTrainer fits to them (10 epochs, lr 1e-3), PPO-MLP from behaviour cloning of
them (``MLPPPOConfig.demonstration_episodes``), so the ratio stays fair; records go to
``<task>_warm_start/``. It is the route for a task whose reward the cold start never meets.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from common import (
    EVAL_SEED,
    TARGET,
    TARGET_BY_ENV_FAMILY,
    add_bf16_argument,
    add_checkpoint_argument,
    add_learning_arguments,
    final_greedy_success,
    learning_settings,
    paper_gamma,
    steps_to_sampled_target,
    steps_to_target,
    target_success,
    train_twosome,
    warm_start,
    write_json,
)

RESULTS = Path(__file__).parent / "results"
RUNS = RESULTS / "sample_efficiency"
TASKS = {
    "tomato_salad": "trl_embodied/Overcooked-TomatoSalad-v0",
    "tomato_lettuce_salad": "trl_embodied/Overcooked-TomatoLettuceSalad-v0",
    "food_preparation": "trl_embodied/Household-FoodPreparation-v0",
    "entertainment": "trl_embodied/Household-Entertainment-v0",
    # BabyAI-Text's levels (the ``textenvs`` extra): a new layout every episode, so evaluations need more
    # episodes than a fixed layout's (--eval_episodes 20), and the target is GLAM's 0.8.
    "babyai_gotoredball": "trl_embodied/BabyAI-GoToRedBall-v0",
    "babyai_gotolocal": "trl_embodied/BabyAI-GoToLocal-v0",
    "scienceworld_find_non_living_thing": "trl_embodied/ScienceWorld-v0",
}
#: Keyword arguments that make a task of an engine's env id (the verbs a CPU can score every state of).
TASK_ENV_KWARGS = {
    "scienceworld_find_non_living_thing": {
        "task_name": "find-non-living-thing",
        "variation": 0,
        "simplifications": "easy",
        # "move" alone offered 536 actions in the kitchen (every object to every container); the task's
        # moves all go to the red box.
        "action_pattern": r"(focus on|pick up|teleport to|look around)\b|move .* to red box$",
        "max_steps": 30,
    },
}
#: Trainer settings of a task where the defaults do not fit the machine: an update minibatch of 32
#: ScienceWorld states (then with every "move" offered: 46 actions a state in the hallway, hundreds
#: elsewhere; one sequence per state) took 19.7 GB and was killed for memory on a 24 GB machine; 8 states of
#: 50 actions take ~6 GB (benchmarks/README.md, large action sets).
TASK_TRAINER_SETTINGS = {"scienceworld_find_non_living_thing": {"per_device_train_batch_size": 8}}
#: Records of TWOSOME with the Overcooked slots' earlier texts (only serve and chop followed the state).
TEXT_ONLY_VARIANT = "_static_slot_texts"
#: Variants that change only what the LLM reads (its prompt), not what PPO-MLP sees: their TWOSOME rows are
#: compared with the base task's PPO-MLP runs.
PROMPT_ONLY_VARIANT = re.compile(rf"({TEXT_ONLY_VARIANT}|_history\d+)$")
WARM_START_DEMONSTRATIONS = 4  # planner episodes both methods start from with --warm_start
HOUSEHOLD_TASKS = ("food_preparation", "entertainment")


def env_kwargs_of(task: str, valid_actions: str) -> dict:
    """The env's keyword arguments: the task's own, and the chosen action set (household tasks only)."""
    kwargs = dict(TASK_ENV_KWARGS.get(task, {}))
    if valid_actions == "applicable":
        return kwargs
    if task not in HOUSEHOLD_TASKS:
        raise SystemExit(f"--valid_actions {valid_actions} applies to the household tasks {HOUSEHOLD_TASKS}.")
    return {**kwargs, "valid_actions": valid_actions}


def run_mlp(
    task: str,
    seed: int,
    total_env_steps: int,
    eval_every: int,
    eval_episodes: int,
    env_kwargs: dict,
    demonstration_episodes: int = 0,
) -> dict:
    from trl_embodied.baselines import MLPPPOConfig, train_mlp_ppo

    config = MLPPPOConfig(
        env_id=TASKS[task],
        env_kwargs=env_kwargs,
        gamma=paper_gamma(TASKS[task]),
        total_env_steps=total_env_steps,
        eval_every=eval_every,
        eval_episodes=eval_episodes,
        demonstration_episodes=demonstration_episodes,
        seed=seed,
    )
    start = time.perf_counter()
    _, history = train_mlp_ppo(config, progress=False)
    return {"history": history, "wall_seconds": time.perf_counter() - start}


def run_zero_shot(task: str, eval_episodes: int, env_kwargs: dict) -> dict:
    """The untrained model's play: greedy (SayCan-style, the figure in the table), and for comparison
    sampled and greedy without repeats; each also for the uniform policy, the control that tells the
    model's prior from what a way of playing finds on its own (without repeats, a search of the actions)."""
    import torch

    from trl_embodied import ActionScorer, evaluate_policy, load_base_model
    from trl_embodied.evaluation import PLAY_MODES, UNIFORM

    model, tokenizer = load_base_model()
    policies = {"model": ActionScorer(model, tokenizer, "word"), "uniform": UNIFORM}
    results = {
        policy_name: {
            mode: evaluate_policy(
                policy,
                TASKS[task],
                eval_episodes,
                seed=EVAL_SEED,
                generator=torch.Generator().manual_seed(0),
                env_kwargs=env_kwargs,
                **play,
            )
            for mode, play in PLAY_MODES.items()
        }
        for policy_name, policy in policies.items()
    }
    greedy = results["model"]["greedy"]
    return {
        "history": [{"env_steps": 0, **greedy.metrics("eval_")}],
        "episodes": greedy.episodes,
        "play_modes": {
            policy_name: {mode: result.metrics() for mode, result in modes.items()}
            for policy_name, modes in results.items()
        },
    }


def success_rate(rate: float) -> str:
    """A success rate with the digits it has: 0.15 stays 0.15 (10 or 20 episodes), 1 reads 1.0."""
    return f"{rate:.2f}" if round(rate, 1) != round(rate, 2) else f"{rate:.1f}"


def markdown_table(summary: dict) -> str:
    """The README's table: per task and method, env steps to the target per seed (greedy evaluations and
    sampled training episodes), and the ratios PPO-MLP / TWOSOME."""
    names = {
        "twosome": "TWOSOME (default model, word norm.)",
        "mlp": "PPO-MLP from scratch",
        "zero_shot": "zero-shot (the untrained model)",
    }

    def seeds(values: list) -> str:
        return ", ".join("not reached" if v is None else str(v) for v in values)

    lines = [
        "| task | method | budget (env steps) | steps to the target greedy success, per seed "
        "| steps to the target success of sampled training episodes | final greedy success |",
        "|---|---|---|---|---|---|",
    ]
    for task, row in summary["tasks"].items():
        name_of_task = task.replace("_", " ")
        for method, figures in row.items():
            if not isinstance(figures, dict):
                continue
            final = ", ".join(success_rate(s) for s in figures["final_greedy_success"])
            budget = ", ".join(sorted({str(b) for b in figures["budget_env_steps"]}))
            name = names[method]
            if task.endswith("_warm_start"):
                name = {
                    "twosome": "TWOSOME (default model, word norm.) from an SFT adapter",
                    "mlp": "PPO-MLP from behaviour cloning",
                }.get(method, name) + f" on {WARM_START_DEMONSTRATIONS} planner demonstrations"
            if method == "twosome":
                epochs = "/".join(str(e) for e in sorted(set(figures["num_ppo_epochs"])))
                devices = ", ".join(sorted({d for d in figures["device"] if "CPU" not in d}))
                name += f", {epochs} PPO epoch(s)" + (f", on {devices}" if devices else "")
                if history := max(figures["history_length"]):
                    name += f", prompts with the last {history} actions"
            name += ", bf16 autocast" if any(figures.get("bf16", [])) else ""
            if method == "zero_shot":  # no training: greedy success, and the other ways to play it
                others = "; ".join(
                    f"{policy_name}: "
                    + ", ".join(
                        f"{mode.replace('_', ' ')} {success_rate(m['success_rate'])}"
                        for mode, m in modes.items()
                    )
                    for policy_name, modes in figures["play_modes"].items()
                )
                lines.append(f"| {name_of_task} | {name} | 0 | | {others} | {final} |")
                continue
            lines.append(
                f"| {name_of_task} | {name} | {budget} | {seeds(figures['steps_to_target'])} "
                f"| {seeds(figures['steps_to_sampled_target'])} | {final} |"
            )
        greedy = row.get("ratio_mlp_to_twosome_steps_per_seed")
        sampled = row.get("ratio_mlp_to_twosome_sampled_steps_per_seed")
        if greedy or sampled:
            ratios = [
                ", ".join(
                    f"{r['ratio']:.1f}x" if "ratio" in r else f"> {r['at_least']:.0f}x (PPO-MLP not reached)"
                    for r in values or []
                )
                for values in (greedy, sampled)
            ]
            lines.append(
                f"| {name_of_task} | ratio PPO-MLP / TWOSOME steps | | {ratios[0]} | {ratios[1]} | |"
            )
    return "\n".join(lines)


def ratios_to_baseline(method: dict, baseline: dict, figure: str = "steps_to_target") -> list[dict]:
    """Per seed that ``method`` reached the target: ``{"seed", "ratio"}`` (the baseline's env steps over
    the method's), or ``{"seed", "at_least"}`` (the baseline's whole budget over the method's steps) where
    the baseline never got there. Both hold per-seed lists (:func:`method_figures`): ``seeds``, ``figure``
    and, for the baseline, ``budget_env_steps``. The baseline is PPO-MLP here, GAE in ``estimators.py``."""
    per_seed = []
    for seed, steps in zip(method["seeds"], method[figure], strict=True):
        if seed not in baseline["seeds"] or not steps:
            continue
        index = baseline["seeds"].index(seed)
        if baseline[figure][index]:
            per_seed.append({"seed": seed, "ratio": baseline[figure][index] / steps})
        else:
            per_seed.append({"seed": seed, "at_least": baseline["budget_env_steps"][index] / steps})
    return per_seed


def method_figures(records: list[dict]) -> dict:
    """One method's per-seed figures, from its run records (in seed-file order), against each record's
    task's target success (:func:`common.target_success`)."""
    targets = [target_success(TASKS[r["task"]]) for r in records]
    return {
        "seeds": [r["seed"] for r in records],
        "budget_env_steps": [r["total_env_steps"] for r in records],
        "target_success": targets,
        "steps_to_target": [steps_to_target(r["history"], t) for r, t in zip(records, targets, strict=True)],
        "steps_to_sampled_target": [
            steps_to_sampled_target(r["history"], t) for r, t in zip(records, targets, strict=True)
        ],
        "final_greedy_success": [final_greedy_success(r["history"]) for r in records],
        "wall_seconds": [r.get("wall_seconds") for r in records],
        "bf16": [r.get("bf16", False) for r in records],
    }


def report() -> dict:
    from trl_embodied.plotting import plot_learning_curves

    summary = {"target_success": TARGET, "target_success_by_env_family": TARGET_BY_ENV_FAMILY, "tasks": {}}
    for task_dir in sorted(p for p in RUNS.iterdir() if p.is_dir()):
        task = task_dir.name
        runs: dict[str, list[dict]] = {}
        for path in sorted(task_dir.glob("*.json")):
            record = json.loads(path.read_text())
            runs.setdefault(record["method"], []).append(record)
        row: dict = {}
        for method, records in runs.items():
            row[method] = method_figures(records)
            if method == "zero_shot":
                row[method]["play_modes"] = records[0].get("play_modes", {})
            if method == "twosome":
                row[method]["seconds_per_iteration"] = [r["seconds_per_iteration"] for r in records]
                row[method]["num_ppo_epochs"] = [r["num_ppo_epochs"] for r in records]
                row[method]["device"] = [r.get("device", "x86_64 CPU") for r in records]
                row[method]["history_length"] = [r.get("history_length", 0) for r in records]
        mlp = row.get("mlp")
        if mlp is None and PROMPT_ONLY_VARIANT.search(task):
            # PPO-MLP reads the symbolic state, not the prompt: the base task's runs are its runs.
            base = RUNS / PROMPT_ONLY_VARIANT.sub("", task)
            mlp = method_figures([json.loads(p.read_text()) for p in sorted(base.glob("mlp_seed*.json"))])
        if "twosome" in row and mlp:
            for figure, ratio_name in (
                ("steps_to_target", "ratio_mlp_to_twosome_steps"),
                ("steps_to_sampled_target", "ratio_mlp_to_twosome_sampled_steps"),
            ):
                per_seed = ratios_to_baseline(row["twosome"], mlp, figure)
                row[ratio_name] = [r["ratio"] for r in per_seed if "ratio" in r]
                row[f"{ratio_name}_per_seed"] = per_seed
        summary["tasks"][task] = row
        curves = {
            {"twosome": "TWOSOME (LLM, word norm.)", "mlp": "PPO-MLP from scratch"}[m]: [
                r["history"] for r in records
            ]
            for m, records in runs.items()
            if m in ("twosome", "mlp")
        }
        if curves:
            plot_learning_curves(curves, RESULTS / f"sample_efficiency_{task}", title=task.replace("_", " "))
        for method, figures in row.items():
            if isinstance(figures, dict):
                print(
                    f"{task} {method}: steps to {figures['target_success'][0]} greedy success {figures['steps_to_target']} "
                    f"(budgets {figures['budget_env_steps']}), final {figures['final_greedy_success']}"
                )
    print(markdown_table(summary))
    write_json(RESULTS / "sample_efficiency.json", summary)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="tomato_salad")
    parser.add_argument("--method", choices=["twosome", "mlp", "zero_shot"], default="twosome")
    parser.add_argument("--mlp_budget_factor", type=int, default=10)
    parser.add_argument(
        "--valid_actions",
        choices=["applicable", "all"],
        default="applicable",
        help="Household tasks: the applicable actions of a state (the paper's), or the whole vocabulary.",
    )
    parser.add_argument(
        "--warm_start",
        action="store_true",
        help=f"Both methods start from {WARM_START_DEMONSTRATIONS} planner demonstrations (SFT / behaviour cloning).",
    )
    add_checkpoint_argument(parser, "DIR/<task>/twosome_seed<k> (TWOSOME)")
    parser.add_argument(
        "--history_length",
        type=int,
        default=0,
        help="TWOSOME: prompts carry the episode's last N actions (EmbodiedPPOConfig.history_length; GLAM's "
        "BabyAI prompts carry 3 steps); records go to <task>_history<N>/.",
    )
    add_bf16_argument(parser)
    add_learning_arguments(parser, total_env_steps=10_240)
    args = parser.parse_args()
    if args.report:
        report()
        return
    if args.history_length and args.method != "twosome":
        raise SystemExit("--history_length applies to --method twosome (PPO-MLP reads no prompt).")
    env_kwargs = env_kwargs_of(args.task, args.valid_actions)
    run_dir = RUNS / (
        args.task
        + (f"_{args.valid_actions}_actions" if args.valid_actions != "applicable" else "")
        + ("_warm_start" if args.warm_start else "")
        + (f"_history{args.history_length}" if args.history_length else "")
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    target = target_success(TASKS[args.task])
    trainer_settings = TASK_TRAINER_SETTINGS.get(args.task, {})
    for seed in args.seed if args.method != "zero_shot" else [0]:
        if args.method == "twosome":
            budget = args.total_env_steps
            warm = {}
            if args.warm_start:
                warm["adapter_path"], sft_cost = warm_start(
                    TASKS[args.task], seed, WARM_START_DEMONSTRATIONS, 10.0, 1e-3, env_kwargs=env_kwargs
                )
            _, record = train_twosome(
                TASKS[args.task],
                seed=seed,
                bf16=args.bf16,
                env_kwargs=env_kwargs,
                history_length=args.history_length,
                checkpoint_dir=args.checkpoint_dir / run_dir.name / f"twosome_seed{seed}"
                if args.checkpoint_dir
                else None,
                **warm,
                **trainer_settings,
                **learning_settings(args),
            )
            record["trainer_settings"] = trainer_settings
            record["history_length"] = args.history_length
            if args.warm_start:
                record["warm_start_sft"] = sft_cost
        elif args.method == "mlp":
            budget = args.total_env_steps * args.mlp_budget_factor
            demonstrations = WARM_START_DEMONSTRATIONS if args.warm_start else 0
            record = run_mlp(
                args.task, seed, budget, args.eval_every, args.eval_episodes, env_kwargs, demonstrations
            )
            record["demonstration_episodes"] = demonstrations
        else:
            budget = 0
            record = run_zero_shot(args.task, args.eval_episodes, env_kwargs)
        record.update(
            method=args.method,
            task=args.task,
            seed=seed,
            total_env_steps=budget,
            eval_episodes=args.eval_episodes,
            env_kwargs=env_kwargs,
            target_success=target,
            steps_to_target=steps_to_target(record["history"], target),
        )
        path = run_dir / f"{args.method}_seed{seed}.json"
        write_json(path, record, indent=1)
        print(
            f"{args.task} {args.method} seed {seed}: steps to {target} greedy success "
            f"{record['steps_to_target']} of {budget}"
        )


if __name__ == "__main__":
    main()
