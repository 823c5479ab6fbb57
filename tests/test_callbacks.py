"""The transformers callbacks a TRL user relies on, and LogEpisodesCallback, on a tiny model."""

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import EarlyStoppingCallback

from trl_embodied import LogEpisodesCallback, StopAtSuccessCallback

from .test_trainer import make_trainer
from .toy_envs import TwoChoiceEnv


def test_early_stopping_on_eval_success_rate(tmp_path, tokenizer):
    trainer = make_trainer(
        tmp_path,
        tokenizer,
        max_steps=40,
        eval_strategy="steps",
        eval_steps=2,
        eval_episodes=2,
        metric_for_best_model="eval_success_rate",
        greater_is_better=True,
        learning_rate=0.0,  # a policy that cannot improve: the callback must end the run
        critic_learning_rate=0.0,
    )
    trainer.add_callback(EarlyStoppingCallback(early_stopping_patience=2))
    trainer.train()
    evaluations = [row for row in trainer.state.log_history if "eval_success_rate" in row]
    assert trainer.state.global_step == 6 and len(evaluations) == 3  # best at 2, no gain at 4 and 6


@pytest.mark.parametrize(("bar", "steps"), [(0.0, 2), (None, 6)])
def test_stop_at_success_ends_training_at_the_first_evaluation_that_meets_the_bar(
    tmp_path, tokenizer, bar, steps
):
    trainer = make_trainer(
        tmp_path, tokenizer, max_steps=6, eval_strategy="steps", eval_steps=2, eval_episodes=2
    )
    if bar is not None:  # any success rate meets 0.0: the first evaluation ends the run
        trainer.add_callback(StopAtSuccessCallback(bar))
    trainer.train()
    assert trainer.state.global_step == steps


def test_stop_at_success_refuses_a_bar_outside_0_1():
    with pytest.raises(ValueError, match="success_rate=1.5; a success rate lies in"):
        StopAtSuccessCallback(1.5)


def test_tensorboard_writes_the_ppo_metrics_and_episode_tables(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, max_steps=4, report_to=["tensorboard"])
    trainer.add_callback(LogEpisodesCallback(trainer, num_episodes=1, freq=2))
    trainer.train()
    event_files = list((tmp_path / "run").rglob("events.out.tfevents.*"))
    assert len(event_files) == 1
    events = EventAccumulator(str(event_files[0].parent), size_guidance={"scalars": 0, "tensors": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in ("train/loss/policy", "train/episode/success_rate", "train/value/explained_variance"):
        assert tag in scalars, tag
    assert [e.step for e in events.Scalars("train/loss/policy")] == [1, 2, 3, 4]
    texts = events.Tensors("episodes/text_summary")
    assert [t.step for t in texts] == [2, 4]
    table = texts[0].tensor_proto.string_val[0].decode()
    assert table.startswith("| step | episode | t | observation | action |") and "the game |" in table


def test_log_episodes_callback_plays_every_evaluation_task(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, max_steps=1)
    trainer.eval_envs = {"first": TwoChoiceEnv, "second": TwoChoiceEnv}
    callback = LogEpisodesCallback(trainer, num_episodes=2, freq=1)
    trainer.add_callback(callback)
    trainer.train()
    assert [row[1] for row in callback.table] == ["first", "first", "second", "second"]
    table = (tmp_path / "run" / "episodes" / "step-1.md").read_text().splitlines()
    assert table[0] == "| step | task | episode | t | observation | action | probability | reward |"
    trainer.eval_envs = {"only": TwoChoiceEnv}  # one task, named: its rows name it too
    assert LogEpisodesCallback(trainer, num_episodes=1, freq=1).columns[1] == "task"


def test_log_episodes_callback_writes_tables(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, max_steps=2)
    callback = LogEpisodesCallback(trainer, num_episodes=3, freq=1)
    trainer.add_callback(callback)
    trainer.train()
    assert sorted(p.name for p in (tmp_path / "run" / "episodes").iterdir()) == ["step-1.md", "step-2.md"]
    assert [row[0] for row in callback.table] == [1, 1, 1, 2, 2, 2]  # one-step episodes, 3 per log
    for _, _, t, observation, action, probability, reward in callback.table:
        assert t == 0 and observation == TwoChoiceEnv().reset()[0]
        assert action in TwoChoiceEnv.ACTIONS and 0.0 < probability < 1.0
        assert reward == (1.0 if action == "win the game" else 0.0)
    table = (tmp_path / "run" / "episodes" / "step-2.md").read_text().splitlines()
    assert (
        table[0] == "| step | episode | t | observation | action | probability | reward |" and len(table) == 5
    )


def test_log_episodes_callback_needs_a_frequency(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer)
    with pytest.raises(ValueError, match="freq=N, or eval_steps"):
        LogEpisodesCallback(trainer)
    with pytest.raises(ValueError, match="num_episodes=0"):
        LogEpisodesCallback(trainer, num_episodes=0, freq=1)
