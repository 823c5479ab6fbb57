"""EmbodiedPPOTrainer with the critic-free group estimators (GRPO, RLOO, GiGPO) on tiny models."""

import pytest
import torch

from trl_embodied import EmbodiedActorCritic

from .conftest import build_llama
from .test_trainer import make_trainer, trainable_state, win_probability
from .toy_envs import DoorEnv


@pytest.mark.parametrize("estimator", ["grpo", "rloo", "gigpo"])
def test_a_group_estimator_learns_the_rewarded_action_without_a_value_head(tmp_path, tokenizer, estimator):
    base_model = build_llama(len(tokenizer), init_std=0.1)
    trainer = make_trainer(
        tmp_path, tokenizer, base_model=base_model, max_steps=20, advantage_estimator=estimator, group_size=2
    )
    assert trainer.accelerator.unwrap_model(trainer.model).value_head is None
    assert [g["name"] for g in trainer.create_optimizer().param_groups] == ["actor"]
    before = win_probability(trainer)
    trainer.train()
    assert win_probability(trainer) > max(0.9, before), before
    logged = {key for row in trainer.state.log_history for key in row}
    assert {"advantages/mean", "rollout/episodes_in_groups"} <= logged
    assert not {"loss/value", "value/mean", "value/explained_variance"} & logged
    assert ("advantages/anchored_share" in logged) == (estimator == "gigpo")
    trainer.save_model(str(tmp_path / "saved"))
    assert not (tmp_path / "saved" / "value_head.safetensors").exists()
    reloaded = EmbodiedActorCritic.from_pretrained(
        tmp_path / "saved", base_model=build_llama(len(tokenizer), init_std=0.1), tokenizer=tokenizer
    )
    assert reloaded.value_head is None


def played_rollout(tmp_path, tokenizer, **overrides):
    """A trainer on DoorEnv with 2 groups of 2 slots, and one rollout of 24 steps it played."""
    trainer = make_trainer(tmp_path, tokenizer, env=DoorEnv, group_size=2, rollout_steps=24, **overrides)
    trainer.slots = trainer._make_slots()
    return trainer, trainer._play(24)


def test_groups_share_their_reset_seed_and_unfinished_rounds_are_dropped(tmp_path, tokenizer):
    """DoorEnv's episodes last up to 20 steps: a rollout of 24 steps ends inside a round, whose rows are
    masked out of the update; the rows of rounds that ended count, and a waiting slot's rows do not."""
    trainer, rollout = played_rollout(tmp_path, tokenizer, advantage_estimator="grpo")
    seeds = {}
    for (group, seed), _ in rollout.episodes.values():
        seeds.setdefault(group, []).append(seed)
    for group in (0, 1):  # both slots of a group reset with one seed per round, each round a new one
        assert seeds[group][::2] == seeds[group][1::2] and len(set(seeds[group])) == len(seeds[group]) // 2
        assert trainer.slots[2 * group].seed == trainer.slots[2 * group + 1].seed
    advantages, mask = trainer._group_advantages(rollout)
    rounds = {}
    for key, ended in rollout.episodes.values():
        rounds.setdefault(key, []).append(ended)
    counted = {
        (t, n)
        for t in range(24)
        for n in range(4)
        if rollout.episode_ids[t][n] is not None
        and all(rounds[rollout.episodes[rollout.episode_ids[t][n]][0]])
    }
    assert {(t, n) for t, n in mask.nonzero().tolist()} == counted
    assert mask.any() and (rollout.active & ~mask).any()  # some rounds ended, the rollout's end cut others
    assert not (mask & ~rollout.active).any()  # a waiting slot's row never counts
    assert (advantages[~mask] == 0).all()


def test_rows_a_group_estimator_drops_are_not_run_through_the_model(tmp_path, tokenizer):
    """A minibatch with dropped rows (a waiting slot's, a cut round's) forwards only the rows that count,
    and its loss and gradients are those of the kept rows alone."""
    trainer = make_trainer(
        tmp_path, tokenizer, env=DoorEnv, group_size=2, rollout_steps=24, advantage_estimator="gigpo"
    )
    trainer.slots = trainer._make_slots()
    minibatch = next(b for b in trainer._rollout() if b["mask"].any() and not b["mask"].all())
    kept = {
        key: [v for v, m in zip(value, minibatch["mask"], strict=True) if m]
        if isinstance(value, list)
        else value[minibatch["mask"]]
        for key, value in minibatch.items()
    }
    model = trainer.model
    forwarded = []

    def loss_and_gradients(batch):
        model.zero_grad()
        loss = trainer.compute_loss(
            lambda prompts, actions: forwarded.append(len(prompts)) or model(prompts, actions), batch
        )
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss, gradients = loss_and_gradients(minibatch)
    expected_loss, expected_gradients = loss_and_gradients(kept)
    assert forwarded == [int(minibatch["mask"].sum())] * 2 < [len(minibatch["prompts"])] * 2
    assert torch.allclose(loss, expected_loss, atol=1e-6)
    assert gradients.keys() == expected_gradients.keys() and gradients
    for name, gradient in gradients.items():
        assert torch.allclose(gradient, expected_gradients[name], atol=1e-6), name


