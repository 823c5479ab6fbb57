"""Environment throughput: macro steps per second with random valid actions, on one core.

Target: >= 5,000 macro steps/s for Overcooked, so that environments never limit
training. Baseline measured in the same run: gymnasium's FrozenLake-v1 stepped through the same
gymnasium.make wrappers, as a reference for what one step of a minimal Python env costs here.

    python benchmarks/env_speed.py [--steps 20000]

Prints one line per env and writes benchmarks/results/env_speed.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import gymnasium
import numpy as np
from common import write_json

import trl_embodied

TARGET_STEPS_PER_SECOND = 5_000
RESULTS = Path(__file__).parent / "results" / "env_speed.json"


def steps_per_second(env: gymnasium.Env, steps: int, seed: int = 0) -> float:
    """Step ``env`` ``steps`` times with uniformly random valid actions, resetting at episode ends."""
    rng = np.random.default_rng(seed)
    _, info = env.reset(seed=seed)
    start = time.perf_counter()
    for _ in range(steps):
        num_valid = len(info["valid_actions"]) if "valid_actions" in info else env.action_space.n
        _, _, terminated, truncated, info = env.step(int(rng.integers(num_valid)))
        if terminated or truncated:
            _, info = env.reset()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the target says

    baseline = steps_per_second(gymnasium.make("FrozenLake-v1"), args.steps)
    print(f"baseline FrozenLake-v1: {baseline:,.0f} steps/s")
    results = {"baseline_FrozenLake-v1_steps_per_second": baseline, "envs": {}}
    for env_id in trl_embodied.ENV_IDS:
        rate = steps_per_second(gymnasium.make(env_id), args.steps)
        meets = rate >= TARGET_STEPS_PER_SECOND if "Overcooked" in env_id else None
        results["envs"][env_id] = {
            "steps_per_second": rate,
            "ratio_to_baseline": rate / baseline,
            "meets_target": meets,
        }
        verdict = (
            "" if meets is None else f"  target {TARGET_STEPS_PER_SECOND:,}: {'met' if meets else 'MISSED'}"
        )
        print(f"{env_id}: {rate:,.0f} steps/s ({rate / baseline:.2f}x FrozenLake){verdict}")

    results.update(
        steps=args.steps,
        target_steps_per_second=TARGET_STEPS_PER_SECOND,
        machine=f"{platform.processor() or platform.machine()}, 1 core, Python {platform.python_version()}",
        trl_embodied_version=trl_embodied.__version__,
    )
    write_json(RESULTS, results)


if __name__ == "__main__":
    main()
