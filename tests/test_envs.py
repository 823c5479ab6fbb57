"""The text-environment contract, checked on every built-in task."""

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import trl_embodied
from trl_embodied import ENV_IDS, HouseholdEnv, OvercookedEnv, SymbolicObservation, make_env

# (vocabulary size = valid actions at the start, optimal number of steps, undiscounted return of the
# optimal plan as a function of its primitive steps): Overcooked's slots are all valid in every state.
OVERCOOKED = {
    "trl_embodied/Overcooked-TomatoSalad-v0": (5, 6, lambda steps: 1 + 0.2 - 0.001 * steps),
    "trl_embodied/Overcooked-TomatoLettuceSalad-v0": (8, 10, lambda steps: 1 + 0.4 - 0.001 * steps),
}
# (vocabulary size, applicable actions at the start, optimal number of steps): a household state offers
# only its applicable actions (the paper's 10 and 17 are the vocabularies; 6 and 11 its optima).
HOUSEHOLD = {
    "trl_embodied/Household-FoodPreparation-v0": (10, 5, 6),
    "trl_embodied/Household-Entertainment-v0": (17, 5, 11),
    "trl_embodied/Household-HeatCheese-v0": (13, 3, 8),
    "trl_embodied/Household-HeatHamburger-v0": (11, 3, 8),
    "trl_embodied/Household-StoreApplePie-v0": (11, 6, 6),
    "trl_embodied/Household-WashPlate-v0": (12, 5, 7),
    "trl_embodied/Household-DoLaundry-v0": (13, 5, 8),
}
# env id -> (vocabulary size, valid actions at the start, optimal steps)
EXPECTED = {env_id: (n, n, optimal) for env_id, (n, optimal, _) in OVERCOOKED.items()} | HOUSEHOLD


