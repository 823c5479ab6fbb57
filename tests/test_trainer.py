"""EmbodiedPPOTrainer on tiny models: it learns, it checkpoints and resumes, it plays with TRL's machinery."""

import fnmatch
import json
import os
import pickle
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import datasets
import huggingface_hub
import pytest
import torch
from transformers import TrainerCallback, set_seed

from trl_embodied import (
    ActionHistory,
    EmbodiedActorCritic,
    EmbodiedPPOConfig,
    EmbodiedPPOTrainer,
)
from trl_embodied.scoring import naive_action_logprobs
from trl_embodied.trainer.ppo import clipped_policy_loss, clipped_value_loss
from trl_embodied.trajectories import TRAJECTORY_FEATURES

from .conftest import build_llama
from .toy_envs import DoorEnv, FlakyEnv, NoActionsEnv, TwoChoiceEnv, frozen_lake, numbered_lake, slippery_lake

ROOT = Path(__file__).resolve().parents[1]


def config(tmp_path, **overrides) -> EmbodiedPPOConfig:
    settings = dict(
        output_dir=str(tmp_path / "run"),
        num_envs=4,
        rollout_steps=4,
        per_device_train_batch_size=8,
        learning_rate=2e-2,
        critic_learning_rate=1e-2,
        max_steps=2,
        num_ppo_epochs=1,  # one optimizer step per iteration: the tests count iterations by steps
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
        value_head_sizes=[16],
    )
    settings.update(overrides)
    return EmbodiedPPOConfig(**settings)


def make_trainer(tmp_path, tokenizer, env=TwoChoiceEnv, seed=0, base_model=None, **overrides):
    args = config(tmp_path, **overrides)
    base_model = base_model or build_llama(len(tokenizer), seed=0)  # the same pretrained base in every run
    set_seed(seed)  # the adapter's and value head's initialization
    model = EmbodiedActorCritic(
        base_model,
        tokenizer,
        normalization=args.normalization,
        critic_backbone=args.critic_backbone,
        value_head_sizes=None if args.critic_free else args.value_head_sizes,
    )
    return EmbodiedPPOTrainer(model=model, args=args, env=env, eval_env=env)


def win_probability(trainer) -> float:
    model = trainer.accelerator.unwrap_model(trainer.model)
    with torch.no_grad():
        scores = model.scorer.score([TwoChoiceEnv().reset()[0]], [TwoChoiceEnv.ACTIONS])
    return float(scores.probs[0, 0])


def trainable_state(trainer) -> dict[str, torch.Tensor]:
    model = trainer.accelerator.unwrap_model(trainer.model)
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


