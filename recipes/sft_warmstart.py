"""SFT warm start for EmbodiedPPO: clone the planner's demonstrations with TRL's SFTTrainer, then PPO.

    python recipes/sft_warmstart.py --output_dir outputs/sft-tomato-salad
    accelerate launch recipes/overcooked.py --adapter_path outputs/sft-tomato-salad

Every WarmStartArguments (env_id, env_kwargs, demonstration_episodes, model_name_or_path) and trl.SFTConfig
field works on the command line (see --help).
"""

from trl_embodied.scripts.sft import main, make_parser

if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
