"""The figures of merit the benchmarks report, from a run's log history, and the settings they share."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import pytest  # noqa: E402
from common import paper_gamma, steps_to_sampled_target, steps_to_target, target_success  # noqa: E402
from sample_efficiency import PROMPT_ONLY_VARIANT, TASKS, method_figures, ratios_to_baseline  # noqa: E402

from trl_embodied.envs import ENV_IDS  # noqa: E402


def iteration(env_steps: int, episodes: int, success_rate: float) -> dict:
    return {"env_steps": env_steps, "episode/count": float(episodes), "episode/success_rate": success_rate}


def test_steps_to_target_is_the_first_greedy_evaluation_at_the_target():
    history = [
        {"env_steps": 0, "eval_success_rate": 0.0},
        iteration(128, 3, 1.0),  # sampled training episodes do not count here
        {"env_steps": 1024, "eval_success_rate": 0.5},
        {"env_steps": 2048, "eval_success_rate": 0.9},
        {"env_steps": 3072, "eval_success_rate": 1.0},
    ]
    assert steps_to_target(history) == 2048
    assert steps_to_target(history, target=1.0) == 3072
    assert steps_to_target(history[:3]) is None


def test_sampled_target_needs_a_full_window_of_successful_episodes():
    # A lucky first iteration (3 of 3 episodes succeed) is not a learned policy: the window is 20 episodes.
    history = [
        iteration(128, 3, 1.0),
        iteration(256, 10, 0.5),
        iteration(384, 10, 1.0),
        iteration(512, 10, 1.0),
    ]
    # At 384 the last 20 episodes are 10 at 0.5 and 10 at 1.0: 0.75. At 512 the last 20 all succeed.
    assert steps_to_sampled_target(history) == 512
    assert steps_to_sampled_target(history, target=0.75) == 384
    assert steps_to_sampled_target(history, window=3) == 128
    # Rows are taken in env-step order, and rows without finished episodes are skipped.
    shuffled = [history[3], {"env_steps": 448, "loss/policy": 0.1}, history[0], history[2], history[1]]
    assert steps_to_sampled_target(shuffled) == 512
    assert steps_to_sampled_target(history[:3]) is None


def test_every_registered_task_has_the_papers_discount():
    # Both methods of every benchmark train with it; a task without one would silently get a default.
    gammas = {env_id: paper_gamma(env_id) for env_id in ENV_IDS}
    assert gammas["trl_embodied/Overcooked-TomatoLettuceSalad-v0"] == 0.99
    assert gammas["trl_embodied/Household-FoodPreparation-v0"] == 0.95
    assert set(gammas.values()) == {0.99, 0.95}
    with pytest.raises(ValueError, match="No paper discount.*known families"):
        paper_gamma("trl_embodied/Minigrid-Empty-v0")


def test_ratios_against_ppo_mlp_bound_the_seeds_it_never_reached():
    twosome = {"seeds": [0, 1, 2, 3], "steps_to_target": [2048, 1024, None, 512]}
    mlp = {"seeds": [0, 1, 2], "steps_to_target": [8192, None, 4096], "budget_env_steps": [102400] * 3}
    assert ratios_to_baseline(twosome, mlp) == [
        {"seed": 0, "ratio": 4.0},
        {"seed": 1, "at_least": 100.0},  # PPO-MLP never got there within its budget
    ]  # seed 2: TWOSOME did not reach the target; seed 3: no PPO-MLP run to compare with


def test_each_task_is_judged_against_its_own_target():
    # BabyAI-Text's published figure is 0.8 success; the paper's tasks count 0.9. A BabyAI run at 0.85 has
    # reached its target, an Overcooked run at 0.85 has not.
    assert target_success(TASKS["babyai_gotolocal"]) == 0.8
    assert target_success(TASKS["tomato_salad"]) == 0.9
    assert paper_gamma(TASKS["babyai_gotoredball"]) == 0.99
    history = [
        {"env_steps": 0, "eval_success_rate": 0.0},
        {"env_steps": 1024, "eval_success_rate": 0.85},
        {"env_steps": 2048, "eval_success_rate": 0.95},
    ]
    records = [
        {"task": task, "seed": 0, "total_env_steps": 2048, "history": history}
        for task in ("babyai_gotoredball", "tomato_salad")
    ]
    figures = method_figures(records)
    assert figures["target_success"] == [0.8, 0.9]
    assert figures["steps_to_target"] == [1024, 2048]


def test_update_time_ratios_pool_every_timed_update_of_the_seeds():
    from estimators import with_pooled_ratios

    def row(seconds, minibatches):
        return {"update_seconds": seconds, "minibatches_forwarded": minibatches}

    result = {
        "seeds": {
            "0": {"gae": row([100.0, 300.0], [10, 30]), "gigpo": row([50.0, 50.0], [5, 5])},
            "1": {"gae": row([200.0, 200.0], [20, 20]), "gigpo": row([300.0, 100.0], [15, 5])},
            "2": {"gigpo": row([1.0, 1.0], [1, 1])},  # no GAE to compare with: left out
        }
    }
    pooled = with_pooled_ratios(result)["over_seeds"]
    # GiGPO: 500 s over 4 updates against GAE's 800 s over 4; per minibatch 500/30 against 800/80.
    assert pooled["gigpo"]["seeds"] == 2
    assert pooled["gigpo"]["update_time_ratio_to_gae"] == pytest.approx(500 / 800)
    assert pooled["gigpo"]["minibatch_time_ratio_to_gae"] == pytest.approx((500 / 30) / (800 / 80))
    assert pooled["gae"]["update_time_ratio_to_gae"] == pytest.approx(1.0)


def test_the_estimators_gae_row_borrows_only_twosome_runs_at_the_trainers_defaults(tmp_path, monkeypatch):
    import json

    import estimators

    monkeypatch.setattr(estimators, "RESULTS", tmp_path)
    runs = tmp_path / "sample_efficiency" / "tomato_lettuce_salad"
    runs.mkdir(parents=True)
    default = {"trainer_settings": {}, "history_length": 0, "bf16": False, "env_kwargs": {}}
    for seed, changes in enumerate(
        [
            {},
            {"trainer_settings": {"num_ppo_epochs": 2}},
            {"history_length": 3},
            {"bf16": True},
            {"warm_start_sft": {}},
        ]
    ):
        (runs / f"twosome_seed{seed}.json").write_text(json.dumps({**default, **changes, "seed": seed}))
    (runs / "mlp_seed5.json").write_text(json.dumps({**default, "seed": 5}))
    borrowed = estimators.default_twosome_runs("tomato_lettuce_salad")
    assert [run["seed"] for run in borrowed] == [0]
    assert borrowed[0]["estimator"] == "gae" and borrowed[0]["rollout_steps"] == 32
    assert borrowed[0]["source"] == "sample_efficiency/tomato_lettuce_salad/twosome_seed0.json"


def test_estimator_ratios_to_gae_bound_the_seeds_gae_never_reached():
    gae = {"seeds": [0, 1, 2], "steps_to_target": [None, 4096, 2048], "budget_env_steps": [10240] * 3}
    gigpo = {"seeds": [0, 1, 2, 3], "steps_to_target": [5120, 2048, None, 1024]}
    assert ratios_to_baseline(gigpo, gae) == [
        {"seed": 0, "at_least": 2.0},
        {"seed": 1, "ratio": 2.0},
    ]


def test_only_variants_of_the_prompt_borrow_the_base_tasks_ppo_mlp_runs():
    # PPO-MLP reads the symbolic state: a variant of what the LLM reads is compared with the base task's runs.
    for variant, base in (
        ("babyai_gotoredball_history3", "babyai_gotoredball"),
        ("tomato_salad_static_slot_texts", "tomato_salad"),
    ):
        assert PROMPT_ONLY_VARIANT.search(variant) and PROMPT_ONLY_VARIANT.sub("", variant) == base
    # A warm start or another action set changes PPO-MLP's task too: those variants keep their own runs.
    for variant in ("entertainment_warm_start", "food_preparation_all_actions", "babyai_gotoredball"):
        assert not PROMPT_ONLY_VARIANT.search(variant)


#: A tiny model's run: 4 env steps and 2 optimizer steps an iteration.
TINY_RUN = dict(num_envs=1, rollout_steps=4, per_device_train_batch_size=2, num_ppo_epochs=1)


def test_a_benchmark_evaluates_the_policy_after_the_whole_update_of_its_env_steps(saved_llama):
    """An iteration's rollout runs in its first optimizer step: an evaluation keyed on env steps alone came one
    minibatch into the next update, and the last update was never evaluated."""
    from common import train_twosome

    trainer, record = train_twosome(
        "trl_embodied/Overcooked-TomatoSalad-v0",
        model=str(saved_llama),
        seed=0,
        total_env_steps=12,
        eval_every=4,
        eval_episodes=1,
        **TINY_RUN,
    )
    steps_per_iteration = trainer.args.optimizer_steps_per_rollout
    evaluations = [row for row in record["history"][1:] if "eval_success_rate" in row]
    assert [row["step"] for row in evaluations] == [steps_per_iteration * k for k in (1, 2, 3)]
    assert evaluations[-1]["step"] == trainer.state.global_step  # the final policy is the one evaluated


def test_update_timing_times_the_middle_updates_and_skips_the_last(saved_llama):
    from estimators import timed_updates

    row = timed_updates("tomato_salad", "gae", 0, 2, {**TINY_RUN, "group_size": 1}, model=str(saved_llama))
    assert len(row["update_seconds"]) == len(row["minibatches_forwarded"]) == 2
    assert row["env_steps_per_iteration"] == [4, 4, 4, 4]  # 2 + 2 rollouts
    # Two optimizer steps an iteration: three iterations updated, the fourth stopped after its rollout step.
    assert row["optimizer_steps_run"] == 3 * 2 + 1


def test_another_base_model_needs_a_run_name_that_keeps_its_records_apart():
    import argparse

    from common import add_model_arguments, check_model_arguments

    parser = argparse.ArgumentParser()
    add_model_arguments(parser, "the record name's part")
    with pytest.raises(SystemExit):
        check_model_arguments(parser, parser.parse_args(["--model_name_or_path", "/models/gemma.gguf"]))
    named = parser.parse_args(["--model_name_or_path", "/models/gemma.gguf", "--run_name", "gemma"])
    check_model_arguments(parser, named)
    assert (named.model_name_or_path, named.run_name) == ("/models/gemma.gguf", "gemma")
    check_model_arguments(parser, parser.parse_args([]))  # the default model needs no name
