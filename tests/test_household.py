"""Household mechanics: the action vocabulary, applicable actions, goals, prompts and tasks as data."""

from dataclasses import replace

import gymnasium
import numpy as np
import pytest

from trl_embodied import HouseholdEnv, HouseholdTask, make_env, register_household_task
from trl_embodied.baselines.ppo_mlp import MLPActorCritic
from trl_embodied.envs.household import TASKS, TRAINING_TASKS, UNSEEN_TASKS
from trl_embodied.evaluation import action_probabilities

from .toy_envs import act

FOOD_PREPARATION_VOCABULARY = [
    "walk to the kitchen",
    "walk to the bathroom",
    "walk to the bedroom",
    "walk to the living room",
    "walk to the pancake",
    "walk to the microwave",
    "grab the pancake",
    "put the pancake in the microwave",
    "open the microwave",
    "close the microwave",
]


def test_food_preparation_offers_only_applicable_actions_and_says_why():
    env = HouseholdEnv("FoodPreparation")
    prompt, info = env.reset(seed=0)
    assert env.action_texts == FOOD_PREPARATION_VOCABULARY
    assert prompt == (
        "There are four rooms: the kitchen, bathroom, bedroom, and living room. You are in the kitchen. "
        "You notice the pancake and the microwave. The microwave is closed. Nothing you could grab is within "
        "your immediate reach. You are not holding anything. In order to heat up the pancake in the "
        "microwave, your next step is to"
    )
    # Never the room you are in, nothing out of reach, nothing to open from across the room.
    assert info["valid_actions"] == [
        "walk to the bathroom",
        "walk to the bedroom",
        "walk to the living room",
        "walk to the pancake",
        "walk to the microwave",
    ]
    assert info["action_ids"] == [1, 2, 3, 4, 5]
    prompt, *_, info = act(env, "walk to the pancake")
    assert "You are close to the pancake. The pancake is within your immediate reach." in prompt
    assert "grab the pancake" in info["valid_actions"] and "walk to the pancake" not in info["valid_actions"]
    prompt, *_, info = act(env, "grab the pancake")
    assert "You are holding the pancake." in prompt and "grab the pancake" not in info["valid_actions"]
    prompt, *_, info = act(env, "walk to the microwave")
    # Closed: no putting in yet; open is offered, close is not.
    assert {"open the microwave"} <= set(info["valid_actions"])
    assert not {"close the microwave", "put the pancake in the microwave"} & set(info["valid_actions"])
    prompt, *_, info = act(env, "open the microwave")
    assert "The microwave is open." in prompt and "put the pancake in the microwave" in info["valid_actions"]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_no_offered_action_is_a_no_op_over_random_walks(name):
    env = HouseholdEnv(name)
    rng = np.random.default_rng(0)
    offered = []
    for episode in range(30):
        _, info = env.reset(seed=episode)
        done = False
        while not done:
            offered.append(len(info["valid_actions"]))
            before = env.state
            _, _, terminated, truncated, info = env.step(int(rng.integers(len(info["valid_actions"]))))
            assert env.state != before, f"{name}: an offered action changed nothing in {before}"
            done = terminated or truncated
    # The paper's scheme: a handful of actions a state, not the whole vocabulary.
    assert min(offered) >= 1 and max(offered) < env.action_space.n and np.mean(offered) <= 5


def test_all_actions_variant_offers_the_vocabulary_with_no_ops():
    env = HouseholdEnv("FoodPreparation", valid_actions="all")
    _, info = env.reset(seed=0)
    assert info["valid_actions"] == FOOD_PREPARATION_VOCABULARY and info["action_mask"].all()
    start = env.state
    for text in (
        "walk to the kitchen",
        "grab the pancake",
        "open the microwave",
        "put the pancake in the microwave",
    ):
        _, reward, terminated, _, info = act(env, text)
        assert env.state == start and reward == 0.0 and not terminated and info["primitive_steps"] == 1
    env.reset(seed=0)
    assert len(env.plan()) == 6  # the same world: the same optimum


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
    _, info = env.reset(seed=0)
    prompt, *_, info = act(env, "walk to the kitchen")
    assert "walk to the cheese" not in info["valid_actions"] and "cheese" not in prompt.split("In order")[0]
    prompt, *_, info = act(env, "walk to the fridge")
    assert "grab the cheese" not in info["valid_actions"]
    prompt, *_, info = act(env, "open the fridge")
    assert "The cheese is in the fridge." in prompt and "The cheese is within your immediate reach." in prompt
    prompt, *_ = act(env, "grab the cheese")
    assert env.state.locations == ("held",) and "You are holding the cheese." in prompt


