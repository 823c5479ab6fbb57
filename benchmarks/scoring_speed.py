"""Scoring speed: prefix-shared ActionScorer against naive per-action sequences, default model, CPU.

Two shapes from the built-in tasks: Entertainment (8 environments x 17 actions, its whole vocabulary
offered in every state, the task's longest prompts) and Tomato Salad (4 x 5, ~45-token prompts). For each, in the same run and on the same LoRA
model: forward only (rollout) and forward + backward (PPO update), median wall time of both methods,
their ratio, the largest log-prob difference, and the peak extra memory (each measurement runs in its
own process, so the peak resident set is its own), and the prefix-shared scorer under bf16 autocast
with its log-prob error against float32. The naive forward pads its sequences into batches
of 64 (faster than one per forward); the naive forward + backward runs one environment's sequences at
a time, accumulating gradients, as a plain update loop does: with the whole batch in one graph it
needs more than this machine's 24 GB.

Targets: >= 4x faster forward at the Entertainment shape, >= 2x with gradients,
difference <= 1e-4 (float32).

    python benchmarks/scoring_speed.py [--repeats 3]

Writes benchmarks/results/scoring_speed.json. ``--bf16_only`` times the prefix-shared scorer in float32
and under bf16 autocast alone (no naive baseline), to see whether bf16 pays on this CPU, and writes
benchmarks/results/scoring_speed_bf16_<cpu capability>.json.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

from common import isolated, peak_rss_mb, write_json

RESULTS = Path(__file__).parent / "results" / "scoring_speed.json"
SHAPES = {
    # name: (env id, number of environments, env kwargs); prompts are the last states of the planner's
    # trajectory. Entertainment offers its whole 17-action vocabulary in every state (the widest shape).
    "entertainment_8x17": ("Household-Entertainment-v0", 8, {"valid_actions": "all"}),
    "tomato_salad_4x5": ("Overcooked-TomatoSalad-v0", 4, {}),
}


def batch_for(env_id: str, num_envs: int, env_kwargs: dict) -> tuple[list[str], list[list[str]]]:
    """Prompts and valid actions of ``num_envs`` distinct states along the planner's optimal trajectory."""
    import trl_embodied

    env = trl_embodied.make_env(env_id, **env_kwargs)
    prompt, info = env.reset(seed=0)
    states = [(prompt, info["valid_actions"])]
    for action in env.unwrapped.plan()[:-1]:
        prompt, *_, info = env.step(action)
        states.append((prompt, info["valid_actions"]))
    states = states[-num_envs:]
    return [p for p, _ in states], [a for _, a in states]


def measure(shape: str, method: str, backward: bool, repeats: int) -> dict:
    """Run in a fresh process: time one method on one shape, and its peak extra resident memory."""
    import torch

    from trl_embodied import EmbodiedActorCritic, load_base_model
    from trl_embodied.scoring import naive_action_logprobs

    torch.manual_seed(0)
    base, tokenizer = load_base_model()
    model = EmbodiedActorCritic(base, tokenizer, normalization="none")
    prompts, actions = batch_for(*SHAPES[shape])

    def run() -> torch.Tensor:
        # bf16 autocast, as EmbodiedPPOConfig(bf16=True) runs rollout and update alike.
        precision = (
            torch.autocast("cpu", dtype=torch.bfloat16) if method == "prefix_shared_bf16" else nullcontext()
        )
        with torch.set_grad_enabled(backward), precision:
            model.zero_grad(set_to_none=True)
            if method.startswith("prefix_shared"):
                logprobs = model.scorer.score(prompts, actions).logprobs
                if backward:
                    logprobs.sum().backward()
            elif not backward:
                logprobs = naive_action_logprobs(model.policy, tokenizer, prompts, actions)
            else:  # one environment (one transition) per forward + backward
                rows = []
                for prompt, env_actions in zip(prompts, actions, strict=True):
                    row = naive_action_logprobs(model.policy, tokenizer, [prompt], [env_actions])
                    row.sum().backward()
                    rows.append(
                        torch.nn.functional.pad(row.detach(), (0, max(map(len, actions)) - len(env_actions)))
                    )
                logprobs = torch.cat(rows)
        return logprobs.detach()

    memory_before = peak_rss_mb()
    logprobs = run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    memory_peak = peak_rss_mb()
    prompt_tokens = [len(tokenizer(p)["input_ids"]) for p in prompts]
    return {
        "seconds": statistics.median(times),
        "peak_extra_memory_mb": memory_peak - memory_before,
        "logprobs": [row[: len(a)].tolist() for row, a in zip(logprobs, actions, strict=True)],
        "mean_prompt_tokens": sum(prompt_tokens) / len(prompt_tokens),
        "actions_per_env": [len(a) for a in actions],
    }


