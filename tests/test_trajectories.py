"""Trajectories as datasets: schema, return-to-go, round trips, and the policies that produce them."""

import datasets
import pytest
import torch

from trl_embodied import ActionScorer, collect_trajectories, to_prompt_completion
from trl_embodied.trajectories import TRAJECTORY_FEATURES, episode_rows

from .toy_envs import TwoChoiceEnv

TOMATO_SALAD = "trl_embodied/Overcooked-TomatoSalad-v0"


def test_planner_demonstrations_are_optimal_episodes():
    data = collect_trajectories("planner", TOMATO_SALAD, episodes=2, seed=5, progress=False)
    assert data.features == TRAJECTORY_FEATURES
    assert sorted(set(data["episode"])) == [5, 6] and set(data["env"]) == {TOMATO_SALAD}
    for episode in (5, 6):
        rows = data.filter(lambda row, e=episode: row["episode"] == e)
        assert rows["step"] == list(range(len(rows)))
        assert rows["done"] == [False] * (len(rows) - 1) + [True]
        assert all(rows["success"])
        assert all(
            probs[action] == 1.0 for probs, action in zip(rows["action_probs"], rows["action"], strict=True)
        )
        assert all(
            text == valid[action]
            for text, valid, action in zip(
                rows["action_text"], rows["valid_actions"], rows["action"], strict=True
            )
        )
        # undiscounted: the first row's return-to-go is the episode's return
        assert rows["return_to_go"][0] == pytest.approx(sum(rows["reward"]), abs=1e-5)


def test_return_to_go_is_discounted_per_step():
    steps = [
        {"prompt": "p", "valid_actions": ["a", "b"], "action": 0, "action_probs": [1, 0], "reward": r}
        for r in (1.0, 0.0, 2.0)
    ]
    rows = episode_rows(steps, env="toy", episode=0, seed=None, success=True, gamma=0.5)
    assert [row["return_to_go"] for row in rows] == [1.0 + 0.25 * 2.0, 0.5 * 2.0, 2.0]


def test_zero_shot_trajectories_round_trip_through_disk(tokenizer, llama, tmp_path):
    scorer = ActionScorer(llama, tokenizer, "word")
    data = collect_trajectories(
        scorer, TwoChoiceEnv, episodes=4, generator=torch.Generator().manual_seed(0), progress=False
    )
    assert len(data) == 4 and all(data["done"])
    for probs in data["action_probs"]:
        assert len(probs) == 2 and sum(probs) == pytest.approx(1.0, abs=1e-5) and 0 < probs[0] < 1
    assert data["success"] == [action == 0 for action in data["action"]]
    data.save_to_disk(tmp_path / "trajectories")
    loaded = datasets.load_from_disk(tmp_path / "trajectories")
    assert loaded.features == TRAJECTORY_FEATURES and loaded.to_list() == data.to_list()


def test_prompt_completion_pairs_for_sft():
    data = collect_trajectories("planner", TOMATO_SALAD, episodes=1, progress=False)
    pairs = to_prompt_completion(data)
    assert pairs.column_names == ["prompt", "completion"] and len(pairs) == len(data)
    assert pairs[0]["completion"] == " " + data[0]["action_text"]
    failed = data.map(lambda row: {"success": False})
    with pytest.raises(ValueError, match="successful_only=False"):
        to_prompt_completion(failed)
    assert len(to_prompt_completion(failed, successful_only=False)) == len(data)