def test_every_registered_task_is_covered():
    assert set(ENV_IDS) == set(EXPECTED)
    assert len([i for i in ENV_IDS if "Household" in i]) >= 2 + 4  # two training tasks, four unseen


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_check_env_passes_without_warnings(env_id):
    # check_env steps samples of the whole action space; a household state offers fewer actions than its
    # vocabulary, so indices past the valid ones are penalized no-ops here instead of errors.
    env = gymnasium.make(env_id, invalid_action="noop")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=False)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_reset_and_step_follow_the_contract(env_id):
    env = gymnasium.make(env_id)
    prompt, info = env.reset(seed=0)
    vocabulary, num_valid, _ = EXPECTED[env_id]
    assert isinstance(prompt, str) and env.observation_space.contains(prompt)
    assert env.action_space.n == vocabulary and len(info["valid_actions"]) == num_valid
    assert len(set(info["valid_actions"])) == num_valid
    assert len(info["action_ids"]) == num_valid and sorted(set(info["action_ids"])) == info["action_ids"]
    assert np.flatnonzero(info["action_mask"]).tolist() == info["action_ids"]
    assert info["success"] is False and info["primitive_steps"] == 0
    symbolic_space = env.get_wrapper_attr("symbolic_observation_space")
    assert symbolic_space.contains(info["symbolic_observation"])
    prompt, reward, terminated, truncated, info = env.step(0)
    assert isinstance(prompt, str) and isinstance(reward, float)
    assert isinstance(terminated, bool) and isinstance(truncated, bool)
    assert info["primitive_steps"] >= 1
    assert symbolic_space.contains(info["symbolic_observation"])


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_planner_solves_the_task_in_the_optimal_number_of_steps(env_id):
    env = gymnasium.make(env_id)
    env.reset(seed=0)
    plan = env.unwrapped.plan()
    *_, optimal_steps = EXPECTED[env_id]
    assert len(plan) == optimal_steps
    total, primitive = 0.0, 0
    for step, action in enumerate(plan):
        _, reward, terminated, truncated, info = env.step(action)
        total += reward
        primitive += info["primitive_steps"]
        assert not truncated
        assert terminated == info["success"] == (step == len(plan) - 1)
    if env_id in OVERCOOKED:
        assert total == pytest.approx(OVERCOOKED[env_id][2](primitive))
    else:
        assert total == 1.0 and primitive == optimal_steps


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_episode(env_id):
    def rollout(seed):
        env = make_env(env_id)
        prompt, info = env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        trace = [prompt]
        for _ in range(15):
            prompt, reward, terminated, truncated, info = env.step(
                int(rng.integers(len(info["valid_actions"])))
            )
            trace += [prompt, reward]
            if terminated or truncated:
                break
        return trace

    assert rollout(3) == rollout(3)


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [(env_id, {}) for env_id in ENV_IDS]
    + [("trl_embodied/Overcooked-TomatoSalad-v0", {"randomize_items": True, "observation_radius": 2})],
)
def test_state_dict_continues_the_same_episodes_after_a_round_trip_through_safe_files(
    env_id, kwargs, tmp_path
):
    """An env saved mid-episode through the trainer's checkpoint files (JSON + safetensors) and loaded into a
    fresh env plays on exactly as the original: the rest of this episode, and the next ones (their reset
    draws from the restored generator)."""
    from trl_embodied.trainer.rollout_state import load_tree, save_tree

    def play(env, info, rng, steps):
        trace = []
        for _ in range(steps):
            prompt, reward, terminated, truncated, info = env.step(
                int(rng.integers(len(info["valid_actions"])))
            )
            trace.append((prompt, reward, terminated, truncated, info["valid_actions"], info["success"]))
            if terminated or truncated:
                prompt, info = env.reset()  # no seed: the env's own generator
                trace.append(prompt)
        return trace, info

    original = make_env(env_id, **kwargs)
    _, info = original.reset(seed=5)
    _, info = play(original, info, np.random.default_rng(0), 7)
    save_tree(
        {"env": original.unwrapped.state_dict(), "info": info},
        tmp_path / "s.json",
        tmp_path / "s.safetensors",
    )
    restored = make_env(env_id, **kwargs)
    saved = load_tree(tmp_path / "s.json", tmp_path / "s.safetensors")
    restored.reset(seed=123)  # another episode: the load must replace all of it
    restored.unwrapped.load_state_dict(saved["env"])
    assert restored.unwrapped.state == original.unwrapped.state
    assert saved["info"]["valid_actions"] == info["valid_actions"]
    np.testing.assert_array_equal(saved["info"]["action_mask"], info["action_mask"])
    expected, _ = play(original, info, np.random.default_rng(1), 120)
    actual, _ = play(restored, saved["info"], np.random.default_rng(1), 120)
    assert actual == expected


def test_load_state_dict_refuses_another_tasks_state():
    food = make_env("Household-FoodPreparation-v0")
    food.reset(seed=0)
    kitchen = make_env("Overcooked-TomatoSalad-v0")
    kitchen.reset(seed=0)
    with pytest.raises(ValueError, match="restore it into an env of the same task"):
        kitchen.unwrapped.load_state_dict(food.unwrapped.state_dict())


def test_overcooked_truncates_at_200_primitive_steps():
    env = OvercookedEnv("TomatoSalad")
    _, info = env.reset(seed=0)
    serve_nothing = info["valid_actions"].index("serve nothing")
    total, steps, truncated = 0.0, 0, False
    while not truncated:
        assert steps < 200, "never truncated"
        _, reward, terminated, truncated, info = env.step(serve_nothing)
        assert not terminated
        total += reward
        steps += info["primitive_steps"]
    # Walking to the delivery square once, then one interaction step per "serve nothing".
    assert steps == 200 and env.elapsed_primitive_steps == 200
    assert total == pytest.approx(-0.001 * 200)