# -- configuration ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"history_length": -1}, "history_length=-1; use 0"),
        ({"rollout_steps": -1}, "rollout_steps=-1; it must be a positive integer"),
        ({"num_envs": 0}, "num_envs=0"),
        ({"normalization": "words"}, "normalization='words'"),
        ({"critic_backbone": "both"}, "critic_backbone='both'"),
        (
            {"model_init_kwargs": {"load_in_4bit": True, "load_in_8bit": True}},
            "both load_in_4bit and load_in_8bit",
        ),
        ({"model_init_kwargs": {"quantize": True}}, r"unknown keys \['quantize'\]"),
        ({"env_kwargs": "{not json"}, "env_kwargs is not valid JSON"),
        (
            {"per_device_train_batch_size": 5},
            "16 transitions per rollout is not a multiple of per_device_train_batch_size=5",
        ),
        (
            {"gradient_accumulation_steps": 4},
            "a rollout gives 2 minibatches, not a multiple of gradient_accumulation_steps=4",
        ),
        ({"target_kl": 0.0}, "target_kl=0.0"),
        ({"gamma": 1.5}, "gamma=1.5"),
        ({"vllm_mode": "remote"}, "vllm_mode='remote'; use 'colocate' .* or 'server'"),
        ({"vllm_gpu_memory_utilization": 0.0}, r"vllm_gpu_memory_utilization=0.0; use a share in \(0, 1\]"),
        ({"vllm_kv_cache_memory_bytes": 0}, "vllm_kv_cache_memory_bytes=0; use a positive number of bytes"),
    ],
)
def test_invalid_configs_fail_early(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        config(tmp_path, **overrides)


def test_config_defaults_follow_the_design(tmp_path):
    args = EmbodiedPPOConfig(output_dir=str(tmp_path), use_cpu=True)
    assert (args.num_envs, args.rollout_steps, args.gamma, args.gae_lambda) == (4, 32, 0.99, 0.95)
    assert (args.clip_range, args.vf_coef, args.ent_coef, args.target_kl, args.max_grad_norm) == (
        0.2,
        0.5,
        0.01,
        0.02,
        0.5,
    )
    assert args.normalization == "word" and args.critic_backbone == "shared"
    assert args.gradient_checkpointing is False and args.bf16 is False  # TRL's base config would turn both on
    # Four passes over each rollout of 128 transitions, 32 a minibatch: 16 optimizer steps an iteration.
    assert args.num_ppo_epochs == 4
    assert args.micro_steps_per_rollout == 16 and args.optimizer_steps_per_rollout == 16
    assert EmbodiedPPOConfig(output_dir=str(tmp_path), env_kwargs='{"observation_radius": 2}').env_kwargs == {
        "observation_radius": 2
    }


# -- learning ------------------------------------------------------------------------------------------
def test_it_learns_the_rewarded_action(tmp_path, tokenizer):
    base_model = build_llama(len(tokenizer), init_std=0.1)  # logits wide enough to become confident
    trainer = make_trainer(tmp_path, tokenizer, base_model=base_model, max_steps=20)
    before = win_probability(trainer)
    trainer.train()
    after = win_probability(trainer)
    assert 0.3 < before < 0.7, before
    assert after > 0.9, (before, after)
    history = [h for h in trainer.state.log_history if "episode/success_rate" in h]
    assert history[-1]["episode/success_rate"] > history[0]["episode/success_rate"]


def test_a_seed_is_one_run_whatever_the_random_state_before(tmp_path, tokenizer):
    """The trainer draws the adapter's and value head's initial weights from args.seed: two runs of one
    seed match bit for bit (their init, losses and gradients), whatever the global generator held."""

    def run(seed: int, earlier_draws: int) -> tuple[dict, list]:
        base_model = build_llama(len(tokenizer), seed=0)
        torch.manual_seed(earlier_draws)  # another script would have drawn other random numbers before
        trainer = EmbodiedPPOTrainer(
            model=base_model, processing_class=tokenizer, args=config(tmp_path, seed=seed), env=TwoChoiceEnv
        )
        init = trainable_state(trainer)
        trainer.train()
        return init, [(row["loss"], row["grad_norm"]) for row in trainer.state.log_history if "loss" in row]

    (init, losses), (same_init, same_losses), (other_init, _) = run(0, 1), run(0, 2), run(1, 1)
    assert all(torch.equal(init[name], same_init[name]) for name in init)
    assert losses == same_losses and len(losses) == 2
    assert not all(torch.equal(init[name], other_init[name]) for name in init)


def test_logged_metrics(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, max_steps=4, logging_steps=2)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss/policy" in h]
    expected = {
        "episode/return",
        "episode/success_rate",
        "episode/length",
        "loss/policy",
        "loss/value",
        "policy/entropy",
        "policy/approx_kl",
        "policy/clip_fraction",
        "value/explained_variance",
        "time/scoring_seconds",
        "time/env_seconds",
        "env_steps",
        "learning_rate",
    }
    assert expected <= set(logs[0]), expected - set(logs[0])
    assert "env_steps_per_second" in logs[1] and "time/update_seconds" in logs[1]
    assert [h["env_steps"] for h in logs] == [16, 32]


def test_callbacks_see_the_ppo_metrics(tmp_path, tokenizer):
    class Recorder(TrainerCallback):
        def __init__(self):
            self.logs, self.evaluations = [], []

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.logs.append(dict(logs))

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            self.evaluations.append(dict(metrics))

    recorder = Recorder()
    trainer = make_trainer(
        tmp_path, tokenizer, max_steps=4, eval_strategy="steps", eval_steps=2, eval_episodes=2
    )
    trainer.add_callback(recorder)
    trainer.train()
    assert any("episode/success_rate" in log for log in recorder.logs)
    assert len(recorder.evaluations) == 2 and "eval_success_rate" in recorder.evaluations[0]


def test_two_learning_rates_decay_linearly(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, max_steps=4)
    trainer.train()
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    assert groups["actor"]["initial_lr"] == 2e-2 and groups["critic"]["initial_lr"] == 1e-2
    assert groups["actor"]["lr"] == pytest.approx(0.0) and groups["critic"]["lr"] == pytest.approx(0.0)
    model = trainer.accelerator.unwrap_model(trainer.model)
    critic_ids = {id(p) for p in model.value_head.parameters()}
    assert {id(p) for p in groups["critic"]["params"]} == critic_ids
    assert all(
        "lora_" in n
        for n, p in model.named_parameters()
        if id(p) in {id(q) for q in groups["actor"]["params"]}
    )


def test_target_kl_skips_the_rest_of_the_iteration(tmp_path, tokenizer):
    # 16 transitions in minibatches of 4: four optimizer steps in the iteration.
    trainer = make_trainer(
        tmp_path,
        tokenizer,
        max_steps=4,
        per_device_train_batch_size=4,
        target_kl=1e-12,
        learning_rate=0.1,
        logging_steps=1,
    )
    after_step = []

    class Snapshot(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            after_step.append(trainable_state(trainer))

    trainer.add_callback(Snapshot())
    trainer.train()
    logs = [h for h in trainer.state.log_history if "policy/early_stopped" in h]
    # The first minibatch moves the policy (its KL is 0 by construction: the rollout's policy), the second
    # passes the target and stops the iteration.
    assert logs[0]["policy/early_stopped"] == 0.0 and logs[1]["policy/early_stopped"] == 1.0
    # The skipped steps log nothing: no loss of 0 that measured nothing.
    assert [h["step"] for h in trainer.state.log_history if "loss" in h] == [1, 2]
    # Skipped minibatches leave no gradient at all (None, not zeros): with zeros, Adam's momentum would keep
    # moving the adapter after the stop.
    second, third, fourth = after_step[1:]
    assert all(torch.equal(second[name], third[name]) for name in second)
    assert all(torch.equal(third[name], fourth[name]) for name in third)
    assert any(not torch.equal(after_step[0][name], second[name]) for name in second)


@pytest.mark.parametrize("bf16", [False, True])
def test_rollout_and_update_score_in_the_same_precision(tmp_path, tokenizer, bf16):
    """The first minibatch re-scores the rollout's own policy: its ratio must be exactly 1 (KL 0). Scoring
    the rollout in float32 and the update in bf16 autocast would make it drift by bf16's error."""
    trainer = make_trainer(tmp_path, tokenizer, max_steps=1, bf16=bf16, per_device_train_batch_size=16)
    trainer.train()
    (log,) = [h for h in trainer.state.log_history if "policy/approx_kl" in h]
    assert log["policy/approx_kl"] < 1e-7 and log["policy/clip_fraction"] == 0.0


@pytest.mark.parametrize(("bf16", "native"), [(True, False), (True, True), (False, False)])
def test_bf16_on_a_cpu_without_native_bf16_is_named_slow(tmp_path, tokenizer, monkeypatch, bf16, native):
    import warnings

    from trl_embodied.trainer import embodied_ppo_trainer

    monkeypatch.setattr(embodied_ppo_trainer, "cpu_has_native_bf16", lambda: native)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_trainer(tmp_path, tokenizer, bf16=bf16)
    slow = [w for w in caught if "without native bf16 arithmetic" in str(w.message)]
    assert len(slow) == (bf16 and not native)
    assert not slow or "Set bf16=False here" in str(slow[0].message)


def test_each_distinct_state_is_scored_once_per_rollout_and_evaluation(tmp_path, tokenizer):
    """TwoChoiceEnv has one state: the rollout (4 envs x 4 steps + bootstrap) and the evaluation score it
    once each; each minibatch of 8 copies of it runs one row through the model."""
    trainer = make_trainer(tmp_path, tokenizer, max_steps=2, eval_episodes=4)  # one iteration
    forwards = []  # (with gradients?, rows) per decoder forward
    trainer.model.policy.get_base_model().get_decoder().register_forward_pre_hook(
        lambda _, args, kwargs: forwards.append((torch.is_grad_enabled(), kwargs["input_ids"].shape[0])),
        with_kwargs=True,
    )
    trainer.train()
    assert forwards == [(False, 1), (True, 1), (True, 1)]
    (rollout_log,) = [h for h in trainer.state.log_history if "rollout/states_scored" in h]
    assert rollout_log["rollout/states_scored"] == 1
    forwards.clear()
    trainer.evaluate()
    assert forwards == [(False, 1)]


def test_ppo_loss_and_gradients_equal_the_plain_computation(tmp_path, tokenizer, task_batch):
    """compute_loss (prefix-shared, one forward for the minibatch, repeated states computed once) against
    the plain way: every transition its own sequences, one per action, and its own forward for the value.
    The minibatch mixes 5, 17 and 8 actions, prompts of three lengths, and repeats two states."""
    prompts, actions = task_batch
    order = [0, 1, 2, 0, 2, 0]
    inputs = {
        "prompts": [prompts[i] for i in order],
        "actions": [actions[i] for i in order],
        "chosen": torch.tensor([1, 16, 3, 4, 0, 1]),
        "logprobs": torch.tensor([-1.7, -2.9, -2.0, -1.4, -2.2, -1.5]),
        "values": torch.tensor([0.1, -0.2, 0.3, 0.0, 0.5, -0.4]),
        "advantages": torch.tensor([1.0, -0.5, 0.3, -1.2, 0.8, 0.6]),
        "returns": torch.tensor([0.4, 0.1, 0.9, -0.3, 0.2, 0.7]),
        "mask": torch.ones(6, dtype=torch.bool),
    }
    trainers = [make_trainer(tmp_path / name, tokenizer, target_kl=None) for name in ("fast", "plain")]
    models = [trainer.model for trainer in trainers]
    for model in models:  # the same non-trivial adapter in both (LoRA's B starts at zero)
        torch.manual_seed(1)
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.data.normal_(0.0, 0.05)
    args = trainers[0].args

    fast_loss = trainers[0].compute_loss(models[0], inputs)
    fast_loss.backward()

    plain = models[1]
    plain_loss = torch.zeros(())
    for j, (prompt, env_actions) in enumerate(zip(inputs["prompts"], inputs["actions"], strict=True)):
        logprobs = naive_action_logprobs(plain.policy, tokenizer, [prompt], [env_actions])[0]
        words = torch.tensor([len(a.split()) for a in env_actions], dtype=torch.float32)
        log_policy = torch.log_softmax(logprobs / words, -1)
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        hidden = plain.policy(input_ids=ids, output_hidden_states=True).hidden_states[-1][0, -1]
        value = plain.value_head(hidden[None].float())
        policy = clipped_policy_loss(
            log_policy[inputs["chosen"][j]][None],
            inputs["logprobs"][j][None],
            inputs["advantages"][j][None],
            args.clip_range,
        )
        value_loss = clipped_value_loss(
            value, inputs["values"][j][None], inputs["returns"][j][None], args.clip_range_value
        )
        entropy = -(log_policy.exp() * log_policy).sum()
        transition = policy.loss + args.vf_coef * value_loss - args.ent_coef * entropy
        plain_loss = plain_loss + transition / len(order)  # every term is a mean over the minibatch
    plain_loss.backward()

    assert torch.allclose(fast_loss, plain_loss, rtol=1e-4, atol=1e-6)
    checked = 0
    for (name, fast), slow in zip(models[0].named_parameters(), plain.parameters(), strict=True):
        if fast.requires_grad:
            assert slow.grad.abs().max() > 0, name
            assert torch.allclose(fast.grad, slow.grad, rtol=1e-4, atol=1e-4 * slow.grad.abs().max()), name
            checked += 1
    assert checked > 4  # LoRA A and B of several layers, and the value head


@pytest.mark.parametrize("critic_backbone", ["shared", "frozen"])
def test_both_critic_backbones_train(tmp_path, tokenizer, critic_backbone):
    trainer = make_trainer(tmp_path, tokenizer, critic_backbone=critic_backbone, max_steps=2)
    before = trainable_state(trainer)
    trainer.train()
    after = trainable_state(trainer)
    assert any(not torch.equal(before[n], after[n]) for n in before if "lora_" in n)
    assert any(not torch.equal(before[n], after[n]) for n in before if n.startswith("value_head."))


def test_value_head_standardizes_with_the_rollouts_states(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, max_steps=4)  # two iterations of 2 envs x 8 steps
    trainer.train()
    norm = trainer.model.value_head.feature_norm
    assert norm.count == 2 * 2 * 8  # every state the rollouts scored, bootstrap states aside
    assert not torch.equal(norm.mean, torch.zeros_like(norm.mean))


def test_gradient_accumulation(tmp_path, tokenizer):
    trainer = make_trainer(
        tmp_path, tokenizer, per_device_train_batch_size=4, gradient_accumulation_steps=2, max_steps=2
    )
    trainer.train()
    assert trainer.state.global_step == 2 and trainer._micro_step == 4


@pytest.mark.parametrize("bits", [4, 8])
def test_k_bit_training(tmp_path, tokenizer, bits):
    path = tmp_path / "base"
    build_llama(len(tokenizer), hidden_size=64).save_pretrained(path)
    tokenizer.save_pretrained(path)
    args = config(tmp_path, model_init_kwargs={f"load_in_{bits}bit": True})
    trainer = EmbodiedPPOTrainer(model=str(path), args=args, env=TwoChoiceEnv)
    before = trainable_state(trainer)
    trainer.train()
    after = trainable_state(trainer)
    assert any(not torch.equal(before[n], after[n]) for n in before if "lora_" in n)


def test_total_env_steps_sets_max_steps(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, total_env_steps=40, max_steps=-1)
    # 16 decision steps per iteration: 3 iterations of 2 optimizer steps
    assert trainer.args.max_steps == 6


def test_evaluate_reports_success_rate(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, eval_episodes=6)
    metrics = trainer.evaluate()
    assert set(metrics) >= {"eval_success_rate", "eval_return", "eval_episode_length"}
    assert metrics["eval_success_rate"] in (0.0, 1.0)  # greedy on one fixed state: all or nothing
    assert metrics["eval_episode_length"] == 1.0


def test_evaluation_without_repeats_cannot_loop(tmp_path, tokenizer):
    # Whatever the untrained policy prefers, taking a state's least-tried actions first walks through the
    # door within the step limit: every action of each state gets its turn.
    trainer = make_trainer(tmp_path, tokenizer, env=DoorEnv, eval_episodes=2, eval_no_repeat=True)
    metrics = trainer.evaluate()
    assert metrics["eval_success_rate"] == 1.0 and metrics["eval_episode_length"] < 20
    # The same untrained policy played plainly greedy loops to the limit of 20 steps.
    trainer.args.eval_no_repeat = False
    assert trainer.evaluate()["eval_episode_length"] == 20


def test_without_state_reuse_the_run_is_the_same_and_every_row_is_scored(tmp_path, tokenizer):
    runs = {}
    for reuse in (True, False):
        runs[reuse] = make_trainer(
            tmp_path / str(reuse), tokenizer, env=DoorEnv, max_steps=4, reuse_states=reuse
        )
        runs[reuse].train()
    scored = {
        reuse: [
            row["rollout/states_scored"]
            for row in trainer.state.log_history
            if "rollout/states_scored" in row
        ]
        for reuse, trainer in runs.items()
    }
    assert scored[False] == [4 * 4 + 4] * 2  # 4 envs x 4 steps and the 4 bootstrap states, each rollout
    assert all(s <= 3 for s in scored[True])  # DoorEnv has two states (and its start differs only in seed)
    expected, actual = trainable_state(runs[True]), trainable_state(runs[False])
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], atol=1e-5, rtol=1e-4)


