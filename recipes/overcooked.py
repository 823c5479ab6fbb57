"""Train TWOSOME on Overcooked with EmbodiedPPOTrainer.

    accelerate launch recipes/overcooked.py                     # Tomato Salad, the embedded default model
    accelerate launch recipes/overcooked.py --config recipes/configs/overcooked_tomato_lettuce.yaml
    accelerate launch --config_file recipes/accelerate_configs/multi_gpu.yaml --num_processes 2 \\
        recipes/overcooked.py --model_name_or_path meta-llama/Llama-3.2-1B --push_to_hub

Every EmbodiedPPOConfig and trl.ModelConfig field works on the command line (see --help).
"""

from trl_embodied.scripts import main, make_parser

if __name__ == "__main__":
    parser = make_parser()
    parser.set_defaults(
        env_id="trl_embodied/Overcooked-TomatoSalad-v0",
        output_dir="outputs/overcooked-tomato-salad",
        gamma=0.99,  # per primitive step; macro actions are discounted gamma ** k
    )
    main(*parser.parse_args_and_config())