def differences(first: list[list[float]], second: list[list[float]]) -> list[float]:
    """|a - b| per action, over environments."""
    return [abs(a - b) for x, y in zip(first, second, strict=True) for a, b in zip(x, y, strict=True)]


def main() -> None:
    import torch

    from trl_embodied.trainer.embodied_ppo_trainer import cpu_has_native_bf16

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--bf16_only", action="store_true", help="Only float32 against bf16 autocast, prefix-shared."
    )
    args = parser.parse_args()
    isolated(
        measure, "tomato_salad_4x5", "prefix_shared", False, 1
    )  # converts and caches the default model once
    results = {"shapes": {}, "repeats": args.repeats, "dtype": "float32"}
    for shape in SHAPES:
        row = {}
        for backward in (False, True):
            mode = "forward_backward" if backward else "forward"
            shared = isolated(measure, shape, "prefix_shared", backward, args.repeats)
            bf16 = isolated(measure, shape, "prefix_shared_bf16", backward, args.repeats)
            bf16_error = differences(shared["logprobs"], bf16["logprobs"])
            row[mode] = {
                "prefix_shared_seconds": shared["seconds"],
                "prefix_shared_peak_extra_memory_mb": shared["peak_extra_memory_mb"],
                "prefix_shared_bf16_seconds": bf16["seconds"],
                "bf16_speedup_over_float32": shared["seconds"] / bf16["seconds"],
                "bf16_max_logprob_error": max(bf16_error),
                "bf16_mean_logprob_error": sum(bf16_error) / len(bf16_error),
            }
            report = (
                f"{shape} {mode}: prefix-shared {shared['seconds']:.2f} s; bf16 autocast {bf16['seconds']:.2f} s "
                f"({row[mode]['bf16_speedup_over_float32']:.2f}x float32's speed), log-prob error mean "
                f"{row[mode]['bf16_mean_logprob_error']:.3f} max {row[mode]['bf16_max_logprob_error']:.3f} nats"
            )
            if not args.bf16_only:
                naive = isolated(measure, shape, "naive", backward, args.repeats)
                difference = max(differences(naive["logprobs"], shared["logprobs"]))
                row[mode].update(
                    naive_seconds=naive["seconds"],
                    speedup=naive["seconds"] / shared["seconds"],
                    max_logprob_difference=difference,
                    naive_peak_extra_memory_mb=naive["peak_extra_memory_mb"],
                )
                report += (
                    f"; naive {naive['seconds']:.2f} s, speedup {row[mode]['speedup']:.1f}x, max |dlogprob| "
                    f"{difference:.2e}, peak extra memory {naive['peak_extra_memory_mb']:.0f} MB vs "
                    f"{shared['peak_extra_memory_mb']:.0f} MB"
                )
            print(report, flush=True)
        row["mean_prompt_tokens"] = shared["mean_prompt_tokens"]
        row["actions_per_env"] = shared["actions_per_env"]
        results["shapes"][shape] = row
    capability = torch.backends.cpu.get_cpu_capability()
    results["machine"] = f"{platform.machine()}, {multiprocessing.cpu_count()} cores, CPU only"
    results.update(cpu_capability=capability, cpu_has_native_bf16=cpu_has_native_bf16())
    output = RESULTS.with_name(f"scoring_speed_bf16_{capability.lower()}.json") if args.bf16_only else RESULTS
    write_json(output, results)


if __name__ == "__main__":
    main()
