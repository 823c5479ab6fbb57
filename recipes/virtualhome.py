"""Train TWOSOME on the symbolic household (the paper's VirtualHome tasks) with EmbodiedPPOTrainer.

    accelerate launch recipes/virtualhome.py                    # Food Preparation, the embedded default model
    accelerate launch recipes/virtualhome.py --config recipes/configs/virtualhome_entertainment.yaml

Every EmbodiedPPOConfig and trl.ModelConfig field works on the command line (see --help).
"""

from trl_embodied.scripts import main, make_parser

if __name__ == "__main__":
    parser = make_parser()
    parser.set_defaults(
        env_id="trl_embodied/Household-FoodPreparation-v0",
        output_dir="outputs/virtualhome-food-preparation",
        gamma=0.95,  # the paper's discount for its household tasks
    )
    main(*parser.parse_args_and_config())
