"""How often a policy without a prior meets each task's reward: the uniform random policy over the valid
actions, played for many episodes.

A learner with no reward signal learns nothing, so a sparse-reward task is within a cold start's reach only
if its exploration meets the reward inside the budget. The uniform policy is that exploration for a model
whose prior gives no lift over uniform (``benchmarks/prior.py``): the expected number of rewarded episodes in
a budget is its success rate times the episodes the budget holds. The env alone, no model: seconds per task.

    python benchmarks/exploration.py [--episodes 20000] [--tasks food_preparation entertainment]

Writes benchmarks/results/exploration.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import write_json
from sample_efficiency import TASK_ENV_KWARGS, TASKS

RESULTS = Path(__file__).parent / "results"
#: Tasks whose engines play thousands of episodes in seconds (BabyAI and ScienceWorld do not).
FAST_TASKS = ("tomato_salad", "tomato_lettuce_salad", "food_preparation", "entertainment")
#: The env-step budgets within which the sample-efficiency benchmark asks TWOSOME to reach greedy 0.9.
TWOSOME_BUDGET = {
    "tomato_salad": 10_240,
    "tomato_lettuce_salad": 10_240,
    "food_preparation": 10_240,
    "entertainment": 20_480,
}


def uniform_episodes(env_id: str, episodes: int, seed: int, **env_kwargs) -> dict:
    """Play ``episodes`` episodes choosing uniformly among the valid actions; count successes and steps."""
    import torch

    from trl_embodied.evaluation import UNIFORM, play_episodes

    records, _ = play_episodes(
        UNIFORM,
        env_id,
        episodes,
        greedy=False,
        seed=seed,
        generator=torch.Generator().manual_seed(seed),
        progress=False,
        env_kwargs=env_kwargs,
    )
    return {
        "episodes": episodes,
        "successes": sum(r["success"] for r in records),
        "env_steps": sum(r["length"] for r in records),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20_000)
    parser.add_argument("--tasks", nargs="+", default=list(FAST_TASKS), choices=sorted(TASKS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = {}
    print(
        "| task | uniform episodes | successes | success per episode | expected rewarded episodes in the budget |"
    )
    print("|---|---|---|---|---|")
    for task in args.tasks:
        start = time.perf_counter()
        row = uniform_episodes(TASKS[task], args.episodes, args.seed, **TASK_ENV_KWARGS.get(task, {}))
        row["success_rate"] = row["successes"] / row["episodes"]
        row["mean_episode_length"] = row["env_steps"] / row["episodes"]
        budget = TWOSOME_BUDGET.get(task)
        # The budget's episodes at the uniform policy's episode length, each a success with its rate.
        row["budget_env_steps"] = budget
        row["expected_rewarded_episodes_in_budget"] = (
            None if budget is None else budget / row["mean_episode_length"] * row["success_rate"]
        )
        row["seconds"] = time.perf_counter() - start
        rows[task] = row
        expected = row["expected_rewarded_episodes_in_budget"]
        print(
            f"| {task.replace('_', ' ')} | {row['episodes']} | {row['successes']} | {row['success_rate']:.2e} "
            f"| {'' if expected is None else f'{expected:.2f} in {budget} env steps'} |"
        )
    write_json(RESULTS / "exploration.json", {"policy": "uniform over the valid actions", "tasks": rows})


if __name__ == "__main__":
    main()
