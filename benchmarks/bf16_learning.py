"""Does bf16 autocast change learning? EmbodiedPPOTrainer on Tomato Salad in float32 and in bf16.

Same seed, same budget, same everything but the precision (bf16 autocast runs rollout and update
alike). The default model, word normalization, the default config's learning rates. Every
``--eval_every`` decision steps both runs play ``--eval_episodes`` greedy episodes; the figure of
merit is the number of decision steps until greedy success first reaches 0.9, and its ratio bf16 /
float32. bf16 becomes the default only where it learns as well (issue: throughput).

    python benchmarks/bf16_learning.py [--total_env_steps 4096] [--seed 0]

Writes benchmarks/results/bf16_learning.json and bf16_learning.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import TARGET, train_twosome

RESULTS = Path(__file__).parent / "results"


def train(bf16: bool, total_env_steps: int, eval_every: int, eval_episodes: int, seed: int) -> dict:
    _, record = train_twosome(
        "trl_embodied/Overcooked-TomatoSalad-v0",
        total_env_steps=total_env_steps,
        eval_every=eval_every,
        eval_episodes=eval_episodes,
        seed=seed,
        bf16=bf16,
    )
    curve = [
        (row["env_steps"], row["eval_success_rate"])
        for row in record["history"]
        if "eval_success_rate" in row
    ]
    return {
        "curve": curve,
        "steps_to_target": record["steps_to_target"],
        "final_success_rate": curve[-1][1],
        "wall_seconds": record["wall_seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total_env_steps", type=int, default=4096)
    parser.add_argument("--eval_every", type=int, default=512)
    parser.add_argument("--eval_episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    runs = {}
    for name, bf16 in (("float32", False), ("bf16", True)):
        runs[name] = train(bf16, args.total_env_steps, args.eval_every, args.eval_episodes, args.seed)
        run = runs[name]
        print(
            f"{name}: greedy success {' '.join(f'{s}:{r:.1f}' for s, r in run['curve'])}; "
            f"steps to {TARGET}: {run['steps_to_target']}; final {run['final_success_rate']:.2f}; "
            f"{run['wall_seconds'] / 60:.1f} min"
        )
    fp32, bf16 = runs["float32"]["steps_to_target"], runs["bf16"]["steps_to_target"]
    ratio = bf16 / fp32 if fp32 and bf16 else None
    print(f"steps to {TARGET} success, bf16 / float32: {ratio if ratio is None else f'{ratio:.2f}'}")
    results = {"target_success": TARGET, "ratio_steps_bf16_to_float32": ratio, "runs": runs, **vars(args)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bf16_learning.json").write_text(json.dumps(results, indent=2) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    for name, run in runs.items():
        steps, success = zip(*run["curve"], strict=True)
        axis.plot(steps, success, marker="o", label=name)
    axis.axhline(TARGET, color="gray", linestyle=":", linewidth=1)
    axis.set(xlabel="decision steps", ylabel="greedy success rate", ylim=(-0.05, 1.05))
    axis.set_title("Tomato Salad, SmolLM2-135M + LoRA, float32 vs bf16 autocast")
    axis.legend()
    figure.tight_layout()
    figure.savefig(RESULTS / "bf16_learning.png", dpi=120)
    print(f"wrote {RESULTS / 'bf16_learning.json'} and bf16_learning.png")


if __name__ == "__main__":
    main()
