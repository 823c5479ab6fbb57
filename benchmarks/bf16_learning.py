"""Does bf16 autocast change learning? EmbodiedPPOTrainer on Tomato Salad in bf16 against float32.

Same seed, same budget, same everything but the precision (bf16 autocast runs rollout and update
alike): the default model, word normalization, the default config. The float32 run is
``sample_efficiency.py --method twosome`` of the same seed (the identical configuration; trained here if it
is missing). The figure of merit is the number of decision steps until greedy success first reaches 0.9,
and its ratio bf16 / float32. bf16 becomes the default only where it learns as well (issue: throughput).

    python benchmarks/bf16_learning.py --seed 0 --eval_episodes 4 --stop_at_target

Writes benchmarks/results/bf16_learning.json and bf16_learning.png/.svg.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import TARGET, add_learning_arguments, learning_settings, train_twosome, write_json

RESULTS = Path(__file__).parent / "results"
ENV_ID = "trl_embodied/Overcooked-TomatoSalad-v0"
FLOAT32_RUNS = RESULTS / "sample_efficiency" / "tomato_salad"


def main() -> None:
    from trl_embodied.plotting import plot_learning_curves

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_learning_arguments(parser, total_env_steps=10_240)
    args = parser.parse_args()
    seed = args.seed[0]
    settings = dict(seed=seed, **learning_settings(args))
    runs = {"bf16": train_twosome(ENV_ID, bf16=True, **settings)[1]}
    reference = FLOAT32_RUNS / f"twosome_seed{seed}.json"
    runs["float32"] = (
        json.loads(reference.read_text()) if reference.is_file() else train_twosome(ENV_ID, **settings)[1]
    )
    for name, run in runs.items():
        curve = [(r["env_steps"], r["eval_success_rate"]) for r in run["history"] if "eval_success_rate" in r]
        print(
            f"{name}: greedy success {' '.join(f'{s}:{v:.1f}' for s, v in curve)}; steps to {TARGET}: {run['steps_to_target']}"
        )
    fp32, bf16 = runs["float32"]["steps_to_target"], runs["bf16"]["steps_to_target"]
    ratio = bf16 / fp32 if fp32 and bf16 else None
    print(f"steps to {TARGET} success, bf16 / float32: {ratio if ratio is None else f'{ratio:.2f}'}")
    results = {
        "target_success": TARGET,
        "ratio_steps_bf16_to_float32": ratio,
        "float32_source": str(reference.relative_to(RESULTS)) if reference.is_file() else "trained here",
        "runs": {
            name: {
                k: run[k]
                for k in ("history", "steps_to_target", "wall_seconds", "seconds_per_iteration")
                if k in run
            }
            for name, run in runs.items()
        },
        **vars(args),
    }
    write_json(RESULTS / "bf16_learning.json", results, indent=1)
    plot_learning_curves(
        {name: [run["history"]] for name, run in runs.items()},
        RESULTS / "bf16_learning",
        title="Tomato Salad: float32 vs bf16 autocast",
    )
    print(f"wrote {RESULTS / 'bf16_learning'}.png and .svg")


if __name__ == "__main__":
    main()