def test_a_critic_free_run_resumes_to_the_same_weights(tmp_path, tokenizer):
    run = dict(env=DoorEnv, max_steps=4, advantage_estimator="gigpo", group_size=2)
    straight = make_trainer(tmp_path / "straight", tokenizer, **run)
    straight.train()
    make_trainer(tmp_path / "resumed", tokenizer, save_strategy="steps", save_steps=1, **run).train()
    resumed = make_trainer(tmp_path / "resumed", tokenizer, seed=5, **run)  # another init, overwritten
    resumed.train(resume_from_checkpoint=str(tmp_path / "resumed" / "run" / "checkpoint-2"))
    expected, actual = trainable_state(straight), trainable_state(resumed)
    for name in expected:
        assert torch.allclose(expected[name], actual[name], atol=1e-6), name
    with pytest.raises(ValueError, match="written by a critic-free run"):
        make_trainer(tmp_path / "resumed", tokenizer, env=DoorEnv, max_steps=4).train(
            resume_from_checkpoint=str(tmp_path / "resumed" / "run" / "checkpoint-2")
        )


def test_beta_adds_a_kl_penalty_to_the_base_policy(tmp_path, tokenizer):
    trainer = make_trainer(
        tmp_path, tokenizer, max_steps=4, advantage_estimator="grpo", group_size=2, beta=0.1
    )
    trainer.train()
    kl = [row["policy/kl_to_base"] for row in trainer.state.log_history if "policy/kl_to_base" in row]
    assert len(kl) == 4 and kl[0] == pytest.approx(0.0, abs=1e-6) and kl[-1] > 0  # LoRA's B starts at zero


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"advantage_estimator": "vtrace"}, "advantage_estimator='vtrace'; use one of"),
        ({"advantage_estimator": "grpo", "group_size": 1}, "group_size=1; a group compares at least 2"),
        ({"advantage_estimator": "grpo", "group_size": 3}, "num_envs=4 is not a multiple of group_size=3"),
        ({"beta": -1.0}, "beta=-1.0"),
    ],
)
def test_bad_estimator_settings_are_named(tmp_path, tokenizer, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_trainer(tmp_path, tokenizer, **overrides)


def test_a_model_with_a_value_head_is_refused_for_a_critic_free_estimator(tmp_path, tokenizer):
    from trl_embodied import EmbodiedPPOTrainer

    from .test_trainer import config

    model = EmbodiedActorCritic(build_llama(len(tokenizer)), tokenizer, value_head_sizes=[16])
    with pytest.raises(ValueError, match="uses no value head; build the model with value_head_sizes=None"):
        EmbodiedPPOTrainer(model=model, args=config(tmp_path, advantage_estimator="grpo", group_size=2))


def test_a_rollout_shorter_than_the_episodes_warns_and_leaves_the_adapter_alone(tmp_path, tokenizer):
    trainer = make_trainer(
        tmp_path,
        tokenizer,
        env=DoorEnv,
        advantage_estimator="grpo",
        group_size=2,
        rollout_steps=2,
        max_steps=2,
        weight_decay=0.5,  # AdamW would shrink the weights on any optimizer step, gradient or not
    )  # a random policy rarely opens and walks through the door within 2 steps in both slots of a group
    before = trainable_state(trainer)
    with pytest.warns(
        UserWarning, match="no group's episode round ended within a rollout of rollout_steps=2"
    ):
        trainer.train()
    empty = [
        row["policy/empty_minibatch"] for row in trainer.state.log_history if "policy/empty_minibatch" in row
    ]
    assert empty == [1.0, 1.0]  # every minibatch was skipped...
    after = trainable_state(trainer)
    for name, weights in before.items():  # ...so no optimizer step moved a weight
        assert torch.equal(weights, after[name]), name


def test_episodes_that_may_outlast_the_rollout_are_named_before_training(tmp_path, tokenizer):
    # Tomato Salad truncates at 200 primitive steps: a policy that dawdles plays rounds no 4-step rollout
    # holds, and a group estimator would drop them without a word after the first rollout.
    trainer = make_trainer(
        tmp_path,
        tokenizer,
        env="trl_embodied/Overcooked-TomatoSalad-v0",
        advantage_estimator="grpo",
        group_size=2,
        rollout_steps=4,
        max_steps=1,
    )
    with pytest.warns(
        UserWarning, match="last up to 200 decisions, more than rollout_steps=4.*rollout_steps >= 200"
    ):
        trainer.train()


def test_with_history_gigpo_anchors_on_the_prompt_that_carries_it(tmp_path, tokenizer, monkeypatch):
    """The anchor state is the exact prompt: with history_length the same door after different pasts is a
    different anchor, so GiGPO's step groups never pool them."""
    from trl_embodied.trainer import embodied_ppo_trainer

    trainer, rollout = played_rollout(tmp_path, tokenizer, advantage_estimator="gigpo", history_length=2)
    anchored = []
    real = embodied_ppo_trainer.group_advantages
    monkeypatch.setattr(
        embodied_ppo_trainer,
        "group_advantages",
        lambda episodes, *a, **k: (
            anchored.extend(s for e in episodes for s in e.states) or real(episodes, *a, **k)
        ),
    )
    trainer._group_advantages(rollout)
    assert anchored and all(prompt in [p for row in rollout.prompts for p in row] for prompt, _ in anchored)
    assert any(prompt.startswith("Your last actions: ") for prompt, _ in anchored)