def test_gradient_checkpointing_is_turned_on_in_the_policy_and_trains(tmp_path, tokenizer):
    """The Trainer would call gradient_checkpointing_enable on the actor-critic wrapper, which has none: the
    trainer turns it on in the policy instead, and a run trains."""
    trainer = make_trainer(tmp_path, tokenizer, env=DoorEnv, max_steps=2, gradient_checkpointing=True)
    policy = trainer.accelerator.unwrap_model(trainer.model).policy
    assert policy.is_gradient_checkpointing
    before = {name: value.clone() for name, value in trainable_state(trainer).items()}
    trainer.train()
    assert any(not torch.equal(before[name], value) for name, value in trainable_state(trainer).items())


def test_scoring_one_action_per_sequence_gives_the_same_run(tmp_path, tokenizer):
    plain = make_trainer(tmp_path / "plain", tokenizer, env=DoorEnv, max_steps=4)
    # The chunked scorer checkpoints its own groups and reads each prompt's keys and values, which the
    # model's gradient checkpointing would drop: the trainer leaves it off and says so.
    with pytest.warns(
        UserWarning, match="gradient_checkpointing=True is ignored with max_actions_per_forward"
    ):
        chunked = make_trainer(
            tmp_path / "chunked",
            tokenizer,
            env=DoorEnv,
            max_steps=4,
            max_actions_per_forward=1,
            gradient_checkpointing=True,
        )
    assert chunked.accelerator.unwrap_model(chunked.model).scorer.max_actions_per_forward == 1
    plain.train()
    chunked.train()
    assert trainable_state(chunked).keys() == trainable_state(plain).keys()
    for name, value in trainable_state(plain).items():
        torch.testing.assert_close(trainable_state(chunked)[name], value, atol=1e-5, rtol=1e-4)