def test_household_truncates_at_50_steps():
    env = HouseholdEnv("FoodPreparation")
    _, info = env.reset(seed=0)
    bedroom = info["valid_actions"].index("walk to the bedroom")
    for step in range(1, 51):
        _, reward, terminated, truncated, _ = env.step(bedroom)
        assert reward == 0.0 and not terminated
        assert truncated == (step == 50)


@pytest.mark.parametrize("bad_action", [5, -1, 99])
def test_out_of_range_action_raises_a_clear_error(bad_action):
    env = OvercookedEnv("TomatoSalad")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=rf"action {bad_action} is not a valid action index.*5 actions"):
        env.step(bad_action)


@pytest.mark.parametrize("bad_action", [1.0, True, "0", None])
def test_non_integer_action_is_refused_not_rounded(bad_action):
    env = HouseholdEnv("FoodPreparation")
    env.reset(seed=0)
    with pytest.raises(TypeError, match="must be an int index"):
        env.step(bad_action)


def test_numpy_integer_actions_are_accepted():
    env = HouseholdEnv("FoodPreparation")
    env.reset(seed=0)
    env.step(np.int64(3))  # walk to the pancake
    env.step(np.array(4))  # grab the pancake
    assert env.state.locations == ("held",)


def test_noop_mode_penalizes_an_invalid_action_and_keeps_the_state():
    env = OvercookedEnv("TomatoSalad", invalid_action="noop", invalid_action_penalty=-0.5)
    env.reset(seed=0)
    before = env.state
    _, reward, terminated, truncated, info = env.step(7)
    assert env.state == before and reward == -0.5 and info["primitive_steps"] == 1
    assert not terminated and not truncated


def test_stepping_after_the_end_or_before_reset_raises():
    env = HouseholdEnv("FoodPreparation")
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(0)
    env.reset(seed=0)
    for action in env.plan():
        env.step(action)
    with pytest.raises(RuntimeError, match="episode has ended; call reset"):
        env.step(0)
    env.reset()
    env.step(0)  # a reset starts a fresh episode


def test_unknown_ids_and_tasks_give_clear_errors():
    with pytest.raises(ValueError, match="unknown environment id 'Overcooked-Pizza-v0'.*TomatoSalad"):
        make_env("Overcooked-Pizza-v0")
    with pytest.raises(ValueError, match="unknown Overcooked task 'Pizza'"):
        OvercookedEnv("Pizza")
    with pytest.raises(ValueError, match="unknown household task 'Cooking'.*FoodPreparation"):
        HouseholdEnv("Cooking")
    with pytest.raises(ValueError, match="observation_radius=0"):
        OvercookedEnv(observation_radius=0)


def test_make_env_accepts_the_id_without_namespace():
    env = make_env("Overcooked-TomatoSalad-v0", observation_radius=2)
    assert env.unwrapped.observation_radius == 2


def test_gymnasium_vector_envs_run_the_tasks():
    envs = gymnasium.make_vec(
        "trl_embodied/Household-Entertainment-v0", num_envs=3, vectorization_mode="sync"
    )
    prompts, infos = envs.reset(seed=0)
    assert len(prompts) == 3 and all(len(actions) == 5 for actions in infos["valid_actions"])
    assert infos["action_mask"].shape == (3, 17)
    prompts, rewards, terminated, truncated, infos = envs.step(np.array([0, 3, 4]))
    assert rewards.shape == (3,) and prompts[1] != prompts[0]


def test_symbolic_observation_wrapper_feeds_mlp_baselines():
    envs = gymnasium.vector.SyncVectorEnv(
        [lambda: SymbolicObservation(make_env("Overcooked-TomatoLettuceSalad-v0")) for _ in range(2)]
    )
    observations, infos = envs.reset(seed=1)
    assert observations.shape == (2, 2 + 6 * 4) and observations.dtype == np.float32
    observations, *_ = envs.step(np.array([0, 1]))
    assert not np.array_equal(observations[0], observations[1])


def test_package_registers_on_import():
    assert trl_embodied.ENV_IDS[0] in gymnasium.registry
