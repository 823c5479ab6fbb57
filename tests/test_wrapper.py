"""The generic wrapper: any gymnasium env becomes a text env from two callables."""

import json
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from trl_embodied import SymbolicObservation, TextEnvWrapper
from trl_embodied.envs.core import EpisodeNotRestored

from .toy_envs import MOVES, frozen_lake, numbered_lake, replayed_lake, slippery_lake


def test_wrapped_env_passes_check_env_and_follows_the_contract():
    env = frozen_lake()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # check_env notes that it is handed a wrapper: that is the point here.
        warnings.filterwarnings("ignore", message=".*different from the unwrapped version")
        check_env(env, skip_render_check=True)
    prompt, info = env.reset(seed=0)
    assert "row 0, column 0" in prompt and info["valid_actions"] == list(MOVES)
    assert info["symbolic_observation"].shape == (16,) and info["symbolic_observation"][0] == 1.0


def test_success_comes_from_the_callable():
    env = frozen_lake()
    env.reset(seed=0)
    path = ["move right", "move right", "move down", "move down", "move down", "move right"]
    for move in path:
        _, reward, terminated, truncated, info = env.step(list(MOVES).index(move))
    assert terminated and reward == 1.0 and info["success"]
    with pytest.raises(RuntimeError, match="episode has ended"):
        env.step(0)


def test_invalid_actions_raise_or_noop():
    env = frozen_lake()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action 4 is not a valid action index"):
        env.step(4)
    env = frozen_lake(invalid_action="noop", invalid_action_penalty=-1.0)
    prompt, _ = env.reset(seed=0)
    same, reward, terminated, truncated, _ = env.step(9)
    assert same == prompt and reward == -1.0 and not (terminated or truncated)


@pytest.mark.parametrize(
    ("actions", "error", "message"),
    [
        ({}, ValueError, "list of valid actions is empty"),
        ({"": 0}, TypeError, "must be a non-empty str"),
        ({f"a{i}": i for i in range(5)}, ValueError, "5 valid actions but the action space holds 4"),
    ],
)
def test_bad_action_lists_are_refused(actions, error, message):
    env = TextEnvWrapper(
        gymnasium.make("FrozenLake-v1"), lambda o, i: "x", lambda o, i: actions, max_actions=4
    )
    with pytest.raises(error, match=message):
        env.reset(seed=0)


def test_duplicated_actions_are_refused():
    from trl_embodied.envs.core import check_valid_actions

    with pytest.raises(ValueError, match=r"duplicated valid actions \['go'\]"):
        check_valid_actions(["go", "stop", "go"], 8, "test")


def test_symbolic_observation_of_a_wrapped_env():
    env = SymbolicObservation(frozen_lake())
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs) and np.argmax(obs) == 0


def test_a_replayed_episode_continues_where_it_was_saved():
    """The slippery lake draws every move's outcome from the env's generator: after an unseeded reset, only
    the generator's state at that reset makes the replay walk the same path."""
    env = slippery_lake()
    env.reset(seed=3)
    env.reset()  # unseeded: from the generator as the seeded episode left it
    for action in [2, 1, 2]:
        env.step(action)
    saved = json.loads(json.dumps(env.state_dict()))  # plain data, as a checkpoint holds it
    assert saved["reset"]["seed"] is None and saved["actions"] == [2, 1, 2]

    restored = slippery_lake()
    restored.reset(seed=99)  # another episode, to be replaced
    restored.load_state_dict(saved)
    ended = False
    for action in [1, 1, 2, 2, 1, 2]:  # the same outcomes from here on, randomness included
        if not ended:
            expected, actual = env.step(action)[:4], restored.step(action)[:4]
            assert actual == expected
            ended = expected[2] or expected[3]


def test_an_episode_that_a_replay_cannot_reach_is_refused():
    env = numbered_lake()
    with pytest.raises(RuntimeError, match=r"state_dict\(\) before reset\(\)"):
        env.state_dict()
    env.reset(seed=0)
    env.step(2)
    with pytest.raises(EpisodeNotRestored, match="replaying the episode's 1 actions .* not deterministic"):
        numbered_lake().load_state_dict(env.state_dict())


def test_a_replay_that_meets_an_action_not_offered_is_refused():
    instances = []

    def lake():  # the first lake offers every move, any later one only "move left"
        instances.append(None)
        moves = MOVES if len(instances) == 1 else {"move left": 0}
        return replayed_lake(lambda obs, info: f"You are on tile {obs}. You", moves)

    env = lake()
    env.reset(seed=0)
    env.step(MOVES["move right"])
    with pytest.raises(EpisodeNotRestored, match="not deterministic.*action 2 is not a valid action index"):
        lake().load_state_dict(env.state_dict())