def test_history_length_puts_the_past_actions_in_training_and_evaluation_prompts(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, env=DoorEnv, max_steps=2, history_length=2)
    trainer.train()
    for slot in trainer.slots:
        past = slot.env.history
        assert len(past) == min(slot.episode_length, 2) and set(past) <= set(DoorEnv.ACTIONS)
        assert slot.prompt == (
            f"Your last actions: {', '.join(past)}. " if past else ""
        ) + slot.env.unwrapped.describe(slot.env.unwrapped.state)
    env = trainer.eval_env()
    env.reset(seed=0)
    prompt, *_ = env.step(0)
    assert prompt.startswith("Your last actions: open the door. The door is open.")
    # The same door after different pasts is a different input: more distinct states than without history.
    plain = make_trainer(tmp_path / "plain", tokenizer, env=DoorEnv, max_steps=2)
    plain.train()

    def scored(t):
        return sum(
            row["rollout/states_scored"] for row in t.state.log_history if "rollout/states_scored" in row
        )

    assert scored(trainer) > scored(plain)


def test_action_history_wrapper_on_its_own():
    env = ActionHistory(DoorEnv(), history_length=2)
    first, _ = env.reset(seed=0)
    assert first == DoorEnv().reset(seed=0)[0]  # nothing taken yet: the env's own prompt
    env.step(1)
    env.step(0)
    prompt, *_ = env.step(1)
    assert (
        prompt
        == "Your last actions: open the door, close the door. The door is closed. To leave the room, you should"
    )
    assert env.reset()[0] == first  # a new episode forgets
    with pytest.raises(ValueError, match="history_length=0; give the number of past actions"):
        ActionHistory(DoorEnv(), history_length=0)


def test_rollout_values_are_under_the_statistics_the_update_uses(tmp_path, tokenizer):
    """The value head standardizes its input with statistics that the rollout updates step by step: the
    values that value clipping and GAE take must be those of the statistics at the rollout's end, under
    which the update computes its own."""
    trainer = make_trainer(tmp_path, tokenizer, env=DoorEnv, num_ppo_epochs=1)
    norm = trainer.accelerator.unwrap_model(trainer.model).value_head.feature_norm
    minibatches = trainer._rollout()
    assert norm.count == 4 * 4  # the statistics moved during the rollout (4 envs x 4 steps)
    for batch in minibatches:
        _, hidden = trainer._policy(batch["prompts"], batch["actions"])
        torch.testing.assert_close(batch["values"], trainer._values(hidden), atol=1e-6, rtol=0)


