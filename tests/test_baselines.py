"""The PPO-MLP baseline, evaluation of every kind of policy, and learning-curve plots."""

import numpy as np
import pytest
import torch

from trl_embodied import ActionScorer, evaluate_policy, expert_agreement, make_env
from trl_embodied.baselines import MLPActorCritic, MLPPPOConfig, train_mlp_ppo
from trl_embodied.evaluation import PLANNER, UNIFORM, play_episodes
from trl_embodied.plotting import curve, plot_learning_curves

from .toy_envs import DoorEnv, TwoChoiceEnv

TOMATO_SALAD = "trl_embodied/Overcooked-TomatoSalad-v0"
# What both the trainer and the baseline log per iteration, so their curves overlay.
SHARED_KEYS = {
    "env_steps",
    "loss/policy",
    "loss/value",
    "policy/entropy",
    "policy/approx_kl",
    "policy/clip_fraction",
    "value/explained_variance",
    "env_steps_per_second",
}


def test_mlp_ppo_learns_tomato_salad():
    model, history = train_mlp_ppo(MLPPPOConfig(total_env_steps=6144, eval_every=1024), progress=False)
    evaluations = [row for row in history if "eval_success_rate" in row]
    assert evaluations[0]["env_steps"] == 0 and evaluations[0]["eval_success_rate"] == 0.0
    assert evaluations[-1]["env_steps"] == 6144 and evaluations[-1]["eval_success_rate"] >= 0.9
    iterations = [row for row in history if "loss/policy" in row]
    assert len(iterations) == 6144 // 128 and all(set(row) >= SHARED_KEYS for row in iterations)
    # Finished episodes carry their count, as the trainer's rows do: success over a window of episodes.
    finished = [row for row in iterations if "episode/success_rate" in row]
    assert finished and all(row["episode/count"] >= 1 for row in finished)
    assert sum(row["episode/count"] for row in finished) >= 6144 // 50  # no episode lasts 50 macro steps here
    # The trained model is an ordinary policy for evaluate_policy.
    result = evaluate_policy(model, TOMATO_SALAD, episodes=4, seed=123, progress=False)
    assert result.success_rate >= 0.75 and 0 < result.optimal_return_ratio <= 1.0 + 1e-9


def test_mlp_policy_never_offers_an_invalid_action():
    env = make_env("trl_embodied/Household-FoodPreparation-v0")
    _, info = env.reset(seed=0)
    model = MLPActorCritic(info["symbolic_observation"].shape[0], env.action_space.n)
    mask = info["action_mask"].copy()
    mask[1::2] = 0  # pretend half of the actions are invalid
    probs = model.symbolic_probabilities(info["symbolic_observation"][None], mask[None])[0]
    assert torch.all(probs[torch.as_tensor(mask) == 0] == 0)
    assert torch.isclose(probs.sum(), torch.tensor(1.0))


def test_mlp_config_refuses_bad_values():
    with pytest.raises(ValueError, match="num_envs"):
        MLPPPOConfig(num_envs=0)
    with pytest.raises(ValueError, match="num_minibatches"):
        MLPPPOConfig(num_envs=3, rollout_steps=5, num_minibatches=4)
    with pytest.raises(ValueError, match="demonstration_episodes=-1"):
        MLPPPOConfig(demonstration_episodes=-1)


@pytest.mark.parametrize("demonstration_episodes", [0, 1])
def test_mlp_warm_start_clones_the_planners_episodes(demonstration_episodes):
    """Behaviour cloning on the planner's Entertainment episode (11 decisions, each among the applicable
    actions by vocabulary id) makes the untrained baseline play it greedily before any PPO step."""
    config = MLPPPOConfig(
        env_id="trl_embodied/Household-Entertainment-v0",
        total_env_steps=128,
        eval_episodes=2,
        demonstration_episodes=demonstration_episodes,
    )
    _, history = train_mlp_ppo(config, progress=False)
    before_ppo = history[0]
    assert before_ppo["env_steps"] == 0
    assert before_ppo["eval_success_rate"] == (1.0 if demonstration_episodes else 0.0)


def test_evaluate_policy_takes_a_plain_callable():
    def always_second(prompts, actions):
        probs = torch.zeros(len(prompts), max(map(len, actions)))
        probs[:, 1] = 1.0
        return probs

    result = evaluate_policy(always_second, TwoChoiceEnv, episodes=3, progress=False)
    assert result.success_rate == 0.0 and result.mean_length == 1.0 and len(result.episodes) == 3


