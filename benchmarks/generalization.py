"""Generalization: train on Food Preparation, then play the unseen household tasks zero-shot (the base
model, adapter disabled) and with the trained adapter.

Target: the trained adapter's plain greedy play beats the base model's on most unseen tasks, on every seed.

    python benchmarks/generalization.py [--total_env_steps 5120] [--episodes 10]
    python benchmarks/generalization.py --warm_start --total_env_steps 2048 [--num_ppo_epochs 1]

``--warm_start`` first clones Food Preparation's planner demonstrations into the adapter (TRL's
SFTTrainer, as benchmarks/warm_start.py does), then runs PPO from it: the route for a base model whose
prior never finds the sparse reward on its own.

Writes benchmarks/results/generalization.json (``generalization_warm_start.json`` with ``--warm_start``,
a ``_<n>_epochs`` suffix (``_1_epoch`` for one) with ``--num_ppo_epochs n`` other than the trainer's
default, ``_history<n>`` with ``--history_length n`` (prompts that carry the last n actions, in training
and on the unseen tasks), ``_raw_advantages`` with ``--raw_advantages``, ``_seed<k>`` for a seed other than 0) and prints the Markdown table. The one-epoch results (``..._1_epoch.json``) are from
before four epochs became the default.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import EVAL_SEED, add_bf16_argument, greedy_trace, train_twosome, warm_start, write_json

RESULTS = Path(__file__).parent / "results"
TRAIN_ENV = "trl_embodied/Household-FoodPreparation-v0"


def main() -> None:
    import torch

    from trl_embodied import EmbodiedPPOConfig
    from trl_embodied.envs.household import UNSEEN_TASKS
    from trl_embodied.evaluation import (
        PLAY_MODES,
        UNIFORM,
        compare_zero_shot,
        evaluate_policy,
        format_comparison,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total_env_steps", type=int, default=5120)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    add_bf16_argument(parser)
    parser.add_argument(
        "--stop_at_target",
        action="store_true",
        help="Stop training once Food Preparation is solved greedily.",
    )
    parser.add_argument(
        "--warm_start",
        action="store_true",
        help="SFT on planner demonstrations of Food Preparation (4 episodes, 10 epochs, lr 1e-3) before PPO.",
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
    args = parser.parse_args()

    overrides = {
        "num_ppo_epochs": args.num_ppo_epochs,
        "history_length": args.history_length,
        "normalize_advantages": not args.raw_advantages,
    }
    sft_cost = None
    if args.warm_start:
        overrides["adapter_path"], sft_cost = warm_start(TRAIN_ENV, args.seed, 4, 10.0, 1e-3)
    trainer, record = train_twosome(
        TRAIN_ENV,
        total_env_steps=args.total_env_steps,
        eval_every=1024,
        eval_episodes=args.episodes,
        seed=args.seed,
        stop_at_target=args.stop_at_target,
        bf16=args.bf16,
        **overrides,
    )
    model = trainer.accelerator.unwrap_model(trainer.model)
    unseen = [f"trl_embodied/Household-{name}-v0" for name in UNSEEN_TASKS]
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
    results = {
        "train_env": TRAIN_ENV,
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
        "greedy_traces": [  # the training task's was taken when its training ended
            record["greedy_trace"],
            *(greedy_trace(model, env_id, args.history_length) for env_id in unseen),
        ],
        "history_length": args.history_length,
        "normalize_advantages": not args.raw_advantages,
        "trained_beats_zero_shot_on": {mode: f"{n} of {len(unseen)}" for mode, n in wins.items()},
        "episodes": args.episodes,
        "seed": args.seed,
    }
    name = "generalization_warm_start" if args.warm_start else "generalization"
    if args.num_ppo_epochs != EmbodiedPPOConfig.num_ppo_epochs:
        name += f"_{args.num_ppo_epochs}_epoch{'s' if args.num_ppo_epochs != 1 else ''}"
    if args.history_length:
        name += f"_history{args.history_length}"
    if args.raw_advantages:
        name += "_raw_advantages"
    if args.seed != 0:
        name += f"_seed{args.seed}"
    write_json(RESULTS / f"{name}.json", results, indent=1)
    (RESULTS / f"{name}.md").write_text(table + "\n")
    print(f"trained beats zero-shot on {results['trained_beats_zero_shot_on']}")


if __name__ == "__main__":
    main()