# -- checkpoints ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("resume_at", "env", "history"),
    # an iteration boundary, the middle of an iteration; DoorEnv's episodes run across the checkpoint,
    # with and without the past actions in the prompt; the slippery lake's are restored by replay
    [(2, TwoChoiceEnv, 0), (3, TwoChoiceEnv, 0), (3, DoorEnv, 0), (3, DoorEnv, 2), (3, slippery_lake, 0)],
)
def test_resume_continues_the_same_run(tmp_path, tokenizer, resume_at, env, history, recwarn):
    straight = make_trainer(tmp_path / "straight", tokenizer, env=env, max_steps=6, history_length=history)
    straight.train()

    first = make_trainer(
        tmp_path / "resumed",
        tokenizer,
        env=env,
        max_steps=6,
        save_strategy="steps",
        save_steps=1,
        history_length=history,
    )
    first.train()  # writes checkpoint-1 .. checkpoint-6
    checkpoint = tmp_path / "resumed" / "run" / f"checkpoint-{resume_at}"
    assert (checkpoint / "adapter_model.safetensors").is_file() and (
        checkpoint / "value_head.safetensors"
    ).is_file()
    assert (checkpoint / "rollout_state_0.json").is_file() and (checkpoint / "optimizer.pt").is_file()
    assert not list(checkpoint.glob("*.pkl"))  # the rollout state is JSON + safetensors, never pickle
    assert not (checkpoint / "model.safetensors").exists()  # never the base model

    resumed = make_trainer(
        tmp_path / "resumed", tokenizer, env=env, max_steps=6, seed=123, history_length=history
    )  # other init: must be overwritten
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 6 and resumed._env_steps == straight._env_steps == 48
    expected, actual = trainable_state(straight), trainable_state(resumed)
    for name in expected:
        assert torch.allclose(expected[name], actual[name], atol=1e-6), name
    # The very same episodes go on: each slot's state, length and return as in the straight run.
    for one, other in zip(straight.slots, resumed.slots, strict=True):
        assert one.env.get_wrapper_attr("state_dict")() == other.env.get_wrapper_attr("state_dict")()
        assert one.prompt == other.prompt
        assert (one.episode_length, one.episode_return) == (other.episode_length, other.episode_return)
    assert not [w for w in recwarn if "starts a new episode on resume" in str(w.message)]


@pytest.mark.parametrize(
    ("env", "warning"),
    [
        (frozen_lake, r"environment frozen_lake \(slot 0\), .*\(slot 3\): no state_dict"),
        (numbered_lake, r"environment numbered_lake \(slot 0\): .*not deterministic.* It starts a new one"),
    ],
)
def test_an_env_that_cannot_restore_its_episode_starts_anew_on_resume(tmp_path, tokenizer, env, warning):
    make_trainer(tmp_path, tokenizer, env=env, max_steps=2, save_strategy="steps", save_steps=1).train()
    resumed = make_trainer(tmp_path, tokenizer, env=env, max_steps=2)
    with pytest.warns(UserWarning, match=warning):
        resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-1"))
    assert resumed.state.global_step == 2


def test_a_checkpoint_cut_off_while_saving_is_skipped_or_refused(tmp_path, tokenizer):
    make_trainer(tmp_path, tokenizer, max_steps=2, save_strategy="steps", save_steps=1).train()
    run = tmp_path / "run"
    shutil.copytree(run / "checkpoint-2", run / "checkpoint-3")
    (run / "checkpoint-3" / "trainer_state.json").unlink()  # the Trainer writes it last
    resumed = make_trainer(tmp_path, tokenizer, max_steps=4)
    with pytest.warns(
        UserWarning, match=r"checkpoint-3 is incomplete \(no readable trainer_state.json\), skipped"
    ):
        resumed.train(resume_from_checkpoint=True)  # the newest complete one: checkpoint-2
    assert resumed.state.global_step == 4 and resumed._env_steps == 2 * 16  # two iterations of 16 steps
    with pytest.raises(FileNotFoundError, match="checkpoint-3 is incomplete .*saving it was cut off"):
        make_trainer(tmp_path, tokenizer, max_steps=4).train(resume_from_checkpoint=str(run / "checkpoint-3"))
    with pytest.raises(ValueError, match="holds no complete checkpoint"):
        make_trainer(tmp_path / "empty", tokenizer, max_steps=4).train(resume_from_checkpoint=True)


def test_a_tampered_checkpoint_is_refused_and_never_runs_code(tmp_path, tokenizer):
    make_trainer(tmp_path, tokenizer, max_steps=1, save_strategy="steps", save_steps=1).train()
    checkpoint = tmp_path / "run" / "checkpoint-1"
    sentinel = tmp_path / "code-ran"

    class Payload:  # unpickling this would create the sentinel file
        def __reduce__(self):
            return (Path.touch, (sentinel,))

    payload = pickle.dumps(Payload())
    (checkpoint / "rollout_state_0.pkl").write_bytes(payload)  # a pickle beside it is never opened
    good_json = (checkpoint / "rollout_state_0.json").read_text()
    good_tensors = (checkpoint / "rollout_state_0.safetensors").read_bytes()

    def edited(**changes) -> str:
        return json.dumps({**json.loads(good_json), **changes})

    tamperings = [
        ("rollout_state_0.safetensors", payload, "is not a readable safetensors file"),
        ("rollout_state_0.json", payload, "is not a readable rollout state"),
        (
            "rollout_state_0.json",
            edited(generator={"__tensor__": "x"}),
            "refers to tensor 'x', which the tensor file lacks",
        ),
        ("rollout_state_0.json", edited(env_steps={"__tuple__": [1], "a": 2}), "malformed tagged value"),
        ("rollout_state_0.json", edited(micro_step="one"), "is damaged"),
        (
            "rollout_state_0.json",
            edited(slots=json.loads(good_json)["slots"][:1]),
            "is damaged .*1 saved environments for 4",
        ),
        ("rollout_state_0.json", json.dumps({"format": 1}), "is not a rollout state of this trainer"),
    ]
    for name, content, message in tamperings:
        (checkpoint / "rollout_state_0.json").write_text(good_json)
        (checkpoint / "rollout_state_0.safetensors").write_bytes(good_tensors)
        target = checkpoint / name
        target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
        with pytest.raises(ValueError, match=message):
            make_trainer(tmp_path, tokenizer, max_steps=2).train(resume_from_checkpoint=str(checkpoint))
    assert not sentinel.exists()


