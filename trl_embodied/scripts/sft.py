"""SFT warm start: planner demonstrations -> prompt/completion pairs -> a LoRA adapter trained by TRL's own
``SFTTrainer``; :class:`~trl_embodied.EmbodiedPPOTrainer` then continues from it (``--adapter_path``).

The completion is the chosen action's text after the prompt, exactly the continuation the PPO policy
scores, so behaviour cloning raises the very log-probabilities that TWOSOME's policy is made of.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import datasets
from transformers import set_seed
from trl import SFTConfig, SFTTrainer, TrlParser

from trl_embodied.modeling import default_lora_config, load_base_model
from trl_embodied.trainer.embodied_ppo_config import parse_dict_argument
from trl_embodied.trajectories import collect_trajectories, to_prompt_completion


def ppo_recipe(env_id: str) -> str:
    """The PPO recipe whose defaults suit ``env_id``: household tasks take virtualhome.py (its discount is
    the paper's 0.95 there), every other task overcooked.py (0.99 per primitive step)."""
    return "recipes/virtualhome.py" if "/Household-" in env_id else "recipes/overcooked.py"


@dataclass
class WarmStartArguments:
    """Where the demonstrations come from, and the model they train."""

    env_id: list[str] = field(
        default_factory=lambda: ["trl_embodied/Overcooked-TomatoSalad-v0"],
        metadata={
            "help": "The task to demonstrate, or several (a multi-task warm start: the adapter clones the "
            "demonstrations of every task at once). A single id may be given as a string."
        },
    )
    env_kwargs: dict | str | None = field(
        default=None,
        metadata={"help": 'Keyword arguments for the env(s) (JSON), e.g. {"randomize_items": true}.'},
    )
    demonstration_episodes: int = field(
        default=16, metadata={"help": "Planner episodes per task (seeds 0..N-1)."}
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Base model id or path; None: the embedded SmolLM2-135M-Instruct."}
    )

    def __post_init__(self):
        self.env_id = [self.env_id] if isinstance(self.env_id, str) else list(self.env_id)
        if not self.env_id:
            raise ValueError("env_id is empty; name at least one task to demonstrate.")
        self.env_kwargs = parse_dict_argument("env_kwargs", self.env_kwargs)
        if self.demonstration_episodes < 1:
            raise ValueError(
                f"demonstration_episodes={self.demonstration_episodes}; use at least one episode."
            )


def make_parser() -> TrlParser:
    parser = TrlParser((WarmStartArguments, SFTConfig))
    parser.set_defaults(
        output_dir="outputs/sft-warmstart",
        num_train_epochs=3,
        learning_rate=2e-4,  # LoRA's usual SFT rate
        per_device_train_batch_size=8,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        bf16=False,  # TRL's SFTConfig turns bf16 on; on CPU that is autocast, keep fp32 unless asked
    )
    return parser


def main(args: WarmStartArguments, sft_args: SFTConfig, model=None, tokenizer=None) -> SFTTrainer:
    """Collect demonstrations, train the adapter with ``SFTTrainer``, save it to ``sft_args.output_dir``.

    ``model``/``tokenizer`` override ``args.model_name_or_path`` (tests pass tiny ones).
    """
    pairs = datasets.concatenate_datasets(
        [
            to_prompt_completion(
                collect_trajectories(
                    "planner", env_id, args.demonstration_episodes, env_kwargs=args.env_kwargs, progress=False
                )
            )
            for env_id in args.env_id
        ]
    )
    if model is None:
        model, tokenizer = load_base_model(args.model_name_or_path)
    set_seed(sft_args.seed)  # the new adapter's random init, so that a seed names one adapter
    trainer = SFTTrainer(
        model=model,
        args=sft_args,
        train_dataset=pairs,
        processing_class=tokenizer,
        peft_config=default_lora_config(),  # TWOSOME's adapter: the PPO trainer continues this very one
    )
    trainer.train()
    trainer.save_model(sft_args.output_dir)
    if trainer.accelerator.is_main_process:
        if len(args.env_id) == 1:
            env_id = args.env_id[0]
            next_step = f"accelerate launch {ppo_recipe(env_id)} --env_id {env_id} --adapter_path {sft_args.output_dir}"
        else:  # the recipes take one task; several are the trainer's task rows
            rows = [{"env_id": env_id} for env_id in args.env_id]
            next_step = f"EmbodiedPPOTrainer(train_dataset={rows}, args=EmbodiedPPOConfig(adapter_path={sft_args.output_dir!r}, ...))"
        print(
            f"{len(pairs)} demonstration steps from {args.demonstration_episodes} planner episodes of each of "
            f"{', '.join(args.env_id)}; adapter saved to {sft_args.output_dir}. Continue with PPO:\n  {next_step}"
        )
    return trainer
