"""SFT warm start with TRL's SFTTrainer, and EmbodiedPPOTrainer continuing from the adapter it writes."""

from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from trl import SFTConfig

from trl_embodied import ActionScorer, EmbodiedPPOTrainer, collect_trajectories
from trl_embodied.scripts.sft import WarmStartArguments, main, ppo_recipe

from .conftest import build_llama
from .test_trainer import config

TOMATO_SALAD = "trl_embodied/Overcooked-TomatoSalad-v0"
ROOT = Path(__file__).resolve().parents[1]


def planner_logprob(model, tokenizer) -> float:
    """Mean log-probability of the planner's actions on its own episode (the behaviour SFT clones)."""
    demo = collect_trajectories("planner", TOMATO_SALAD, 1, progress=False)
    with torch.no_grad():
        scores = ActionScorer(model, tokenizer, "none").score(demo["prompt"], demo["valid_actions"])
    return float(torch.stack([lp[a] for lp, a in zip(scores.logprobs, demo["action"], strict=True)]).mean())


def sft_config(output_dir: Path, **overrides) -> SFTConfig:
    """A quiet CPU SFT run that saves only at the end (``main`` writes the adapter itself)."""
    settings = dict(save_strategy="no", report_to="none", use_cpu=True, bf16=False, disable_tqdm=True)
    return SFTConfig(output_dir=str(output_dir), **{**settings, **overrides})


@pytest.fixture
def warm_start(tmp_path, tokenizer):
    """A tiny base model saved as a local checkpoint, and an SFT adapter trained on it."""
    build_llama(len(tokenizer), seed=0).save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    model = build_llama(len(tokenizer), seed=0)
    before = planner_logprob(model, tokenizer)
    sft_args = sft_config(
        tmp_path / "sft", max_steps=20, learning_rate=2e-2, per_device_train_batch_size=6, logging_steps=1
    )
    trainer = main(
        WarmStartArguments(env_id=TOMATO_SALAD, demonstration_episodes=1), sft_args, model, tokenizer
    )
    return tmp_path, trainer, before


def test_sft_adapter_clones_the_planner(warm_start, tokenizer):
    tmp_path, trainer, before = warm_start
    assert (tmp_path / "sft" / "adapter_config.json").is_file()
    assert isinstance(trainer.model, PeftModel)
    after = planner_logprob(trainer.model, tokenizer)
    assert after > before + 1.0, (before, after)


def test_ppo_continues_from_the_sft_adapter(warm_start, tokenizer):
    tmp_path, _, _ = warm_start
    saved = load_file(tmp_path / "sft" / "adapter_model.safetensors")
    args = config(tmp_path / "ppo", env_id=TOMATO_SALAD, adapter_path=str(tmp_path / "sft"), max_steps=2)
    trainer = EmbodiedPPOTrainer(model=str(tmp_path / "base"), args=args)
    lora = {n: p for n, p in trainer.model.policy.named_parameters() if "lora_" in n}
    assert len(lora) == len(saved) and all(p.requires_grad for p in lora.values())
    for name, weight in saved.items():  # PEFT's file drops the adapter name from the key
        live = next(p for n, p in lora.items() if n.replace(".default", "") == name)
        assert torch.equal(live.detach(), weight), name
    trainer.train()
    changed = [not torch.equal(lora[n].detach(), saved[n.replace(".default", "")]) for n in lora]
    assert any(changed)


def test_a_peft_model_can_be_passed_in(warm_start, tokenizer):
    tmp_path, _, _ = warm_start
    base = build_llama(len(tokenizer), seed=0)
    policy = PeftModel.from_pretrained(base, tmp_path / "sft", is_trainable=True)
    args = config(tmp_path / "ppo", env_id=TOMATO_SALAD, max_steps=2)
    with pytest.raises(ValueError, match="processing_class"):
        EmbodiedPPOTrainer(model=policy, args=args)
    trainer = EmbodiedPPOTrainer(model=policy, args=args, processing_class=tokenizer)
    assert trainer.model.policy is policy
    trainer.train()


def test_a_wrong_adapter_path_is_explained(tmp_path, tokenizer):
    build_llama(len(tokenizer), seed=0).save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    args = config(tmp_path, adapter_path=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="holds no adapter_config.json"):
        EmbodiedPPOTrainer(model=str(tmp_path / "base"), args=args)


@pytest.mark.parametrize(
    ("env_id", "recipe"),
    [
        (TOMATO_SALAD, "recipes/overcooked.py"),
        ("trl_embodied/Overcooked-TomatoLettuceSalad-v0", "recipes/overcooked.py"),
        ("trl_embodied/Household-FoodPreparation-v0", "recipes/virtualhome.py"),
        ("trl_embodied/Household-Entertainment-v0", "recipes/virtualhome.py"),
    ],
)
def test_the_suggested_ppo_recipe_suits_the_task(env_id, recipe):
    # The household recipe sets the paper's discount for those tasks (0.95), Overcooked's 0.99.
    assert ppo_recipe(env_id) == recipe
    assert (ROOT / recipe).is_file()


def test_a_multi_task_warm_start_clones_every_task(tmp_path, tokenizer):
    food_preparation = "trl_embodied/Household-FoodPreparation-v0"
    sft_args = sft_config(tmp_path / "sft", max_steps=1, per_device_train_batch_size=4)
    arguments = WarmStartArguments(env_id=[TOMATO_SALAD, food_preparation], demonstration_episodes=1)
    trainer = main(arguments, sft_args, build_llama(len(tokenizer), seed=0), tokenizer)
    expected = [
        (row["prompt"], " " + row["action_text"])
        for env_id in (TOMATO_SALAD, food_preparation)
        for row in collect_trajectories("planner", env_id, 1, progress=False)
    ]
    assert len(trainer.train_dataset) == len(expected)
    prompts = [tokenizer.decode(ids) for ids in trainer.train_dataset["input_ids"]]
    for prompt, completion in expected:  # every demonstrated step of both tasks is among the SFT rows
        assert any(prompt in text and completion.strip() in text for text in prompts), prompt


def test_a_warm_start_without_a_task_is_refused():
    with pytest.raises(ValueError, match="env_id is empty"):
        WarmStartArguments(env_id=[])
    assert WarmStartArguments(env_id=TOMATO_SALAD).env_id == [TOMATO_SALAD]