def test_rollouts_are_saved_as_trajectories_and_resume_with_the_run(tmp_path, tokenizer):
    straight = make_trainer(tmp_path / "straight", tokenizer, max_steps=4, save_rollouts=True)
    straight.train()
    straight.save_model()
    rows = datasets.load_from_disk(str(tmp_path / "straight" / "run" / "rollouts"))
    assert rows.features == TRAJECTORY_FEATURES
    assert len(rows) == 32  # 2 rollouts x 4 envs x 4 steps, every TwoChoiceEnv episode one step long
    assert rows["episode"] == list(range(32)) and all(rows["done"]) and rows["step"] == [0] * 32
    assert rows["success"] == [a == 0 for a in rows["action"]] and rows["reward"] == [
        float(a == 0) for a in rows["action"]
    ]
    assert all(abs(sum(p) - 1.0) < 1e-5 for p in rows["action_probs"])
    assert rows["seed"][:4] == [0, 1, 2, 3] and rows["seed"][4:] == [None] * 28  # first resets seeded

    first = make_trainer(
        tmp_path / "resumed", tokenizer, max_steps=4, save_rollouts=True, save_strategy="steps", save_steps=2
    )
    first.train()
    checkpoint = tmp_path / "resumed" / "run" / "checkpoint-2"
    assert len(datasets.load_from_disk(str(checkpoint / "rollouts"))) == 16
    resumed = make_trainer(tmp_path / "resumed", tokenizer, max_steps=4, save_rollouts=True, seed=123)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    resumed.save_model()
    assert datasets.load_from_disk(str(tmp_path / "resumed" / "run" / "rollouts")).to_list() == rows.to_list()


def test_resuming_with_another_shape_is_refused(tmp_path, tokenizer):
    make_trainer(tmp_path, tokenizer, max_steps=2, save_strategy="steps", save_steps=2).train()
    other = make_trainer(tmp_path, tokenizer, max_steps=4, num_envs=8)
    with pytest.raises(ValueError, match="another shape .*num_envs: checkpoint 4, this run 8"):
        other.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-2"))
    with pytest.raises(FileNotFoundError, match="is not an EmbodiedPPOTrainer checkpoint"):
        other.train(resume_from_checkpoint=str(tmp_path))


def test_resuming_with_another_budget_warns_that_the_schedule_changes(tmp_path, tokenizer):
    make_trainer(tmp_path, tokenizer, max_steps=2, save_strategy="steps", save_steps=2).train()
    checkpoint = str(tmp_path / "run" / "checkpoint-2")
    with pytest.warns(
        UserWarning,
        match="run of 2 optimizer steps and this one has 4 .*the linear learning-rate schedule .*jumps",
    ):
        make_trainer(tmp_path, tokenizer, max_steps=4).train(resume_from_checkpoint=checkpoint)
    with warnings.catch_warnings():  # the same budget, or a schedule that does not depend on it: no warning
        warnings.filterwarnings("error", message=".*optimizer steps and this one has")
        make_trainer(tmp_path, tokenizer, max_steps=2).train(resume_from_checkpoint=checkpoint)
        make_trainer(tmp_path, tokenizer, max_steps=4, lr_scheduler_type="constant").train(
            resume_from_checkpoint=checkpoint
        )


def test_save_model_writes_adapter_and_value_head_only(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer)
    trainer.train()
    trainer.save_model(str(tmp_path / "final"))
    files = {p.name for p in (tmp_path / "final").iterdir()}
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        "value_head.safetensors",
        "embodied_config.json",
    } <= files
    assert "model.safetensors" not in files and "tokenizer.json" in files
    restored = EmbodiedActorCritic.from_pretrained(tmp_path / "final", build_llama(len(tokenizer)), tokenizer)
    assert restored.critic_backbone == "shared"


def test_push_to_hub_uploads_adapter_value_head_and_card(tmp_path, tokenizer, monkeypatch):
    uploads = []

    class Repo:
        repo_id = "someone/tiny-embodied"

    def create_repo(self, repo_id, **kwargs):
        return Repo()

    def upload_folder(self, *, repo_id, folder_path, ignore_patterns=None, **kwargs):
        ignore = ignore_patterns or []
        files = sorted(
            str(p.relative_to(folder_path))
            for p in Path(folder_path).rglob("*")
            if p.is_file()
            and not any(fnmatch.fnmatch(str(p.relative_to(folder_path)), pat) for pat in ignore)
        )
        uploads.append(
            {"repo_id": repo_id, "files": files, "card": (Path(folder_path) / "README.md").read_text()}
        )

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    trainer = make_trainer(tmp_path, tokenizer, hub_model_id="someone/tiny-embodied", max_steps=2)
    trainer.train()
    trainer.evaluate()
    trainer.push_to_hub()
    (upload,) = uploads
    assert upload["repo_id"] == "someone/tiny-embodied"
    assert {"adapter_model.safetensors", "adapter_config.json", "value_head.safetensors", "README.md"} <= set(
        upload["files"]
    )
    assert not any(f.startswith("model") and f.endswith(".safetensors") for f in upload["files"])
    card = upload["card"]
    assert "2401.14151" in card and "TWOSOME" in card and "TwoChoiceEnv" in card
    assert "library_name: peft" in card and "None" not in card


