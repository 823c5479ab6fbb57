"""BabyAI levels as text environments (needs minigrid, the textenvs extra)."""

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("minigrid")

from trl_embodied import make_env  # noqa: E402
from trl_embodied.envs.babyai import ACTIONS, describe_view, relative_position  # noqa: E402

WALL, BALL, KEY, DOOR, EMPTY = 2, 6, 5, 4, 1  # minigrid's object indices
RED, GREEN, BLUE, GREY = 0, 1, 2, 5


def view(**cells) -> np.ndarray:
    """An empty 7x7 view with ``name=(column, row, object, color, state)`` cells set."""
    image = np.zeros((7, 7, 3), dtype=np.uint8)
    image[:, :, 0] = EMPTY
    for column, row, kind, color, state in cells.values():
        image[column, row] = (kind, color, state)
    return image


def test_positions_are_relative_to_the_agent_at_the_bottom_center_facing_up():
    assert relative_position(3, 4) == "2 steps forward"
    assert relative_position(2, 6) == "1 step left"
    assert relative_position(5, 3) == "3 steps forward and 2 steps right"


def test_the_view_in_words_nearest_first_walls_hidden_behind_objects_and_what_is_carried():
    image = view(
        ball=(4, 5, BALL, RED, 0),
        key=(3, 2, KEY, GREEN, 0),
        door=(0, 4, DOOR, BLUE, 2),
        wall_ahead=(3, 0, WALL, GREY, 0),
        wall_left=(1, 6, WALL, GREY, 0),
        wall_right=(6, 6, WALL, GREY, 0),
    )
    prompt = describe_view(image, SimpleNamespace(color="purple", type="box"), "go to the red ball")
    assert prompt == (
        "You see a red ball 1 step forward and 1 step right. You see a green key 4 steps forward. "
        "You see a locked blue door 2 steps forward and 3 steps left. "
        "You see a wall 2 steps left. You see a wall 3 steps right. "  # the key hides the wall ahead
        "You carry a purple box. To go to the red ball, you should"
    )


def test_a_level_plays_through_the_text_contract_and_succeeds():
    env = make_env("trl_embodied/BabyAI-GoToLocal-v0")
    prompt, info = env.reset(seed=0)
    assert prompt.endswith("You carry nothing. To go to the green ball, you should")
    assert "You see a green ball 3 steps forward." in prompt
    assert info["valid_actions"] == list(ACTIONS) and info["action_ids"] == list(range(6))
    symbolic = info["symbolic_observation"]
    assert symbolic.shape == (7 * 7 * 3 + 4,) and symbolic.min() >= 0.0 and symbolic.max() <= 1.0
    for _ in range(2):  # the green ball is 3 steps ahead: two steps forward reach the cell in front of it
        prompt, reward, terminated, truncated, info = env.step(ACTIONS.index("go forward"))
    assert terminated and info["success"] and 0.0 < reward <= 1.0


def test_a_saved_episode_is_replayed_in_a_new_env():
    """minigrid cannot export its grid; the level's episode is restored by replaying it (EpisodeReplay):
    the layout of an unseeded reset and the agent's place after its moves."""
    env = make_env("trl_embodied/BabyAI-GoToLocal-v0")
    env.reset(seed=0)
    env.reset()  # unseeded: a layout drawn from the generator's state
    for action in ("turn left", "go forward", "turn right"):
        prompt, *_ = env.step(ACTIONS.index(action))
    restored = make_env("trl_embodied/BabyAI-GoToLocal-v0")
    restored.reset(seed=7)
    restored.get_wrapper_attr("load_state_dict")(env.get_wrapper_attr("state_dict")())
    forward = ACTIONS.index("go forward")
    assert restored.step(forward)[:4] == env.step(forward)[:4]


def test_any_level_by_name_and_an_unknown_one_named():
    prompt, _ = make_env("trl_embodied/BabyAI-v0", level="GoToObj").reset(seed=1)
    assert prompt.startswith("You see") and prompt.endswith("you should")
    with pytest.raises(ValueError, match="unknown BabyAI level 'GoToMars'; minigrid has .*GoToLocal"):
        make_env("trl_embodied/BabyAI-v0", level="GoToMars")


def test_the_trainer_and_the_mlp_baseline_run_on_babyai(tmp_path, tokenizer):
    from trl_embodied.baselines import MLPPPOConfig, train_mlp_ppo

    from .test_trainer import make_trainer

    trainer = make_trainer(tmp_path, tokenizer, env="trl_embodied/BabyAI-GoToRedBall-v0", max_steps=1)
    trainer.train()
    assert trainer._env_steps == 16
    _, history = train_mlp_ppo(
        MLPPPOConfig(
            env_id="trl_embodied/BabyAI-GoToRedBall-v0", total_env_steps=256, eval_every=256, eval_episodes=2
        ),
        progress=False,
    )
    assert history[-1]["env_steps"] >= 256 and "eval_success_rate" in history[-1]


def test_level_generation_retries_are_not_printed(capsys):
    import gymnasium

    seeds = range(20)
    raw = gymnasium.make("BabyAI-GoToLocal-v0")
    for seed in seeds:
        raw.reset(seed=seed)
    assert "Sampling rejected" in capsys.readouterr().out  # minigrid itself prints its retries
    env = make_env("trl_embodied/BabyAI-GoToLocal-v0")
    for seed in seeds:
        prompt, info = env.reset(seed=seed)
        assert prompt and len(info["valid_actions"]) == len(ACTIONS)
    assert capsys.readouterr().out == ""
