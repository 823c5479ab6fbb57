"""Train with EmbodiedPPOTrainer from the command line: ``TrlParser`` over (script, PPO, model) arguments.

Every field of :class:`ScriptArguments`, :class:`~trl_embodied.EmbodiedPPOConfig` and ``trl.ModelConfig``
works as ``--name value`` and from ``--config file.yaml``. LoRA and quantization come from
``ModelConfig`` as in TRL's recipes (``--use_peft --lora_r 8 ...``; without ``--use_peft`` the adapter is
TWOSOME's: r=8, alpha=16, q/v).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from trl import ModelConfig, TrlParser, get_peft_config

from trl_embodied.callbacks import StopAtSuccessCallback
from trl_embodied.trainer import EmbodiedPPOConfig, EmbodiedPPOTrainer


@dataclass
class ScriptArguments:
    """Arguments of the recipe itself."""

    eval_before_training: bool = field(
        default=True,
        metadata={"help": "Evaluate the untrained policy first, to print success before and after."},
    )
    save_final_model: bool = field(
        default=True, metadata={"help": "Save the adapter and value head at the end."}
    )
    stop_at_success_rate: float | None = field(
        default=None,
        metadata={
            "help": "End training at the first evaluation (eval_strategy/eval_steps) whose greedy success "
            "rate reaches this value; None: spend the whole budget."
        },
    )


def make_parser() -> TrlParser:
    return TrlParser((ScriptArguments, EmbodiedPPOConfig, ModelConfig))


def model_init_kwargs(model_args: ModelConfig) -> dict:
    """``load_base_model`` keyword arguments from ``trl.ModelConfig``."""
    kwargs = {"load_in_4bit": model_args.load_in_4bit, "load_in_8bit": model_args.load_in_8bit}
    if model_args.dtype not in (None, "auto"):
        kwargs["dtype"] = model_args.dtype
    return kwargs


def main(script_args: ScriptArguments, training_args: EmbodiedPPOConfig, model_args: ModelConfig) -> dict:
    """Train, print the success rate before and after, save (and push when ``--push_to_hub``)."""
    training_args.model_init_kwargs = {**model_init_kwargs(model_args), **training_args.model_init_kwargs}
    trainer = EmbodiedPPOTrainer(
        model=model_args.model_name_or_path,  # None: the embedded SmolLM2-135M-Instruct
        args=training_args,
        peft_config=get_peft_config(model_args),
        callbacks=[StopAtSuccessCallback(script_args.stop_at_success_rate)]
        if script_args.stop_at_success_rate is not None
        else None,
    )
    results = {}
    if script_args.eval_before_training:
        before = trainer.evaluate(metric_key_prefix="eval_before")
        results["before"] = before["eval_before_success_rate"]
    trainer.train()
    if script_args.eval_before_training:
        # train() starts a fresh log history: the untrained policy's row goes back in as the curve's start.
        start = {key.replace("eval_before_", "eval_", 1): value for key, value in before.items()}
        trainer.state.log_history.insert(0, {**start, "env_steps": 0, "step": 0})
    results["after"] = trainer.evaluate()["eval_success_rate"]
    if trainer.accelerator.is_main_process:
        before = f"{results['before']:.2f} before training, " if "before" in results else ""
        print(
            f"{training_args.env_id}: greedy success rate {before}{results['after']:.2f} after "
            f"{trainer._env_steps} decision steps ({training_args.eval_episodes} episodes per evaluation)"
        )
    if script_args.save_final_model:
        trainer.save_model(training_args.output_dir)
        trainer.create_model_card(model_name=Path(training_args.output_dir).name)
        if trainer.accelerator.is_main_process:
            output_dir = Path(training_args.output_dir)
            curve = output_dir / "learning_curve.png"
            print(f"adapter, value head and model card saved in {output_dir}/")
            if curve.is_file():
                print(f"learning curve: {curve}")
    if training_args.push_to_hub:
        trainer.push_to_hub()
    # Tear the process group down before exit: left to interpreter shutdown, gloo's threads can
    # abort a multi-process run that has finished its work ("terminate called without an active exception").
    trainer.accelerator.end_training()
    return results
