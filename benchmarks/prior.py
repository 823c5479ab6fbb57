"""The base model's prior on every benchmark task, before any training: how much more than the uniform
policy it favours the planner's action on the states of the planner's episodes (``expert_agreement``).

TWOSOME's sample efficiency comes from that prior. A lift of 1.0 is no prior at all; the argmax agreement
is how often greedy play of the untrained model would take the expert's step. The uniform policy is
measured in the same run as the baseline. A few forward passes per task (a minute on the CPU).

    python benchmarks/prior.py                                        # the embedded default model
    python benchmarks/prior.py --model gemma3_270m=/path/to/gemma-3-270m-q4_k_m.gguf  # and another beside it

Writes benchmarks/results/prior.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import EVAL_SEED, write_json
from sample_efficiency import TASKS

RESULTS = Path(__file__).parent / "results"
DEFAULT_MODEL = "smollm2_135m_instruct"  # the embedded default's label


def main() -> None:
    from trl_embodied import ActionScorer, expert_agreement, load_base_model
    from trl_embodied.evaluation import UNIFORM

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="Another base model (a Hub id, a local checkpoint folder or a .gguf file) to measure beside the default.",
    )
    parser.add_argument(
        "--episodes",
        type=int,
        default=3,
        help="Planner episodes per task (the evaluation seeds, from EVAL_SEED).",
    )
    args = parser.parse_args()
    models = {DEFAULT_MODEL: None}
    for entry in args.model:
        label, separator, path = entry.partition("=")
        if not separator or not label or not path:
            parser.error(f"--model {entry!r}: write LABEL=PATH, e.g. gemma3_270m=/models/gemma-3-270m.")
        models[label] = path

    policies = {"uniform": lambda: UNIFORM}
    for label, path in models.items():
        policies[label] = lambda path=path: ActionScorer(*load_base_model(path), "word")
    rows: dict[str, dict] = {task: {} for task in TASKS}
    for label, make_policy in policies.items():
        policy = make_policy()
        for task, env_id in TASKS.items():
            start = time.perf_counter()
            result = expert_agreement(policy, env_id, episodes=args.episodes, seed=EVAL_SEED)
            rows[task][label] = {
                "states": result.states,
                "expert_probability": result.expert_probability,
                "uniform_probability": result.uniform_probability,
                "lift": result.lift,
                "argmax_agreement": result.argmax_agreement,
                "seconds": time.perf_counter() - start,
            }
        del policy  # one model in memory at a time
    print("| task | policy | P(expert action) | lift over uniform | argmax is the expert's |")
    print("|---|---|---|---|---|")
    for task, by_policy in rows.items():
        for label, row in by_policy.items():
            print(
                f"| {task.replace('_', ' ')} | {label} | {row['expert_probability']:.3f} | {row['lift']:.2f}x "
                f"| {row['argmax_agreement']:.2f} |"
            )
    write_json(
        RESULTS / "prior.json",
        {"models": {label: path or "embedded default" for label, path in models.items()}, "tasks": rows},
    )


if __name__ == "__main__":
    main()
