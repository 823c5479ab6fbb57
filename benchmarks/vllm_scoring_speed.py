"""Rollout scoring with vLLM against the prefix-shared scorer: seconds per state on the same states, in the
same run, the default model in float32.

States: distinct states of random walks (seeded) through Tomato Salad, Food Preparation and Entertainment.
Each way scores the whole batch of states without gradients, ``--repeats`` times; vLLM's prefix cache is
emptied before each repetition, so both start cold, as a rollout meets new states. The log-probs of the two
are compared too.

    .venv-vllm/bin/python benchmarks/vllm_scoring_speed.py [--states 16] [--repeats 3]

Needs vLLM (``make test-vllm`` builds .venv-vllm with its CPU build). Writes
``benchmarks/results/vllm_scoring_speed.json``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import time
from pathlib import Path

from common import code_version, write_json

RESULTS = Path(__file__).parent / "results" / "vllm_scoring_speed.json"
TASKS = (
    "trl_embodied/Overcooked-TomatoSalad-v0",
    "trl_embodied/Household-FoodPreparation-v0",
    "trl_embodied/Household-Entertainment-v0",
)


def walk_states(env_id: str, count: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    """``count`` distinct (prompt, valid actions) states along a seeded uniform random walk."""
    import numpy as np

    from trl_embodied import make_env

    env, rng, seen = make_env(env_id), np.random.default_rng(seed), {}
    prompt, info = env.reset(seed=seed)
    for _ in range(100 * count):
        if len(seen) == count:
            break
        seen.setdefault(prompt, list(info["valid_actions"]))
        prompt, _, terminated, truncated, info = env.step(int(rng.integers(len(info["valid_actions"]))))
        if terminated or truncated:
            prompt, info = env.reset()
    return list(seen.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--states", type=int, default=16, help="Distinct states per task.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--kv_cache_mib",
        type=int,
        default=512,
        help="The engine's KV cache in MiB (vLLM's kv_cache_memory_bytes; a share of memory would depend on "
        "the machine and on what this process holds).",
    )
    args = parser.parse_args()
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    import torch
    from vllm import LLM

    from trl_embodied import ActionScorer, VLLMActionScorer, load_base_model
    from trl_embodied.modeling import default_model_dir

    base, tokenizer = load_base_model()
    llm = LLM(
        model=str(default_model_dir()),
        dtype="float32",
        enable_prefix_caching=True,
        max_model_len=2048,
        kv_cache_memory_bytes=args.kv_cache_mib * 2**20,
        seed=0,
    )
    prefix_shared, engine = ActionScorer(base, tokenizer), VLLMActionScorer(llm, tokenizer)
    results = {"states_per_task": args.states, "repeats": args.repeats, "tasks": {}}
    for env_id in TASKS:
        states = walk_states(env_id, args.states)
        prompts, actions = [p for p, _ in states], [a for _, a in states]
        timings = {"prefix_shared": [], "vllm": []}
        for _ in range(args.repeats):
            start = time.perf_counter()
            with torch.no_grad():
                expected = prefix_shared.score(prompts, actions)
            timings["prefix_shared"].append(time.perf_counter() - start)
            llm.reset_prefix_cache()  # cold, as a rollout meets new states
            start = time.perf_counter()
            actual = engine.score(prompts, actions)
            timings["vllm"].append(time.perf_counter() - start)
        per_state = {way: statistics.median(seconds) / len(states) for way, seconds in timings.items()}
        row = {
            "states": len(states),
            "actions_per_state": statistics.mean(len(a) for a in actions),
            "prefix_shared_seconds_per_state": per_state["prefix_shared"],
            "vllm_seconds_per_state": per_state["vllm"],
            "speedup_vllm_over_prefix_shared": per_state["prefix_shared"] / per_state["vllm"],
            "max_logprob_difference": float((actual.logprobs - expected.logprobs).abs().max()),
        }
        results["tasks"][env_id] = row
        print(env_id, row, flush=True)
    results["machine"] = f"{platform.machine()}, {multiprocessing.cpu_count()} cores, CPU only"
    results["code_version"] = code_version()
    write_json(RESULTS, results)


if __name__ == "__main__":
    main()
