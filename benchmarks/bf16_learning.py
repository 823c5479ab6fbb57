"""Does bf16 autocast change learning? EmbodiedPPOTrainer on Tomato Salad in bf16 against float32.

Same seeds, same budget, same everything but the precision (bf16 autocast runs rollout and update
alike): the default model, word normalization, the default config. Each seed's float32 run is
``sample_efficiency.py --method twosome`` of that seed (the identical configuration; trained here if it
is missing). The figure of merit is the number of env steps until greedy success first reaches 0.9,
and its ratio bf16 / float32 per seed. bf16 becomes the default only where it
learns as well.

    python benchmarks/bf16_learning.py --seed 0 1 2 --eval_episodes 4 --stop_at_target

Writes benchmarks/results/bf16_learning.json (after every seed) and bf16_learning.png/.svg.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import TARGET, add_learning_arguments, learning_settings, train_twosome, write_json

RESULTS = Path(__file__).parent / "results"
ENV_ID = "trl_embodied/Overcooked-TomatoSalad-v0"
FLOAT32_RUNS = RESULTS / "sample_efficiency" / "tomato_salad"


def plot(seeds: dict) -> None:
    """Greedy and training success against env steps, float32 and bf16 over the recorded seeds."""
    from trl_embodied.plotting import plot_learning_curves

    plot_learning_curves(
        {name: [seed["runs"][name]["history"] for seed in seeds.values()] for name in ("float32", "bf16")},
        RESULTS / "bf16_learning",
        title="Tomato Salad: float32 vs bf16 autocast",
    )
    print(f"wrote {RESULTS / 'bf16_learning'}.png and .svg")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_learning_arguments(parser, total_env_steps=10_240)
    args = parser.parse_args()
    if args.report:  # only redraw the figure from the recorded seeds
        plot(json.loads(RESULTS.joinpath("bf16_learning.json").read_text())["seeds"])
        return
    kept = ("history", "steps_to_target", "wall_seconds", "seconds_per_iteration")
    seeds: dict[int, dict] = {}
    for seed in args.seed:
        settings = dict(seed=seed, **learning_settings(args))
        bf16 = train_twosome(ENV_ID, bf16=True, **settings)[1]
        reference = FLOAT32_RUNS / f"twosome_seed{seed}.json"
        float32 = (
            json.loads(reference.read_text()) if reference.is_file() else train_twosome(ENV_ID, **settings)[1]
        )
        fp32_steps, bf16_steps = float32["steps_to_target"], bf16["steps_to_target"]
        seeds[seed] = {
            "ratio_steps_bf16_to_float32": bf16_steps / fp32_steps if fp32_steps and bf16_steps else None,
            "float32_source": str(reference.relative_to(RESULTS)) if reference.is_file() else "trained here",
            "runs": {
                name: {k: run[k] for k in kept if k in run}
                for name, run in (("float32", float32), ("bf16", bf16))
            },
        }
        print(
            f"seed {seed}: steps to {TARGET} greedy success, float32 {fp32_steps}, bf16 {bf16_steps}",
            flush=True,
        )
        # Written after every seed: a stopped run keeps the seeds it finished.
        write_json(
            RESULTS / "bf16_learning.json",
            {"target_success": TARGET, "env_id": ENV_ID, "seeds": seeds, **learning_settings(args)},
            indent=1,
        )
    plot(seeds)


if __name__ == "__main__":
    main()
