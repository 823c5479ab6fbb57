"""The GRPO bridge: a trl_embodied env as GRPOTrainer's environment_factory."""

from pathlib import Path

import pytest
import trl
from transformers import Qwen3Config, Qwen3ForCausalLM
from trl import GRPOConfig, GRPOTrainer

from trl_embodied.grpo import EmbodiedGRPOEnvironment, grpo_environment_factory, grpo_prompts

from .conftest import build_tokenizer

TOMATO_SALAD = "trl_embodied/Overcooked-TomatoSalad-v0"


def test_the_planner_solves_the_task_through_the_act_tool():
    from trl_embodied import make_env

    environment = EmbodiedGRPOEnvironment(TOMATO_SALAD)
    observation = environment.reset(seed=3)
    assert "Valid actions:\n- " in observation
    planner = make_env(TOMATO_SALAD)
    _, info = planner.reset(seed=3)
    expected_return = 0.0
    for index in planner.unwrapped.plan():
        action = info["valid_actions"][index]
        assert f"- {action}" in observation
        observation = environment.act(action)
        _, reward, *_, info = planner.step(index)
        expected_return += reward
    assert observation == "The episode is over: success."
    assert environment.get_reward() == pytest.approx(expected_return) and expected_return > 1.0
    assert environment.act("serve the dish") == "The episode is over; no more actions are taken."


def test_an_invalid_action_is_answered_not_taken():
    environment = EmbodiedGRPOEnvironment(TOMATO_SALAD)
    first = environment.reset(seed=0)
    answer = environment.act("dance")
    assert answer.startswith("'dance' is not a valid action now. Choose one of:")
    assert environment.get_reward() == 0.0
    assert environment.reset(seed=0) == first


def test_bad_arguments_fail_early():
    with pytest.raises(ValueError, match="unknown environment id"):
        grpo_environment_factory("trl_embodied/Nowhere-v0")()
    with pytest.raises(ValueError, match="episodes=0"):
        grpo_prompts(0)


def test_one_grpo_step_against_the_bridge(tmp_path):
    tokenizer = build_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.eos_token = "<|im_end|>"
    template = Path(trl.__file__).parent / "chat_templates" / "qwen3.jinja"
    tokenizer.chat_template = template.read_text()
    tokenizer.padding_side = "left"
    model = Qwen3ForCausalLM(
        Qwen3Config(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            max_position_embeddings=2048,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )
    resets = []

    class Recording(EmbodiedGRPOEnvironment):
        def reset(self, seed=None, **example):
            resets.append(seed)
            return super().reset(seed=seed, **example)

    trainer = GRPOTrainer(
        model=model,
        args=GRPOConfig(
            output_dir=str(tmp_path),
            max_steps=1,
            per_device_train_batch_size=2,
            num_generations=2,
            max_completion_length=8,
            max_tool_calling_iterations=2,
            logging_steps=1,
            report_to="none",
            use_cpu=True,
            bf16=False,
            save_strategy="no",
        ),
        processing_class=tokenizer,
        train_dataset=grpo_prompts(4, seed=100),
        environment_factory=lambda: Recording(TOMATO_SALAD),
    )
    assert [tool.__name__ for tool in trainer.tools] == ["act"]
    trainer.train()
    assert trainer.state.global_step == 1
    assert resets and set(resets) <= {100, 101, 102, 103}
    logged = trainer.state.log_history[0]
    assert "rewards/Recording/mean" in logged  # the env's episode return is GRPO's reward
