"""Scoring states with hundreds of valid actions: one packed sequence per state against chunks of
``max_actions_per_forward``, default model, float32, CPU.

States come from ScienceWorld's ``boil`` task (a walk of its planner-free random actions from the start,
seed 0), each cut to its first ``N`` valid actions for N in ``--actions``. For each N and each way of
scoring, in its own process (so the peak resident memory is its own): rollout scoring of one state (no
gradients; median seconds and peak extra memory) and an update minibatch of ``--minibatch`` states
(forward + backward). The unchunked update is measured only up to ``--unchunked_update_limit`` actions: past
it, it would not fit this machine's memory.

Targets at 400 actions: peak extra memory under 3 GB for rollout scoring and under 8 GB for the update
minibatch of 8 states; chunked log-probs equal to unchunked within 1e-4.

    python benchmarks/large_action_sets.py [--actions 50 200 400] [--chunk 64] [--minibatch 8]
        [--mmap_threshold_mb 1]

The peak is the process's resident memory, which on Linux depends on glibc's allocator as much as on the
tensors: below its mmap threshold (which rises to 32 MB as large blocks are freed) freed tensors stay in a
fragmented heap. ``--mmap_threshold_mb`` measures with ``MALLOC_MMAP_THRESHOLD_`` fixed (every block of that
size or more is mapped and returned to the system when freed), the setting the docs advise for large action
sets on CPU.

Needs the textenvs extra (scienceworld) and Java. Writes ``benchmarks/results/large_action_sets.json``
(``large_action_sets_mmap<N>mb.json`` with ``--mmap_threshold_mb N``).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import statistics
import time
from pathlib import Path

from common import code_version, isolated, write_json

RESULTS = Path(__file__).parent / "results"
ROLLOUT_TARGET_MB, UPDATE_TARGET_MB = 3 * 1024, 8 * 1024


def states(count: int) -> list[tuple[str, list[str]]]:
    """``count`` distinct states of ScienceWorld's boil task along a seeded random walk."""
    import numpy as np

    from trl_embodied import make_env

    env = make_env("trl_embodied/ScienceWorld-v0", task_name="boil", max_steps=10 * count)
    rng = np.random.default_rng(0)
    prompt, info = env.reset(seed=0)
    seen = {}
    while len(seen) < count:
        seen.setdefault(prompt, info["valid_actions"])
        moves = [i for i, a in enumerate(info["valid_actions"]) if a.startswith(("go to", "open", "look"))]
        prompt, _, terminated, truncated, info = env.step(int(rng.choice(moves or [0])))
        if terminated or truncated:
            prompt, info = env.reset()
    env.close()
    return list(seen.items())


def measure(
    num_actions: int, chunk: int | None, batch: int, backward: bool, repeats: int, pool: list
) -> dict:
    """In a fresh process: score ``batch`` of the states cut to ``num_actions`` actions."""
    import torch

    from trl_embodied import EmbodiedActorCritic, load_base_model

    torch.manual_seed(0)
    base, tokenizer = load_base_model()
    model = EmbodiedActorCritic(base, tokenizer, normalization="word")
    model.scorer.max_actions_per_forward = chunk
    prompts = [prompt for prompt, _ in pool[:batch]]
    actions = [valid[:num_actions] for _, valid in pool[:batch]]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def run() -> torch.Tensor:
        with torch.set_grad_enabled(backward):
            model.zero_grad(set_to_none=True)
            scores = model.scorer.score(prompts, actions)
            if backward:
                scores.log_policy.masked_fill(~scores.mask, 0).sum().backward()
            return scores.logprobs.detach()

    logprobs = run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return {
        "seconds": statistics.median(times),
        "peak_extra_memory_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024,
        "logprobs": [row[: len(a)].tolist() for row, a in zip(logprobs, actions, strict=True)],
        "actions_per_state": [len(a) for a in actions],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, nargs="+", default=[50, 200, 400])
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--minibatch", type=int, default=8)
    parser.add_argument("--unchunked_update_limit", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--mmap_threshold_mb",
        type=int,
        help="Measure with glibc's MALLOC_MMAP_THRESHOLD_ fixed at this many MB (default: glibc's own).",
    )
    args = parser.parse_args()
    path = RESULTS / "large_action_sets.json"
    if args.mmap_threshold_mb is not None:  # read by each measuring process's allocator as it starts
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold_mb * 2**20)
        path = RESULTS / f"large_action_sets_mmap{args.mmap_threshold_mb}mb.json"
    pool = states(args.minibatch)
    results = {
        "chunk": args.chunk,
        "minibatch": args.minibatch,
        "malloc_mmap_threshold_mb": args.mmap_threshold_mb,
        "code_version": code_version(),
        "sizes": {},
    }
    for n in args.actions:
        row = {}
        for mode, batch, backward in (("rollout", 1, False), ("update", args.minibatch, True)):
            chunked = isolated(measure, n, args.chunk, batch, backward, args.repeats, pool)
            entry = {
                "chunked_seconds": chunked["seconds"],
                "chunked_peak_extra_memory_mb": chunked["peak_extra_memory_mb"],
                "actions_per_state": chunked["actions_per_state"],
            }
            if backward and n > args.unchunked_update_limit:
                entry["unchunked"] = f"not run (over {args.unchunked_update_limit} actions)"
            else:
                whole = isolated(measure, n, None, batch, backward, args.repeats, pool)
                entry.update(
                    unchunked_seconds=whole["seconds"],
                    unchunked_peak_extra_memory_mb=whole["peak_extra_memory_mb"],
                    memory_ratio_unchunked_over_chunked=whole["peak_extra_memory_mb"]
                    / max(chunked["peak_extra_memory_mb"], 1.0),
                    max_logprob_difference=max(
                        abs(a - b)
                        for x, y in zip(whole["logprobs"], chunked["logprobs"], strict=True)
                        for a, b in zip(x, y, strict=True)
                    ),
                )
            target = ROLLOUT_TARGET_MB if mode == "rollout" else UPDATE_TARGET_MB
            entry["target_mb"], entry["met"] = target, chunked["peak_extra_memory_mb"] < target
            row[mode] = entry
            print(f"{n} actions, {mode} ({batch} state{'s' if batch > 1 else ''}): {entry}", flush=True)
        results["sizes"][str(n)] = row
        results["machine"] = f"{platform.machine()}, {multiprocessing.cpu_count()} cores, CPU only"
        write_json(path, results)  # after every size: a stopped run keeps the sizes it finished


if __name__ == "__main__":
    main()