@pytest.mark.parametrize("history_length", [0, 2])
def test_the_model_card_describes_the_adapter_and_its_quick_start_runs(
    tmp_path, tokenizer, monkeypatch, history_length
):
    base_dir = tmp_path / "tiny-base"
    build_llama(len(tokenizer), seed=0).save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    env_id = "trl_embodied/Household-FoodPreparation-v0"
    args = config(
        tmp_path,
        env_id=env_id,
        hub_model_id="someone/tiny-embodied",
        eval_episodes=2,
        history_length=history_length,
    )
    repo = type("Repo", (), {"repo_id": "someone/tiny-embodied"})
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kwargs: repo)
    uploaded = {}
    monkeypatch.setattr(
        huggingface_hub.HfApi,
        "upload_folder",
        lambda self, *, folder_path, **kwargs: uploaded.update(folder=Path(folder_path)),
    )
    trainer = EmbodiedPPOTrainer(model=str(base_dir), args=args)
    trainer.train()
    trainer.evaluate()
    trainer.push_to_hub()
    folder = uploaded["folder"]
    card = (folder / "README.md").read_text()
    metadata, body = card.split("---")[1], card.split("---", 2)[2]
    assert "library_name: peft" in metadata and "pipeline_tag: reinforcement-learning" in metadata
    assert "base_model" not in metadata  # a local folder has no Hub id to name
    assert "None" not in card and "`tiny-base` (a local model)" in body
    assert f"| env steps trained | {trainer._env_steps} |" in body and f"`{env_id}`" in body
    assert "| last success rate | 0." in body and "greedy evaluation" in body
    assert "(learning_curve.png)" in body and (folder / "learning_curve.png").is_file()
    # The quick start runs as written, the Hub download pointing at what would be uploaded.
    snippet = body.split("```python\n")[1].split("```")[0]
    assert 'snapshot_download("someone/tiny-embodied")' in snippet
    # A policy trained on prompts with its past actions is played with them.
    assert ("ActionHistory(" in snippet) == bool(history_length)
    assert ("prompts carry the last 2 actions" in body) == bool(history_length)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kwargs: str(folder))
    printed = subprocess_free_exec(snippet)
    assert 0.0 <= float(printed) <= 1.0


def subprocess_free_exec(code: str) -> str:
    """Run ``code`` in this process and return what it printed."""
    import contextlib
    import io

    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(code, "<model card>", "exec"), {})
    return output.getvalue().strip()


# -- environments that fail ----------------------------------------------------------------------------
def test_an_env_error_names_the_env_slot_step_and_action(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, env=lambda: FlakyEnv(every=3))
    with pytest.raises(
        RuntimeError, match=r"slot 0.*ConnectionError at step 1 of its episode, on action '\w+ the game'"
    ) as caught:
        trainer.train()
    assert isinstance(caught.value.__cause__, ConnectionError)
    assert "on_env_error='reset'" in str(caught.value)


def test_on_env_error_reset_cuts_the_episode_rebuilds_the_env_and_goes_on(tmp_path, tokenizer):
    built = []

    def factory():
        built.append(FlakyEnv(every=3))
        return built[-1]

    trainer = make_trainer(tmp_path, tokenizer, env=factory, on_env_error="reset", max_steps=4)
    trainer.train()  # two PPO iterations of 4 envs x 4 steps
    errors = [row["rollout/env_errors"] for row in trainer.state.log_history if "rollout/env_errors" in row]
    # Every env's third step call raises: once per env in each rollout, each time on a rebuilt env.
    assert errors == [4.0, 4.0]
    assert trainer._env_steps == 2 * 16  # the cut steps count as steps
    assert len(built) == 4 + 4 + 4


def test_an_env_that_never_recovers_stops_the_run(tmp_path, tokenizer):
    trainer = make_trainer(
        tmp_path, tokenizer, env=lambda: FlakyEnv(every=1), on_env_error="reset", max_env_errors=2
    )
    with pytest.raises(RuntimeError, match="3 errors in a row from this environment \\(max_env_errors=2\\)"):
        trainer.train()


class InfiniteRewardEnv(TwoChoiceEnv):
    """A broken reward: winning pays inf."""

    def transition(self, state, action):
        outcome = super().transition(state, action)
        return outcome._replace(reward=float("inf") if outcome.success else 0.0)


def test_a_non_finite_loss_stops_the_run_before_it_reaches_the_adapter(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, env=InfiniteRewardEnv, max_steps=2)
    before = trainable_state(trainer)
    with pytest.raises(
        FloatingPointError, match=r"non-finite (policy|value) loss.* at optimizer step 0 .*two buttons"
    ):
        trainer.train()
    after = trainable_state(trainer)
    for name in before:
        assert torch.equal(before[name], after[name]), name


def test_on_env_error_settings_are_checked(tmp_path):
    with pytest.raises(ValueError, match="on_env_error='ignore'"):
        config(tmp_path, on_env_error="ignore")
    with pytest.raises(ValueError, match="max_env_errors=0"):
        config(tmp_path, max_env_errors=0)


# -- bad input -----------------------------------------------------------------------------------------
def test_a_model_that_disagrees_with_the_config_is_refused(tmp_path, tokenizer):
    model = EmbodiedActorCritic(build_llama(len(tokenizer)), tokenizer, normalization="token")
    with pytest.raises(ValueError, match="normalization=.token. but args.normalization=.word."):
        EmbodiedPPOTrainer(model=model, args=config(tmp_path), env=TwoChoiceEnv)


def test_env_without_valid_actions_is_refused(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, env=NoActionsEnv)
    with pytest.raises(ValueError, match="does not follow the text-env contract.*TextEnvWrapper"):
        trainer.train()


def test_unknown_env_id_fails_at_construction(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="unknown environment id 'Nowhere-v0'"):
        make_trainer(tmp_path, tokenizer, env="Nowhere-v0")


def test_task_rows_give_multi_task_slots(tmp_path, tokenizer):
    set_seed(0)
    rows = [
        {"env_id": "Overcooked-TomatoSalad-v0", "env_kwargs": None, "seed": 0},
        {"env_id": "Household-FoodPreparation-v0", "env_kwargs": "{}", "seed": 5},
    ]
    model = EmbodiedActorCritic(build_llama(len(tokenizer)), tokenizer, value_head_sizes=[16])
    trainer = EmbodiedPPOTrainer(model=model, args=config(tmp_path, rollout_steps=2), train_dataset=rows)
    trainer.train()
    names = [slot.name for slot in trainer.slots]
    assert names == ["Overcooked-TomatoSalad-v0", "Household-FoodPreparation-v0"] * 2


