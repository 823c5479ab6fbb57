"""The ``trl-embodied`` command: train, evaluate, and list the environments.

    trl-embodied envs                                            # the registered ids and their actions
    trl-embodied train --env_id trl_embodied/Overcooked-TomatoSalad-v0 --output_dir outputs/run
    trl-embodied evaluate --adapter_path outputs/run --tasks Household-HeatCheese-v0
    accelerate launch -m trl_embodied.cli train ...      # several processes, as the recipes

``train`` takes every ``EmbodiedPPOConfig`` and ``trl.ModelConfig`` flag (and ``--config file.yaml``), as
the recipes do; ``evaluate`` is ``recipes/evaluate.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

COMMANDS = ("envs", "train", "evaluate")


def list_envs() -> str:
    """One line per built-in environment: its id, the actions its first state offers and its vocabulary
    size (the action space); then the third-party engines' ids, which need the ``textenvs`` extra."""
    from trl_embodied import ENV_IDS, make_env
    from trl_embodied.envs.registration import ADAPTER_IDS

    lines = []
    for env_id in ENV_IDS:
        env = make_env(env_id)
        _, info = env.reset(seed=0)
        lines.append(
            f"{env_id}  ({len(info['valid_actions'])} actions at the start, {env.action_space.n} in all)"
        )
        env.close()
    lines += [f"{env_id}  (textenvs extra)" for env_id in ADAPTER_IDS]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        given = f"unknown command {argv[0]!r}; " if argv and not argv[0].startswith("-") else ""
        raise SystemExit(f"{given}usage: trl-embodied {{{','.join(COMMANDS)}}} [options]\n\n{__doc__}")
    command, rest = argv[0], argv[1:]
    if command == "envs":
        print(list_envs())
    elif command == "train":
        from trl_embodied.scripts.ppo import main as train
        from trl_embodied.scripts.ppo import make_parser

        train(*make_parser().parse_args_and_config(rest))
    else:
        from trl_embodied.scripts.evaluate import main as evaluate

        evaluate(rest)


if __name__ == "__main__":
    main()
