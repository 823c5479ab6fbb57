"""Soak: many PPO iterations on Tomato Salad, and whether the trainer's memory stays flat.

A trainer that keeps something per iteration (a cache never emptied, rollouts never freed, metrics never
cleared) grows until a long run dies. This runs ``--iterations`` PPO iterations with checkpoints every
``--save_every`` iterations, reads the process's resident memory (RSS) after each, and compares the
largest RSS after the warm-up with the RSS at its end: the target is within 10%.

``--model tiny`` (the default) keeps the default model's tokenizer and prompts but a 2-layer random Llama,
so that 200 iterations take minutes on 2 CPU cores and what grows is the trainer's own; ``--model
default`` soaks the real SmolLM2-135M-Instruct (about 10 s an iteration on 2 cores).

    python benchmarks/soak.py [--iterations 200] [--model tiny|default]

Writes ``benchmarks/results/soak_<model>.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from common import QUIET_RUN, write_json

RESULTS = Path(__file__).parent / "results"
TARGET_GROWTH = 1.10  # the largest RSS after the warm-up over the RSS at its end


def resident_mb() -> float:
    """This process's resident memory now (not the peak), from /proc."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def tiny_model():
    """A 2-layer random Llama on the default model's tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from trl_embodied import load_base_model

    _, tokenizer = load_base_model()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
    )
    return LlamaForCausalLM(config), tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20, help="Iterations before memory must stay flat.")
    parser.add_argument("--save_every", type=int, default=20, help="Iterations between checkpoints.")
    parser.add_argument("--model", choices=["tiny", "default"], default="tiny")
    args = parser.parse_args()

    import torch
    from transformers import TrainerCallback

    from trl_embodied import EmbodiedActorCritic, EmbodiedPPOConfig, EmbodiedPPOTrainer

    config = EmbodiedPPOConfig(
        output_dir=tempfile.mkdtemp(prefix="soak-"),
        env_id="trl_embodied/Overcooked-TomatoSalad-v0",
        use_cpu=True,
        seed=0,
        **{**QUIET_RUN, "save_strategy": "steps", "save_total_limit": 2},
    )
    per_iteration = config.optimizer_steps_per_rollout
    config.max_steps = args.iterations * per_iteration
    config.save_steps = args.save_every * per_iteration
    if args.model == "tiny":
        torch.manual_seed(0)
        model = EmbodiedActorCritic(*tiny_model())
    else:
        model = None  # the embedded default

    class Memory(TrainerCallback):
        rss: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % per_iteration == 0:
                self.rss.append(resident_mb())

    trainer = EmbodiedPPOTrainer(model=model, args=config, callbacks=[Memory()])
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    rss = Memory.rss
    at_warmup = rss[args.warmup - 1]
    after = max(rss[args.warmup :])
    growth = after / at_warmup
    print(
        f"{args.iterations} iterations ({trainer._env_steps} env steps, {seconds:.0f} s): RSS {rss[0]:.0f} MB after "
        f"the first, {at_warmup:.0f} MB after {args.warmup}, at most {after:.0f} MB after that "
        f"({growth:.3f}x; target <= {TARGET_GROWTH}x): {'met' if growth <= TARGET_GROWTH else 'MISSED'}"
    )
    write_json(
        RESULTS / f"soak_{args.model}.json",
        {
            "model": args.model,
            "iterations": args.iterations,
            "warmup_iterations": args.warmup,
            "checkpoint_every_iterations": args.save_every,
            "env_steps": trainer._env_steps,
            "wall_seconds": seconds,
            "rss_mb_per_iteration": rss,
            "rss_growth_after_warmup": growth,
            "target_growth": TARGET_GROWTH,
            "met": growth <= TARGET_GROWTH,
            "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores",
        },
    )


if __name__ == "__main__":
    main()
