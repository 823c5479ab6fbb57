"""SFT warm start against cold start: env steps of EmbodiedPPO to reach 0.9 greedy success on Tomato Salad.

Warm: ``trl_embodied.scripts.sft`` clones planner demonstrations into a LoRA adapter with TRL's SFTTrainer,
then EmbodiedPPOTrainer continues from it (``adapter_path``). Cold: the same PPO run from a fresh adapter,
the run ``sample_efficiency.py --method twosome`` records for the same seed (run here if it is missing).
The SFT's own cost (demonstration steps, wall time) is reported beside the PPO steps.

    python benchmarks/warm_start.py --seed 0 --stop_at_target
    python benchmarks/warm_start.py --report
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import TARGET, add_learning_arguments, learning_settings, train_twosome, warm_start, write_json

RESULTS = Path(__file__).parent / "results"
RUNS = RESULTS / "warm_start"
COLD_RUNS = RESULTS / "sample_efficiency" / "tomato_salad"
ENV_ID = "trl_embodied/Overcooked-TomatoSalad-v0"


def report() -> None:
    from trl_embodied.plotting import plot_learning_curves

    rows, curves = [], {"cold start (fresh adapter)": [], "warm start (SFT on planner demos)": []}
    for path in sorted(RUNS.glob("warm_seed*.json")):
        warm = json.loads(path.read_text())
        cold_path = COLD_RUNS / f"twosome_seed{warm['seed']}.json"
        cold = json.loads(cold_path.read_text()) if cold_path.is_file() else None
        if cold and cold["num_ppo_epochs"] != warm["num_ppo_epochs"]:
            print(f"seed {warm['seed']}: the cold run has other PPO epochs than the warm one; not compared")
            cold = None
        rows.append(
            {
                "seed": warm["seed"],
                "warm_steps_to_target": warm["steps_to_target"],
                "cold_steps_to_target": cold["steps_to_target"] if cold else None,
                "warm_budget": warm["total_env_steps"],
                **warm["sft"],
            }
        )
        curves["warm start (SFT on planner demos)"].append(warm["history"])
        if cold:
            curves["cold start (fresh adapter)"].append(cold["history"])
    summary = {"env_id": ENV_ID, "target_success": TARGET, "runs": rows}
    write_json(RESULTS / "warm_start.json", summary)
    plot_learning_curves(
        {k: v for k, v in curves.items() if v}, RESULTS / "warm_start", title="Tomato Salad: SFT warm start"
    )
    print(f"| seed | PPO env steps to {TARGET}: cold | warm | SFT: demo steps, optimizer steps, seconds |")
    print("|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['seed']} | {row['cold_steps_to_target']} | {row['warm_steps_to_target']} | "
            f"{row['demonstration_steps']}, {row['sft_optimizer_steps']}, {row['sft_wall_seconds']:.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # The fixed layout makes every planner episode the same 6 steps: few episodes, many epochs.
    parser.add_argument("--demonstration_episodes", type=int, default=4)
    parser.add_argument("--sft_epochs", type=float, default=10.0)
    parser.add_argument("--sft_learning_rate", type=float, default=1e-3, help="The PPO trainer's LoRA rate.")
    add_learning_arguments(parser, total_env_steps=10_240)
    args = parser.parse_args()
    if args.report:
        report()
        return
    RUNS.mkdir(parents=True, exist_ok=True)
    for seed in args.seed:
        adapter, cost = warm_start(
            ENV_ID, seed, args.demonstration_episodes, args.sft_epochs, args.sft_learning_rate
        )
        _, record = train_twosome(ENV_ID, seed=seed, adapter_path=adapter, **learning_settings(args))
        record.update(seed=seed, total_env_steps=args.total_env_steps, sft=cost)
        path = RUNS / f"warm_seed{seed}.json"
        write_json(path, record, indent=1)
        print(f"warm start seed {seed}: steps to {TARGET} greedy success {record['steps_to_target']}")
        if not (COLD_RUNS / f"twosome_seed{seed}.json").is_file():
            print(f"no cold-start run for seed {seed}: python benchmarks/sample_efficiency.py --seed {seed}")


if __name__ == "__main__":
    main()
