"""Normalization of action scores: none / token / word on Tomato Salad, same seed and budget.

TWOSOME's finding: word normalization >= token > none (without normalization long actions are starved;
token normalization over-corrects where one word spans several tokens). This measures what our
trainer does on the default model. Each normalization is its own invocation (each is a long run on CPU);
``--report`` merges the finished ones into ``benchmarks/results/normalization.json`` and
``normalization.png/.svg``.

    python benchmarks/normalization.py --normalization none
    python benchmarks/normalization.py --normalization token
    python benchmarks/normalization.py --normalization word
    python benchmarks/normalization.py --report

The one-epoch runs made before four PPO epochs became the default are kept in
``benchmarks/results/normalization/one_epoch/`` (the report reads the default's runs only).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import (
    TARGET,
    add_learning_arguments,
    final_greedy_success,
    learning_settings,
    train_twosome,
    write_json,
)

RESULTS = Path(__file__).parent / "results"
RUNS = RESULTS / "normalization"
SAMPLE_EFFICIENCY_RUNS = RESULTS / "sample_efficiency" / "tomato_salad"
ENV_ID = "trl_embodied/Overcooked-TomatoSalad-v0"


def report() -> None:
    from trl_embodied.plotting import plot_learning_curves

    records = [json.loads(path.read_text()) for path in sorted(RUNS.glob("*.json"))]
    # Word normalization is the trainer's default: sample_efficiency.py's TWOSOME runs on Tomato Salad are
    # the same configuration, so they stand for "word" where this benchmark did not run it itself.
    own = {(r["normalization"], r["seed"]) for r in records}
    for path in sorted(SAMPLE_EFFICIENCY_RUNS.glob("twosome_seed*.json")):
        record = json.loads(path.read_text())
        if ("word", record["seed"]) not in own:
            records.append({**record, "normalization": "word", "source": str(path.relative_to(RESULTS))})
    summary = {
        "env_id": ENV_ID,
        "target_success": TARGET,
        "runs": {
            f"{r['normalization']}_seed{r['seed']}": {
                "steps_to_target": r["steps_to_target"],
                "budget_env_steps": r["total_env_steps"],
                "stopped_at_target": r.get("stopped_at_target", False),
                "source": r.get("source", f"normalization/{r['normalization']}_seed{r['seed']}.json"),
                "final_greedy_success": final_greedy_success(r["history"]),
                "num_ppo_epochs": r["num_ppo_epochs"],
            }
            for r in records
        },
    }
    write_json(RESULTS / "normalization.json", summary)
    curves: dict[str, list] = {}
    for r in records:
        curves.setdefault(r["normalization"], []).append(r["history"])
    plot_learning_curves(curves, RESULTS / "normalization", title="Tomato Salad: action-score normalization")
    for name, row in summary["runs"].items():
        print(
            f"{name}: steps to {TARGET} {row['steps_to_target']} of {row['budget_env_steps']}, final {row['final_greedy_success']:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--normalization", choices=["none", "token", "word"], default="word")
    add_learning_arguments(parser, total_env_steps=10_240)
    args = parser.parse_args()
    if args.report:
        report()
        return
    RUNS.mkdir(parents=True, exist_ok=True)
    for seed in args.seed:
        _, record = train_twosome(
            ENV_ID, seed=seed, normalization=args.normalization, **learning_settings(args)
        )
        record.update(normalization=args.normalization, seed=seed, total_env_steps=args.total_env_steps)
        path = RUNS / f"{args.normalization}_seed{seed}.json"
        write_json(path, record, indent=1)
        print(
            f"{args.normalization} seed {seed}: steps to {TARGET} greedy success {record['steps_to_target']}"
        )


if __name__ == "__main__":
    main()