def test_sitting_offers_only_standing_up():
    env = HouseholdEnv("Entertainment")
    env.reset(seed=0)
    act(env, "walk to the living room")
    act(env, "walk to the sofa")
    prompt, *_, info = act(env, "sit on the sofa")
    assert "You are sitting on the sofa." in prompt and "You are in the living room." in prompt
    assert info["valid_actions"] == ["stand up from the sofa"]
    _, *_, info = act(env, "stand up from the sofa")
    assert "walk to the kitchen" in info["valid_actions"]


def test_loose_objects_lie_together_and_hands_hold_two():
    env = HouseholdEnv("Entertainment")
    env.reset(seed=0)
    prompt, *_, info = act(env, "walk to the chips")
    assert "The chips and the milk are within your immediate reach." in prompt
    assert {"grab the chips", "grab the milk"} <= set(info["valid_actions"])
    assert "walk to the milk" not in info["valid_actions"]  # it is within reach already
    act(env, "grab the chips")
    prompt, *_, info = act(env, "grab the milk")
    assert "You are holding the chips and the milk." in prompt
    _, *_, info = act(env, "walk to the living room")
    assert "put the chips on the coffee table" not in info["valid_actions"]  # not next to it yet
    prompt, *_, info = act(env, "walk to the TV")
    assert "The TV is off." in prompt and "switch on the TV" in info["valid_actions"]
    assert "switch off the TV" not in info["valid_actions"]


def test_unseen_tasks_are_distinct_from_training_tasks():
    assert set(TRAINING_TASKS) == {"FoodPreparation", "Entertainment"}
    assert len(UNSEEN_TASKS) >= 4
    training_items = {item for name in TRAINING_TASKS for item in TASKS[name].items}
    for name in UNSEEN_TASKS:
        assert not set(TASKS[name].items) & training_items, name


MAKE_TEA = HouseholdTask(
    name="MakeTea",
    goal="put the mug on the kitchen table and switch on the faucet",
    items={"mug": "bedroom"},
    furniture=("kitchen table", "faucet"),
    goal_predicates=(("on", "mug", "kitchen table"), ("switched_on", "faucet")),
    start_room="living room",
)


def test_a_task_of_ones_own_plays_and_the_planner_solves_it_optimally():
    env = HouseholdEnv(task=MAKE_TEA)
    prompt, info = env.reset(seed=0)
    assert prompt.endswith(
        "In order to put the mug on the kitchen table and switch on the faucet, your next step is to"
    )
    assert env.action_space.n == len(env.action_texts) == 4 + 3 + 1 + 1 + 2
    plan = env.plan()
    # bedroom, mug, grab, kitchen, kitchen table, put, faucet, switch on: no shorter plan exists.
    assert len(plan) == 8
    texts = []
    for action in plan:
        texts.append(info["valid_actions"][action])
        _, reward, terminated, _, info = env.step(action)
    assert terminated and reward == 1.0 and info["success"]
    assert texts[:3] == ["walk to the bedroom", "walk to the mug", "grab the mug"]


