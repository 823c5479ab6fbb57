"""Overcooked mechanics: rewards, state-dependent action text, partial observability, layouts."""

import pytest

from trl_embodied import OvercookedEnv

from .toy_envs import act


def test_tomato_salad_prompt_reads_like_the_paper():
    env = OvercookedEnv("TomatoSalad")
    prompt, info = env.reset(seed=0)
    assert prompt == (
        "There is a fixed cutting board in the room. You notice a tomato and an empty bowl on the table. "
        "Currently you don't have anything in hand. To serve the dish of a bowl only containing chopped "
        "tomato, you should first"
    )
    assert info["valid_actions"] == [
        "pick up the tomato",
        "pick up the bowl",
        "go to the cutting board",
        "serve nothing",
        "chop nothing",
    ]


def test_action_text_follows_the_state_and_chopping_pays_once():
    env = OvercookedEnv("TomatoSalad")
    env.reset(seed=0)
    _, _, _, _, info = act(env, "pick up the tomato")
    assert "serve the tomato" in info["valid_actions"]
    prompt, _, _, _, info = act(env, "put the tomato on the cutting board")
    assert "A tomato is on the cutting board." in prompt
    assert "chop the tomato" in info["valid_actions"]
    _, reward, _, _, info = act(env, "chop the tomato")
    assert info["primitive_steps"] == 3  # already next to the board: three chopping steps
    assert reward == pytest.approx(0.2 - 0.003)
    assert "chop nothing" in info["valid_actions"]
    _, reward, _, _, info = act(env, "chop nothing")
    assert reward == pytest.approx(-0.001) and info["primitive_steps"] == 1


def test_each_slot_says_what_it_does_with_what_is_held():
    """TWOSOME's action prompts: the pick-up slots put into the bowl when it is held, the board slot puts
    down what is held, the bowl's slot takes in a chopped ingredient; the slots stay at fixed indices."""
    env = OvercookedEnv("TomatoSalad")
    env.reset(seed=0)
    act(env, "pick up the tomato")
    act(env, "put the tomato on the cutting board")
    act(env, "chop the tomato")
    _, _, _, _, info = act(env, "pick up the tomato")
    assert info["valid_actions"] == [
        "pick up the tomato",
        "put the tomato in the bowl",
        "put the chopped tomato on the cutting board",
        "serve the chopped tomato",
        "chop nothing",
    ]
    assert info["action_ids"] == [0, 1, 2, 3, 4]
    _, _, _, _, info = act(env, "put the tomato in the bowl")  # the bowl's slot: tomato in, bowl carried
    assert env.state.places[env.bowl] == ("held",) and env.state.places[0] == ("bowl",)
    assert info["valid_actions"][:3] == [
        "put the tomato in the bowl",
        "pick up the bowl",
        "put the bowl on the cutting board",
    ]


def test_wrong_delivery_is_penalized_and_the_dish_stays_in_hand():
    env = OvercookedEnv("TomatoSalad")
    env.reset(seed=0)
    act(env, "pick up the bowl")
    _, reward, terminated, _, info = act(env, "serve the empty bowl")
    steps = info["primitive_steps"]
    assert reward == pytest.approx(-0.1 - 0.001 * steps) and not terminated and not info["success"]
    assert "serve the empty bowl" in info["valid_actions"]


def test_serving_nothing_costs_only_time():
    env = OvercookedEnv("TomatoSalad")
    env.reset(seed=0)
    _, reward, _, _, info = act(env, "serve nothing")
    assert reward == pytest.approx(-0.001 * info["primitive_steps"])


def test_onion_is_a_distractor_without_reward_and_spoils_the_dish():
    env = OvercookedEnv("TomatoLettuceSalad")
    env.reset(seed=0)
    act(env, "pick up the onion")
    act(env, "put the onion on the first cutting board")
    _, reward, _, _, info = act(env, "chop the onion")
    assert reward == pytest.approx(-0.001 * info["primitive_steps"])  # no chopping bonus
    for text in ("pick up the tomato", "put the tomato on the second cutting board", "chop the tomato"):
        act(env, text)
    for text in ("pick up the lettuce",):
        act(env, text)
    # The lettuce cannot go on a taken board: both boards are occupied, the slots say so and only walk.
    before = env.state.places
    act(env, "go to the first cutting board")
    assert env.state.places == before
    act(env, "go to the second cutting board")
    assert env.state.places == before


def test_unchopped_ingredients_do_not_go_into_the_bowl():
    env = OvercookedEnv("TomatoSalad")
    env.reset(seed=0)
    act(env, "pick up the tomato")
    before = env.state.places
    act(env, "pick up the bowl")
    assert env.state.places == before  # still carrying the raw tomato, the bowl stays on the table


def test_navigation_takes_shortest_paths():
    env = OvercookedEnv("TomatoSalad")
    env.reset(seed=0)
    # Start (3, 3); the tomato's counter is (0, 3): walk to (1, 3) = 2 steps, then pick it up.
    _, reward, _, _, info = act(env, "pick up the tomato")
    assert info["primitive_steps"] == 3 and env.state.agent == (1, 3)
    # From (1, 3) to the board at (3, 6): stand on (3, 5), 2 + 2 = 4 steps, then put it down.
    _, _, _, _, info = act(env, "put the tomato on the cutting board")
    assert info["primitive_steps"] == 5 and env.state.agent == (3, 5)


def test_partial_observability_hides_unseen_items_until_explored():
    env = OvercookedEnv("TomatoSalad", observation_radius=2)
    prompt, _ = env.reset(seed=0)
    known = prompt.split("To serve")[0]
    assert "tomato" not in known and "bowl" not in known
    prompt, *_ = act(env, "pick up the tomato")  # unseen: walks to where more counters come into view
    assert env.state.places[0] == ("table", 0, 3)  # not picked up yet
    assert "You notice a tomato" in prompt
    act(env, "pick up the tomato")
    assert env.state.places[0] == ("held",)
    # The planner still finds a successful plan under partial observability.
    env.reset(seed=0)
    for action in env.plan():
        *_, info = env.step(action)
    assert info["success"]


def test_randomized_items_differ_by_seed_and_stay_solvable():
    env = OvercookedEnv("TomatoLettuceSalad", randomize_items=True)
    layouts = set()
    for seed in range(5):
        env.reset(seed=seed)
        layouts.add(env.state.places)
        plan = env.plan()
        for action in plan:
            *_, info = env.step(action)
        assert info["success"]
    assert len(layouts) > 1
    env.reset(seed=3)
    first = env.state.places
    env.reset(seed=3)
    assert env.state.places == first
    fixed = OvercookedEnv("TomatoLettuceSalad")
    assert fixed.reset(seed=3)[0] == fixed.reset(seed=4)[0]  # the default layout ignores the seed


def test_render_ansi_draws_the_kitchen():
    env = OvercookedEnv("TomatoSalad", render_mode="ansi")
    env.reset(seed=0)
    grid = env.render().splitlines()[:7]
    assert grid[3][3] == "@" and grid[0][3] == "t" and grid[2][0] == "b" and grid[5][6] == "D"