def test_no_repeat_breaks_the_loops_of_a_greedy_policy():
    # The policy always prefers opening, then closing, then walking through: greedily it opens the door
    # and then opens the open door until the step limit.
    def prefers_opening(prompts, actions):
        return torch.tensor([[0.5, 0.3, 0.2]] * len(prompts))

    greedy = evaluate_policy(prefers_opening, DoorEnv, episodes=2, progress=False)
    assert greedy.success_rate == 0.0 and greedy.mean_length == 20

    # Without repeats: open (closed), open (open: a no-op), close (open), close (closed: a no-op), walk
    # (closed: a no-op); every action was tried from the closed state, so the policy's argmax: open;
    # from the open state walking through is the one left, and succeeds.
    records, _ = play_episodes(prefers_opening, DoorEnv, 2, no_repeat=True, record_steps=True, progress=False)
    assert [step["action"] for step in records[0]["steps"]] == [0, 0, 1, 1, 2, 0, 2]
    assert all(r["success"] for r in records)
    # The renormalized probabilities are the ones played; the policy's own tensor is untouched.
    assert records[0]["steps"][2]["action_probs"] == pytest.approx([0.0, 0.6, 0.4])
    assert records[0]["steps"][5]["action_probs"] == pytest.approx([0.5, 0.3, 0.2])
    # Sampling respects it too: an action tried from a state is not drawn there again while another is left.
    generator = torch.Generator().manual_seed(0)
    records, _ = play_episodes(
        prefers_opening,
        DoorEnv,
        8,
        greedy=False,
        no_repeat=True,
        generator=generator,
        record_steps=True,
        progress=False,
    )
    for record in records:
        tried: dict[str, set[int]] = {}
        for step in record["steps"]:
            before = tried.setdefault(step["prompt"], set())
            assert step["action"] not in before or len(before) == 3
            before.add(step["action"])


def test_the_uniform_policy_is_the_uninformed_control():
    records, _ = play_episodes(UNIFORM, DoorEnv, 1, record_steps=True, progress=False)
    steps = records[0]["steps"]
    assert steps[0]["action_probs"] == pytest.approx([1 / 3] * 3)
    # Greedily it takes the first listed action: opens the door, then opens the open door to the limit.
    assert [s["action"] for s in steps] == [0] * 20 and not records[0]["success"]
    # Without repeats it tries each state's actions in their listed order, a search that finds the way out.
    result = evaluate_policy(UNIFORM, DoorEnv, episodes=1, no_repeat=True, progress=False)
    assert result.success_rate == 1.0 and result.mean_length == 7
    with pytest.raises(ValueError, match="'planner' and 'uniform'"):
        evaluate_policy("random", DoorEnv, episodes=1, progress=False)


def test_the_planner_policy_is_optimal_and_steps_are_recorded():
    result = evaluate_policy(PLANNER, "trl_embodied/Overcooked-TomatoSalad-v0", episodes=2, progress=False)
    assert result.success_rate == 1.0 and result.optimal_return_ratio == pytest.approx(1.0)

    records, _ = play_episodes(
        PLANNER, "trl_embodied/Overcooked-TomatoSalad-v0", 1, record_steps=True, progress=False
    )
    steps = records[0]["steps"]
    assert len(steps) == records[0]["length"] == result.mean_length
    assert sum(step["reward"] for step in steps) == pytest.approx(records[0]["return"])
    for step in steps:
        assert step["action_probs"][step["action"]] == 1.0 and len(step["action_probs"]) == len(
            step["valid_actions"]
        )
    with pytest.raises(ValueError, match="planner"):
        evaluate_policy("expert", "trl_embodied/Overcooked-TomatoSalad-v0", episodes=1, progress=False)