class AlwaysWinningEnv(TwoChoiceEnv):
    """Two buttons, and both win: success 1 whatever the policy."""

    def transition(self, state, action):
        return super().transition(state, 0)


def test_several_evaluation_tasks_are_logged_each_and_as_their_mean(tmp_path, tokenizer):
    model = EmbodiedActorCritic(build_llama(len(tokenizer)), tokenizer, value_head_sizes=[16])
    eval_envs = {"choice": TwoChoiceEnv, "winning": AlwaysWinningEnv}
    trainer = EmbodiedPPOTrainer(
        model=model,
        args=config(tmp_path, eval_episodes=6, eval_greedy=False),
        env=TwoChoiceEnv,
        eval_env=eval_envs,
    )
    metrics = trainer.evaluate()
    assert metrics["eval_winning_success_rate"] == 1.0
    assert 0.0 < metrics["eval_choice_success_rate"] < 1.0  # sampled from an untrained 50/50 policy
    for key in ("success_rate", "return", "episode_length"):
        both = (metrics[f"eval_choice_{key}"], metrics[f"eval_winning_{key}"])
        assert metrics[f"eval_{key}"] == pytest.approx(sum(both) / 2)
    assert trainer.eval_env is trainer.eval_envs and list(trainer.eval_envs) == ["choice", "winning"]
    trainer.create_model_card()
    card = (tmp_path / "run" / "README.md").read_text()
    choice = metrics["eval_choice_success_rate"]
    mean = metrics["eval_success_rate"]
    assert (
        f"| last success rate | {mean:.2f} (sampled evaluation, the mean of choice {choice:.2f}, winning 1.00) |"
        in card
    )


def test_task_rows_are_evaluated_task_by_task(tmp_path, tokenizer):
    rows = [
        {"env_id": "Overcooked-TomatoSalad-v0"},
        {"env_id": "Household-FoodPreparation-v0"},
        {"env_id": "Overcooked-TomatoSalad-v0", "seed": 3},  # the same task again: evaluated once
        {"env_id": "trl_embodied/Overcooked-TomatoSalad-v0", "env_kwargs": {"randomize_items": True}},
    ]
    model = EmbodiedActorCritic(build_llama(len(tokenizer)), tokenizer, value_head_sizes=[16])
    trainer = EmbodiedPPOTrainer(model=model, args=config(tmp_path, eval_episodes=1), train_dataset=rows)
    assert list(trainer.eval_envs) == [
        "Overcooked-TomatoSalad-v0",
        "Household-FoodPreparation-v0",
        "Overcooked-TomatoSalad-v0_3",  # another task of the same id: made unique by its row
    ]
    assert trainer.eval_envs["Overcooked-TomatoSalad-v0_3"]().unwrapped.randomize_items is True
    metrics = trainer.evaluate()
    for name in trainer.eval_envs:
        assert f"eval_{name}_success_rate" in metrics
    one_task = EmbodiedPPOTrainer(model=model, args=config(tmp_path), train_dataset=rows[:1])
    assert not any(k.startswith("eval_Overcooked") for k in one_task.evaluate())  # a single task: no prefix


def test_task_rows_with_one_name_for_two_tasks_are_refused(tmp_path, tokenizer):
    rows = [
        {"env_id": "Overcooked-TomatoSalad-v0", "name": "salad"},
        {"env_id": "Overcooked-TomatoLettuceSalad-v0", "name": "salad"},
    ]
    model = EmbodiedActorCritic(build_llama(len(tokenizer)), tokenizer, value_head_sizes=[16])
    with pytest.raises(ValueError, match="task row 1 is named 'salad' like another task"):
        EmbodiedPPOTrainer(model=model, args=config(tmp_path), train_dataset=rows)


def test_evaluation_plays_the_training_env_kwargs(tmp_path, tokenizer):
    model = EmbodiedActorCritic(build_llama(len(tokenizer)), tokenizer, value_head_sizes=[16])
    args = config(tmp_path, env_id="Overcooked-TomatoSalad-v0", env_kwargs={"randomize_items": True})
    trainer = EmbodiedPPOTrainer(model=model, args=args)
    assert trainer.eval_env().unwrapped.randomize_items is True


# -- several processes ---------------------------------------------------------------------------------
def train_in_two_processes(tmp_path, *script_args: str) -> None:
    """tests/scripts/two_process_train.py under `accelerate launch`, and its two ranks' adapters the same."""
    # Two CPU processes (gloo) wherever the suite runs: on a one-GPU machine two ranks cannot share the card.
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        str(ROOT / "tests" / "scripts" / "two_process_train.py"), str(tmp_path), *script_args,
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert ranks[0].keys() == ranks[1].keys() and ranks[0]
    for name in ranks[0]:
        assert torch.equal(ranks[0][name], ranks[1][name]), name


def test_two_processes_hold_the_same_adapter(tmp_path):
    train_in_two_processes(tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["env_steps"] == 2 * 16 * 2  # two processes x 16 decision steps x 2 iterations
    assert summary["seeds_differ"]
    # Every logged training metric is the mean over both processes of what each measured, and the env
    # errors survived are counted on both: 4 per process and rollout.
    local = [json.loads((tmp_path / f"metrics_rank{r}.json").read_text()) for r in range(2)]
    logs = summary["logs"]
    assert len(logs) == len(local[0]) == len(local[1]) == 4
    differs = False
    for row, mine, theirs in zip(logs, *local, strict=True):
        for key in ("loss/policy", "loss/value", "policy/entropy", "policy/clip_fraction"):
            assert row[key] == pytest.approx((mine[key] + theirs[key]) / 2, abs=1e-6), key
            differs |= abs(mine[key] - theirs[key]) > 1e-6
    assert differs  # the processes measured different values: the average is no copy of rank 0's
    assert [row["rollout/env_errors"] for row in logs if "rollout/env_errors" in row] == [8.0, 8.0]