def test_puts_lead_where_the_goal_wants_things_unless_the_task_names_more():
    """The paper's vocabularies carry a put only toward the goal: the apple pie grabbed from the kitchen
    table cannot go back on it, so a greedy policy cannot cycle between grabbing and putting it back."""
    env = HouseholdEnv("StoreApplePie")
    env.reset(seed=0)
    assert [text for text in env.action_texts if text.startswith("put")] == [
        "put the apple pie in the fridge"
    ]
    act(env, "walk to the apple pie")
    _, *_, info = act(env, "grab the apple pie")
    assert env.state.close_to == "kitchen table" and not any(
        a.startswith("put") for a in info["valid_actions"]
    )
    env.reset(seed=0)
    assert len(env.plan()) == 6
    wider = HouseholdEnv(
        task=replace(
            TASKS["StoreApplePie"],
            puts=[["apple pie", "kitchen table"], ["apple pie", "fridge"]],  # lists as from a config file
        )
    )
    wider.reset(seed=0)
    act(wider, "walk to the apple pie")
    _, *_, info = act(wider, "grab the apple pie")
    assert "put the apple pie on the kitchen table" in info["valid_actions"]
    assert wider.action_space.n == env.action_space.n + 1


def test_a_task_of_ones_own_registers_under_its_own_id():
    env_id = register_household_task(MAKE_TEA)
    assert env_id == "trl_embodied/Household-MakeTea-v0"
    assert register_household_task(MAKE_TEA) == env_id  # idempotent
    assert make_env("Household-MakeTea-v0").unwrapped.task == MAKE_TEA
    vector = gymnasium.make_vec(env_id, num_envs=2, vectorization_mode="sync")
    _, infos = vector.reset(seed=0)
    assert len(infos["valid_actions"]) == 2
    with pytest.raises(ValueError, match="is taken"):
        register_household_task(TASKS["FoodPreparation"], env_id=env_id)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(furniture=("oven",), items={"pizza": "oven"}), "unknown furniture 'oven'"),
        (dict(items={"mug": "garage"}), "starts at 'garage'"),
        (dict(items={"mug": "faucet"}), "holds nothing"),
        (dict(start_room="attic"), "start_room='attic'"),
        (dict(goal_predicates=()), "goal_predicates is empty"),
        (dict(goal_predicates=(("on", "mug"),)), "goal predicate"),
        (dict(goal_predicates=(("on", "spoon", "kitchen table"),)), "names 'spoon'"),
        (dict(initially_open=frozenset({"faucet"})), "no openable furniture"),
        (dict(puts=(("mug", "faucet"),)), "puts names \\('mug', 'faucet'\\)"),
        (dict(puts=(("spoon", "kitchen table"),)), "puts names"),
        (dict(goal_predicates=(("on", "mug", "faucet"),)), "a container or surface"),
    ],
)
def test_a_malformed_task_is_refused_with_the_fix(change, message):
    with pytest.raises(ValueError, match=message):
        HouseholdEnv(task=replace(MAKE_TEA, **change))


def test_bad_constructor_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown household task 'Cooking'.*HouseholdTask"):
        HouseholdEnv("Cooking")
    with pytest.raises(ValueError, match="valid_actions='some'"):
        HouseholdEnv("FoodPreparation", valid_actions="some")
    with pytest.raises(TypeError, match="HouseholdTask"):
        HouseholdEnv(task=42)


def test_vocabulary_policies_act_by_action_id():
    """An MLP over the vocabulary: output unit v always means vocabulary action v, whatever the state
    offers, and evaluation maps it onto the valid list through info["action_ids"]."""
    env = HouseholdEnv("FoodPreparation")
    _, info = env.reset(seed=0)
    act(env, "walk to the pancake")
    _, *_, info = act(env, "grab the pancake")
    model = MLPActorCritic(env.symbolic_observation_space.shape[0], env.action_space.n)
    probs = action_probabilities(model, ["p"], [info["valid_actions"]], [info])
    vocabulary_probs = model.symbolic_probabilities(
        info["symbolic_observation"][None], info["action_mask"][None]
    )
    for j, vocabulary_id in enumerate(info["action_ids"]):
        assert env.action_texts[vocabulary_id] == info["valid_actions"][j]
        assert probs[0, j] == pytest.approx(float(vocabulary_probs[0, vocabulary_id]))
    assert float(probs.sum()) == pytest.approx(1.0)


def test_info_action_ids_are_the_callers_to_keep():
    env = HouseholdEnv("FoodPreparation")
    _, info = env.reset(seed=0)
    info["action_ids"].clear()  # the env caches each state's ids; a caller's edit must not reach them
    assert env.reset(seed=0)[1]["action_ids"] == [1, 2, 3, 4, 5]
