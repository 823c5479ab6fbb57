"""The TextWorld adapter on games generated in the test session (extra ``textenvs``)."""

import pytest

textworld = pytest.importorskip(
    "textworld", reason='TextWorld is not installed: pip install "trl-embodied[textenvs]" (make test does).'
)

from trl_embodied import EmbodiedActorCritic, EmbodiedPPOTrainer, evaluate_policy, make_env  # noqa: E402
from trl_embodied.envs.core import prompt_space  # noqa: E402
from trl_embodied.envs.textworld import PROMPT_END, make_cooking_game, make_textworld_env  # noqa: E402

from .conftest import build_llama  # noqa: E402
from .test_trainer import config  # noqa: E402


@pytest.fixture(scope="module")
def game(tmp_path_factory):
    """A one-room cooking game: read the cookbook, fetch one ingredient, prepare and eat the meal."""
    return make_cooking_game(tmp_path_factory.mktemp("games") / "cooking", seed=3)


def test_the_contract(game):
    env = make_env("trl_embodied/TextWorld-v0", game_file=str(game))
    prompt, info = env.reset(seed=0)
    assert prompt_space().contains(prompt) and prompt.endswith(PROMPT_END)
    assert "cook" in prompt.lower() and "You are carrying" in prompt  # objective, description, inventory
    assert info["valid_actions"] == info["admissible_commands"] and len(info["valid_actions"]) > 3
    assert (
        info["action_mask"][: len(info["valid_actions"])].all()
        and not info["action_mask"][len(info["valid_actions"]) :].any()
    )
    assert info["success"] is False and "symbolic_observation" not in info


def test_the_walkthrough_reaches_success(game):
    env = make_textworld_env(game)
    _, info = env.reset()
    total, terminated = 0.0, False
    for command in info["walkthrough"]:
        assert not terminated
        _, reward, terminated, truncated, info = env.step(info["valid_actions"].index(command))
        total += reward
        assert not truncated
    assert terminated and info["success"] and total == info["max_score"] > 0


def test_a_saved_game_is_replayed_in_a_new_env(game):
    env = make_textworld_env(game)
    _, info = env.reset()
    walkthrough = info["walkthrough"]
    for command in walkthrough[:2]:
        _, _, _, _, info = env.step(info["valid_actions"].index(command))
    restored = make_textworld_env(game)
    restored.reset()
    restored.load_state_dict(env.state_dict())  # the interpreter's state comes back by replaying 2 commands
    following = info["valid_actions"].index(walkthrough[2])
    assert restored.step(following)[:4] == env.step(following)[:4]


def test_a_bad_command_is_rejected_or_a_penalized_noop(game):
    env = make_textworld_env(game)
    _, info = env.reset()
    with pytest.raises(ValueError, match="is not a valid action index"):
        env.step(len(info["valid_actions"]))
    noop = make_textworld_env(game, invalid_action="noop")
    prompt, info = noop.reset()
    again, reward, terminated, truncated, after = noop.step(999)
    assert (again, after["valid_actions"], terminated, truncated) == (
        prompt,
        info["valid_actions"],
        False,
        False,
    )
    assert reward < 0


def test_truncation_and_command_filter(game, tmp_path):
    env = make_textworld_env(game, max_steps=2, command_filter=lambda c: not c.startswith("examine"))
    _, info = env.reset()
    assert not any(a.startswith("examine") for a in info["valid_actions"])
    look = info["valid_actions"].index("look")
    assert env.step(look)[3] is False and env.step(look)[3] is True
    with pytest.raises(FileNotFoundError, match="make_cooking_game"):
        make_textworld_env(tmp_path / "missing.z8")


def test_policies_and_the_trainer_play_it(game, tmp_path, tokenizer):
    def walkthrough_policy(prompts, actions):  # plays the generator's solution, one command at a time
        import torch

        probs = torch.zeros(len(prompts), max(map(len, actions)))
        for row, valid in enumerate(actions):
            probs[row, valid.index(solution[len(played)])] = 1.0
            played.append(None)
        return probs

    solution, played = make_textworld_env(game).reset()[1]["walkthrough"], []
    env_kwargs = {"game_file": str(game)}
    result = evaluate_policy(
        walkthrough_policy, lambda: make_env("TextWorld-v0", **env_kwargs), episodes=1, progress=False
    )
    assert result.success_rate == 1.0 and result.mean_length == len(solution)

    model = EmbodiedActorCritic(
        build_llama(len(tokenizer), max_positions=4096), tokenizer, value_head_sizes=[16]
    )
    args = config(
        tmp_path,
        env_id="trl_embodied/TextWorld-v0",
        env_kwargs={"game_file": str(game), "max_steps": 8},
        num_envs=2,
        rollout_steps=4,
    )
    trainer = EmbodiedPPOTrainer(model=model, args=args)
    trainer.train()
    assert trainer._env_steps == 16 and trainer.state.global_step == 2  # 2 rollouts of 2 envs x 4 steps
