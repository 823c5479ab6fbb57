"""Evaluate a saved adapter against its own base model (zero-shot) on unseen tasks.

    trl-embodied evaluate --adapter_path outputs/virtualhome-food-preparation
    trl-embodied evaluate --adapter_path outputs/run --tasks Household-HeatCheese-v0 --episodes 20
    python recipes/evaluate.py --adapter_path outputs/run --play greedy_no_repeat

``--adapter_path`` is a folder written by ``EmbodiedPPOTrainer.save_model`` (or
``EmbodiedActorCritic.save_pretrained``); its base model is loaded from the name recorded there. Prints a
Markdown table (success rate and return, zero-shot vs trained) and optionally writes it as JSON.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from trl_embodied import EmbodiedActorCritic
from trl_embodied.envs.household import UNSEEN_TASKS, household_env_id
from trl_embodied.evaluation import PLAY_MODES, compare_zero_shot, format_comparison

DEFAULT_TASKS = [household_env_id(name) for name in UNSEEN_TASKS]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="trl-embodied evaluate", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--adapter_path", required=True, help="A folder saved by EmbodiedPPOTrainer.save_model."
    )
    parser.add_argument(
        "--tasks", nargs="+", default=DEFAULT_TASKS, help="Env ids (default: unseen household tasks)."
    )
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument(
        "--seed", type=int, default=10_000, help="First episode seed (training never used them)."
    )
    parser.add_argument(
        "--play",
        choices=sorted(PLAY_MODES),
        default="greedy",
        help="greedy (the most probable action), sampled (the policy as trained) or greedy_no_repeat "
        "(greedy, never repeating an action from a state it was taken from in the episode).",
    )
    parser.add_argument(
        "--history_length",
        type=int,
        default=0,
        help="Prompts begin with the last N actions, as for an adapter trained with history_length=N.",
    )
    parser.add_argument("--output", type=Path, default=None, help="Also write the table as JSON here.")
    args = parser.parse_args(argv)

    model = EmbodiedActorCritic.from_pretrained(args.adapter_path, is_trainable=False)
    rows = compare_zero_shot(
        model,
        args.tasks,
        args.episodes,
        seed=args.seed,
        history_length=args.history_length,
        **PLAY_MODES[args.play],
    )
    print(format_comparison(rows))
    if args.output:
        records = [
            {"env": r["env"], "zero_shot": r["zero_shot"].metrics(), "trained": r["trained"].metrics()}
            for r in rows
        ]
        args.output.write_text(json.dumps(records, indent=2) + "\n")
