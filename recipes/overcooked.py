"""Overcooked (Tomato Salad by default).

    accelerate launch recipes/overcooked.py [--env_id ...] [--episodes 20] [--seed 0]

The PPO trainer is not built yet: for now this recipe plays the environment with two scripted
policies, the planner (the optimal expert) and uniformly random valid actions, and reports their
success rate and return, so the environment and its install can be checked end to end.
"""

from __future__ import annotations

import argparse

import numpy as np

import trl_embodied


def play(env, policy: str, episodes: int, seed: int) -> tuple[float, float]:
    """Success rate and mean undiscounted return of ``policy`` ("planner" or "random")."""
    rng = np.random.default_rng(seed)
    successes, returns = 0, []
    for episode in range(episodes):
        _, info = env.reset(seed=seed + episode)
        plan = env.unwrapped.plan() if policy == "planner" else None
        total, done = 0.0, False
        while not done:
            action = plan.pop(0) if plan is not None else int(rng.integers(len(info["valid_actions"])))
            _, reward, terminated, truncated, info = env.step(action)
            total += reward
            done = terminated or truncated
        successes += info["success"]
        returns.append(total)
    return successes / episodes, float(np.mean(returns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env_id", default="trl_embodied/Overcooked-TomatoSalad-v0")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    env = trl_embodied.make_env(args.env_id)
    prompt, info = env.reset(seed=args.seed)
    print(f"{args.env_id}: the first prompt and its valid actions")
    print(f"  {prompt}")
    for index, action in enumerate(info["valid_actions"]):
        print(f"  [{index}] {action}")
    print(
        "No trainer yet: playing scripted policies (planner = optimal expert, random = random valid actions)."
    )
    for policy in ("planner", "random"):
        success, mean_return = play(env, policy, args.episodes, args.seed)
        print(
            f"{policy:>8}: success rate {success:.2f}, mean return {mean_return:+.3f} over {args.episodes} episodes"
        )


if __name__ == "__main__":
    main()
