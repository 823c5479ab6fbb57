"""The recipes: TrlParser over (script, EmbodiedPPOConfig, ModelConfig), YAML configs, and a real launch."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trl_embodied.scripts import make_parser
from trl_embodied.scripts.ppo import model_init_kwargs

from .conftest import build_llama

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "recipes" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_yaml_config_parses(config, tmp_path):
    script_args, training_args, model_args = make_parser().parse_args_and_config(
        ["--config", str(config), "--output_dir", str(tmp_path)]
    )
    expected = yaml.safe_load(config.read_text())
    assert training_args.env_id == expected["env_id"]
    assert training_args.total_env_steps == expected["total_env_steps"]
    assert (model_args.use_peft, model_args.lora_r, model_args.lora_alpha) == (True, 8, 16)
    import trl_embodied

    assert training_args.env_id in trl_embodied.ENV_IDS


def test_command_line_fields_and_quantization_flags(tmp_path):
    script_args, training_args, model_args = make_parser().parse_args_and_config(
        [
            "--output_dir", str(tmp_path), "--env_id", "Household-Entertainment-v0", "--num_envs", "8",
            "--normalization", "token", "--critic_backbone", "frozen", "--load_in_4bit", "--env_kwargs",
            '{"max_steps": 30}', "--no_eval_before_training",
        ]
    )  # fmt: skip
    assert training_args.num_envs == 8 and training_args.normalization == "token"
    assert training_args.critic_backbone == "frozen" and training_args.env_kwargs == {"max_steps": 30}
    assert model_init_kwargs(model_args) == {
        "load_in_4bit": True,
        "load_in_8bit": False,
        "dtype": model_args.dtype,
    }
    assert script_args.eval_before_training is False


def test_bad_command_line_values_are_refused(tmp_path):
    with pytest.raises(SystemExit):  # argparse's own error for a value outside the choices
        make_parser().parse_args_and_config(["--output_dir", str(tmp_path), "--normalization", "words"])
    with pytest.raises(ValueError, match="rollout_steps=0"):
        make_parser().parse_args_and_config(["--output_dir", str(tmp_path), "--rollout_steps", "0"])


TEXTWORLD = pytest.param(
    "textworld_cooking.py",
    marks=pytest.mark.skipif(
        importlib.util.find_spec("textworld") is None,
        reason='TextWorld is not installed: pip install "trl-embodied[textenvs]" (make test does).',
    ),
)


@pytest.mark.parametrize("recipe", ["overcooked.py", "virtualhome.py", TEXTWORLD])
def test_recipe_trains_through_accelerate_launch(recipe, tmp_path, tokenizer):
    model_dir = tmp_path / "tiny"
    build_llama(len(tokenizer), max_positions=4096).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "recipes" / recipe),
        "--model_name_or_path", str(model_dir), "--output_dir", str(tmp_path / "out"), "--num_envs", "2",
        "--rollout_steps", "4", "--per_device_train_batch_size", "4", "--max_steps", "2", "--eval_episodes", "2",
        "--report_to", "none", "--disable_tqdm", "true", "--value_head_sizes", "16",
    ]  # fmt: skip
    if recipe == "textworld_cooking.py":  # its default budget would override max_steps; it generates its game
        command += ["--total_env_steps", "16"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "greedy success rate" in result.stdout and "before training" in result.stdout
    saved = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"adapter_model.safetensors", "value_head.safetensors", "README.md"} <= saved


def test_evaluate_recipe_compares_zero_shot_and_trained(tmp_path, tokenizer):
    from trl_embodied import EmbodiedActorCritic, load_base_model

    model_dir = tmp_path / "tiny"
    build_llama(len(tokenizer)).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    base, _ = load_base_model(str(model_dir))
    model = EmbodiedActorCritic(base, tokenizer, value_head_sizes=(16,))
    model.save_pretrained(tmp_path / "adapter")
    command = [
        sys.executable, str(ROOT / "recipes" / "evaluate.py"), "--adapter_path", str(tmp_path / "adapter"),
        "--tasks", "Household-HeatCheese-v0", "Household-WashPlate-v0", "--episodes", "2",
        "--output", str(tmp_path / "table.json"), "--play", "greedy_no_repeat",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| Household-HeatCheese-v0 |" in result.stdout and "| Household-WashPlate-v0 |" in result.stdout
    table = json.loads((tmp_path / "table.json").read_text())
    assert [row["env"] for row in table] == ["Household-HeatCheese-v0", "Household-WashPlate-v0"]
    for row in table:
        # A fresh adapter (LoRA B = 0) is the base model itself: zero-shot and trained play alike.
        assert row["zero_shot"] == row["trained"]
        assert 0.0 <= row["trained"]["success_rate"] <= 1.0


def test_the_command_lists_the_environments_and_names_a_wrong_command():
    result = subprocess.run(
        [sys.executable, "-m", "trl_embodied.cli", "envs"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr  # light: no torch, no warnings
    assert "trl_embodied/Household-Entertainment-v0  (5 actions at the start, 17 in all)" in result.stdout
    assert "trl_embodied/BabyAI-GoToLocal-v0  (textenvs extra)" in result.stdout
    from trl_embodied.cli import main

    with pytest.raises(SystemExit, match="unknown command 'fly'; usage: trl-embodied"):
        main(["fly"])


def test_the_command_trains_and_evaluates(tmp_path, tokenizer, capsys):
    from trl_embodied.cli import main

    model_dir = tmp_path / "tiny"
    build_llama(len(tokenizer)).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    main(
        [
            "train", "--model_name_or_path", str(model_dir), "--output_dir", str(tmp_path / "out"),
            "--env_id", "Household-FoodPreparation-v0", "--num_envs", "2", "--rollout_steps", "4",
            "--per_device_train_batch_size", "4", "--max_steps", "2", "--eval_episodes", "2",
            "--report_to", "none", "--disable_tqdm", "true", "--value_head_sizes", "16", "--use_cpu", "true",
        ]
    )  # fmt: skip
    assert "Household-FoodPreparation-v0: greedy success rate" in capsys.readouterr().out
    main(
        [
            "evaluate", "--adapter_path", str(tmp_path / "out"), "--tasks", "Household-WashPlate-v0",
            "--episodes", "2",
        ]
    )  # fmt: skip
    assert "| Household-WashPlate-v0 |" in capsys.readouterr().out
