"""Train TWOSOME on a TextWorld cooking game (extra ``textenvs``) with EmbodiedPPOTrainer (the file is not named
textworld.py: a script of that name would shadow the textworld package it imports).

    python recipes/textworld_cooking.py                                   # generates a one-room cooking game first
    python recipes/textworld_cooking.py --game_file games/my_game.z8 --total_env_steps 4096
    accelerate launch recipes/textworld_cooking.py --recipe 2 --take 2 --go 6 --game_seed 7

The admissible commands are the valid actions; the prompt is the objective, the room and the inventory.
Every EmbodiedPPOConfig and trl.ModelConfig field works on the command line (see --help).
"""

from dataclasses import dataclass, field
from pathlib import Path

from accelerate import PartialState
from trl import ModelConfig, TrlParser

from trl_embodied.envs.textworld import make_cooking_game
from trl_embodied.scripts import ScriptArguments, main
from trl_embodied.trainer import EmbodiedPPOConfig


@dataclass
class GameArguments:
    """The game to play: a compiled game file, or the settings of a generated cooking game."""

    game_file: str | None = field(
        default=None, metadata={"help": "A compiled game (.z8/.ulx); else generate one."}
    )
    recipe: int = field(default=1, metadata={"help": "Ingredients in the generated game's recipe."})
    take: int = field(default=1, metadata={"help": "Ingredients to fetch."})
    go: int = field(default=1, metadata={"help": "Rooms: 1, 6, 9 or 12."})
    game_seed: int = field(default=0, metadata={"help": "Seed of the generated game."})


if __name__ == "__main__":
    parser = TrlParser((GameArguments, ScriptArguments, EmbodiedPPOConfig, ModelConfig))
    parser.set_defaults(
        env_id="trl_embodied/TextWorld-v0",
        output_dir="outputs/textworld-cooking",
        gamma=0.95,
        total_env_steps=2048,
    )
    game_args, script_args, training_args, model_args = parser.parse_args_and_config()
    game_file = game_args.game_file
    if game_file is None:
        path = (
            Path(training_args.output_dir)
            / "games"
            / f"cooking_r{game_args.recipe}_g{game_args.go}_s{game_args.game_seed}"
        )
        with PartialState().main_process_first():  # one process generates, the others read its file
            if not path.with_suffix(".z8").is_file():
                make_cooking_game(
                    path,
                    recipe=game_args.recipe,
                    take=game_args.take,
                    go=game_args.go,
                    seed=game_args.game_seed,
                )
        game_file = str(path.with_suffix(".z8"))
    training_args.env_kwargs = {"game_file": game_file, **training_args.env_kwargs}
    main(script_args, training_args, model_args)
