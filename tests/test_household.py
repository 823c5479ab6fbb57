"""Household mechanics: the action grammar, preconditions, goals and prompts."""

import pytest

from trl_embodied import HouseholdEnv
from trl_embodied.envs.household import TASKS, TRAINING_TASKS, UNSEEN_TASKS

from .toy_envs import act


def test_food_preparation_actions_and_prompt():
    env = HouseholdEnv("FoodPreparation")
    prompt, info = env.reset(seed=0)
    assert prompt == (
        "There are four rooms: the kitchen, bathroom, bedroom, and living room. You are in the kitchen. "
        "You notice the pancake and the microwave. The microwave is closed. In order to heat up the "
        "pancake in the microwave, your next step is to"
    )
    assert sorted(info["valid_actions"]) == sorted(
        [
            "walk to the kitchen",
            "walk to the bathroom",
            "walk to the bedroom",
            "walk to the living room",
            "walk to the pancake",
            "walk to the microwave",
            "grab the pancake",
            "open the microwave",
            "close the microwave",
            "put the pancake in the microwave",
        ]
    )


def test_failed_preconditions_do_nothing_but_cost_a_step():
    env = HouseholdEnv("FoodPreparation")
    env.reset(seed=0)
    start = env.state
    for text in ("grab the pancake", "open the microwave", "put the pancake in the microwave"):
        _, reward, terminated, _, info = act(env, text)  # not close to anything, nothing held
        assert env.state == start and reward == 0.0 and not terminated and info["primitive_steps"] == 1
    act(env, "walk to the pancake")
    act(env, "grab the pancake")
    act(env, "walk to the microwave")
    before = env.state
    act(env, "put the pancake in the microwave")  # the microwave is closed
    assert env.state == before


def test_the_goal_needs_every_predicate():
    env = HouseholdEnv("FoodPreparation")
    env.reset(seed=0)
    for text in ("walk to the pancake", "grab the pancake", "walk to the microwave", "open the microwave"):
        act(env, text)
    _, reward, terminated, _, info = act(env, "put the pancake in the microwave")
    assert reward == 0.0 and not terminated  # still open
    _, reward, terminated, _, info = act(env, "close the microwave")
    assert reward == 1.0 and terminated and info["success"]


def test_items_in_closed_containers_are_hidden():
    env = HouseholdEnv("HeatCheese")
    env.reset(seed=0)
    before = env.state
    act(env, "walk to the cheese")
    assert env.state == before
    act(env, "walk to the fridge")
    prompt, *_ = act(env, "grab the cheese")
    assert "cheese" not in prompt.split("In order")[0]
    assert env.state.locations == ("in:fridge",)
    prompt, *_ = act(env, "open the fridge")
    assert "The cheese is in the fridge." in prompt
    prompt, *_ = act(env, "grab the cheese")
    assert env.state.locations == ("held",) and "You are holding the cheese." in prompt


def test_sitting_blocks_walking_until_standing_up():
    env = HouseholdEnv("Entertainment")
    env.reset(seed=0)
    act(env, "walk to the sofa")
    prompt, *_ = act(env, "sit on the sofa")
    assert "You are sitting on the sofa." in prompt and "You are in the living room." in prompt
    before = env.state
    act(env, "walk to the kitchen")
    assert env.state == before
    act(env, "stand up from the sofa")
    act(env, "walk to the kitchen")
    assert env.state.room == "kitchen"


def test_hands_hold_two_objects():
    env = HouseholdEnv("Entertainment")
    env.reset(seed=0)
    for text in ("walk to the chips", "grab the chips", "walk to the milk", "grab the milk"):
        act(env, text)
    prompt, *_ = act(env, "walk to the TV")
    assert "You are holding the chips and the milk." in prompt
    assert "The TV is off." in prompt


def test_unseen_tasks_are_distinct_from_training_tasks():
    assert set(TRAINING_TASKS) == {"FoodPreparation", "Entertainment"}
    assert len(UNSEEN_TASKS) >= 4
    training_items = {item for name in TRAINING_TASKS for item in TASKS[name].items}
    for name in UNSEEN_TASKS:
        assert not set(TASKS[name].items) & training_items, name


def test_a_malformed_task_is_refused():
    from trl_embodied.envs.household import HouseholdTask

    bad = HouseholdTask("Bad", "do it", items={"pizza": "oven"}, furniture=("oven",), goal_predicates=())
    with pytest.raises(ValueError, match="unknown furniture 'oven'"):
        HouseholdEnv._check_task(bad)