def test_expert_agreement_measures_a_prior_against_the_uniform_policy(tokenizer):
    from .conftest import build_llama

    records, _ = play_episodes(PLANNER, TOMATO_SALAD, 2, record_steps=True, progress=False)
    steps = [step for record in records for step in record["steps"]]
    uniform = expert_agreement(UNIFORM, TOMATO_SALAD, episodes=2)
    assert uniform.states == len(steps) > 0
    assert uniform.expert_probability == pytest.approx(uniform.uniform_probability)
    assert uniform.lift == pytest.approx(1.0)
    # Greedily the uniform policy takes the first listed action: it agrees where the planner does too.
    assert uniform.argmax_agreement == pytest.approx(np.mean([s["action"] == 0 for s in steps]))
    # A base model's probabilities, in batches that split the episodes, match scoring each state alone.
    scorer = ActionScorer(build_llama(len(tokenizer), seed=1), tokenizer)
    model = expert_agreement(scorer, TOMATO_SALAD, episodes=2, batch_size=4)
    alone = [scorer.score([s["prompt"]], [s["valid_actions"]]).probs[0] for s in steps]
    expected = [float(p[s["action"]]) for p, s in zip(alone, steps, strict=True)]
    hits = [int(p.argmax()) == s["action"] for p, s in zip(alone, steps, strict=True)]
    assert model.expert_probability == pytest.approx(np.mean(expected), rel=1e-5)
    assert model.argmax_agreement == pytest.approx(np.mean(hits))
    assert model.lift != pytest.approx(1.0)  # a random model is not uniform
    with pytest.raises(ValueError, match="the planner is the expert"):
        expert_agreement(PLANNER, TOMATO_SALAD)


def test_learning_curves_are_written_as_png_and_svg(tmp_path):
    seeds = [
        [
            {"env_steps": 0, "eval_success_rate": 0.0},
            {"env_steps": 100, "eval_success_rate": 0.5, "episode/return": 1.0},
        ],
        [
            {"env_steps": 0, "eval_success_rate": 0.0},
            {"env_steps": 100, "eval_success_rate": 1.0, "episode/return": 2.0},
        ],
    ]
    figure = plot_learning_curves({"twosome": seeds, "mlp": seeds[:1]}, tmp_path / "curves.png", title="t")
    assert (tmp_path / "curves.png").stat().st_size > 1000 and (tmp_path / "curves.svg").stat().st_size > 1000
    success_axis = figure.axes[0]
    mean_line = success_axis.get_lines()[0]
    assert np.allclose(mean_line.get_ydata(), [0.0, 0.75])  # the mean of the two seeds
    assert "2 seeds" in success_axis.get_legend().get_texts()[0].get_text()
    first = (tmp_path / "curves.svg").read_bytes()
    plot_learning_curves({"twosome": seeds, "mlp": seeds[:1]}, tmp_path / "curves.png", title="t")
    assert (tmp_path / "curves.svg").read_bytes() == first  # re-plotting leaves the file as it was


def test_curve_reads_only_rows_with_both_keys():
    xs, ys = curve(
        [{"env_steps": 5, "a": 1.0}, {"env_steps": 1}, {"a": 3.0}, {"env_steps": 2, "a": 0.0}], "a"
    )
    assert xs.tolist() == [2, 5] and ys.tolist() == [0.0, 1.0]


def test_zero_shot_comparison_disables_the_adapter(tokenizer):
    from trl_embodied import EmbodiedActorCritic
    from trl_embodied.evaluation import compare_zero_shot, format_comparison

    from .conftest import build_llama

    model = EmbodiedActorCritic(build_llama(len(tokenizer), seed=1), tokenizer)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=2.0, generator=torch.Generator().manual_seed(0))
    (row,) = compare_zero_shot(model, [TOMATO_SALAD], episodes=2, progress=False)
    from trl_embodied import ActionScorer

    plain = ActionScorer(build_llama(len(tokenizer), seed=1), tokenizer)
    base = evaluate_policy(plain, TOMATO_SALAD, episodes=2, progress=False)
    assert row["zero_shot"].episodes == base.episodes
    adapted = evaluate_policy(model, TOMATO_SALAD, episodes=2, progress=False)
    assert row["trained"].episodes == adapted.episodes
    assert "| Overcooked-TomatoSalad-v0 |" in format_comparison([row])
    (sampled,) = compare_zero_shot(model, [TOMATO_SALAD], episodes=2, progress=False, greedy=False)
    base = evaluate_policy(
        plain,
        TOMATO_SALAD,
        episodes=2,
        greedy=False,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    assert sampled["zero_shot"].episodes == base.episodes
    # history_length: the same comparison on prompts that carry the last actions, as trained with them.
    (remembered,) = compare_zero_shot(model, [TOMATO_SALAD], episodes=2, progress=False, history_length=2)
    from trl_embodied import ActionHistory, make_env

    adapted = evaluate_policy(
        model, lambda: ActionHistory(make_env(TOMATO_SALAD), 2), episodes=2, progress=False
    )
    assert remembered["trained"].episodes == adapted.episodes
