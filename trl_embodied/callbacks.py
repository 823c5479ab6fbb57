"""Callbacks for :class:`~trl_embodied.EmbodiedPPOTrainer`, in the manner of TRL's ``LogCompletionsCallback``.

The trainer runs transformers' own callback machinery, so ``EarlyStoppingCallback`` (with
``metric_for_best_model="eval_success_rate"``), ``report_to="tensorboard"``/``"wandb"`` and any
``TrainerCallback`` work as they do with TRL's trainers; this module adds what is specific to episodes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback

from trl_embodied.evaluation import play_episodes

logger = logging.getLogger(__name__)

EPISODE_COLUMNS = ["step", "episode", "t", "observation", "action", "probability", "reward"]
#: The same with the task's name after the step: the columns of a trainer that evaluates several tasks.
TASK_EPISODE_COLUMNS = ["step", "task", *EPISODE_COLUMNS[1:]]


def episodes_markdown(rows: list[list[Any]], columns: list[str] = EPISODE_COLUMNS) -> str:
    """A Markdown table of ``columns`` rows (observations on one line, pipes escaped)."""

    def cell(value: Any) -> str:
        text = f"{value:.3f}" if isinstance(value, float) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


class LogEpisodesCallback(TrainerCallback):
    r"""Play sample episodes with the current policy every ``freq`` steps and log them as text tables.

    Each table row is one decision: the observation, the chosen action, its probability and the reward; a
    trainer that evaluates several tasks plays ``num_episodes`` of each, and its rows name the task. The
    table goes to every logger that takes tables (Weights & Biases as a ``wandb.Table``, TensorBoard as
    text) and to ``<output_dir>/episodes/step-<N>.md``.

    ```python
    >>> trainer = EmbodiedPPOTrainer(...)
    >>> trainer.add_callback(LogEpisodesCallback(trainer, num_episodes=2))
    ```

    Args:
        trainer: the :class:`~trl_embodied.EmbodiedPPOTrainer` whose policy and evaluation tasks are played.
        num_episodes: episodes per log (per task).
        freq: optimizer steps between logs; by default the trainer's ``eval_steps``.
        greedy: play the argmax policy (else sample).
    """

    def __init__(self, trainer, num_episodes: int = 1, freq: int | None = None, greedy: bool = True):
        if num_episodes < 1:
            raise ValueError(f"num_episodes={num_episodes}; log at least one episode.")
        if freq is None and not trainer.args.eval_steps:
            raise ValueError("LogEpisodesCallback needs freq=N, or eval_steps set in the trainer's config.")
        self.trainer = trainer
        self.num_episodes = num_episodes
        self.freq = freq
        self.greedy = greedy
        self.table: list[list[Any]] = []  # every logged row so far, as TRL's callbacks keep theirs
        named_tasks = any(trainer.eval_envs)  # several tasks, or one the user named: rows name their task
        self.columns = TASK_EPISODE_COLUMNS if named_tasks else EPISODE_COLUMNS
        self._last_logged_step = -1

    def on_step_end(self, args, state, control, **kwargs):
        freq = self.freq or state.eval_steps
        if state.global_step == self._last_logged_step or state.global_step % freq != 0:
            return
        self._last_logged_step = state.global_step
        if not self.trainer.accelerator.is_main_process:
            return
        trainer = self.trainer
        rows = []
        for task, env in trainer.eval_envs.items():
            records, _ = play_episodes(
                trainer.current_policy(),
                env,
                self.num_episodes,
                greedy=self.greedy,
                seed=args.seed + 20_000,
                progress=False,
                record_steps=True,
            )
            rows += [
                [
                    state.global_step,
                    *([task] if task else []),
                    record["seed"],
                    t,
                    step["prompt"],
                    step["valid_actions"][step["action"]],
                    step["action_probs"][step["action"]],
                    step["reward"],
                ]
                for record in records
                for t, step in enumerate(record["steps"])
            ]
        self.table += rows
        markdown = episodes_markdown(rows, self.columns)
        folder = Path(args.output_dir) / "episodes"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"step-{state.global_step}.md").write_text(markdown + "\n")
        logger.info("sample episodes at step %d:\n%s", state.global_step, markdown)
        for callback in trainer.callback_handler.callbacks:
            if isinstance(callback, TensorBoardCallback) and callback.tb_writer is not None:
                callback.tb_writer.add_text("episodes", markdown, state.global_step)
        if "wandb" in args.report_to:
            import wandb

            if wandb.run is not None:
                wandb.log({"episodes": wandb.Table(columns=self.columns, data=self.table)})


class StopAtSuccessCallback(TrainerCallback):
    r"""End training at the first evaluation whose success rate reaches ``success_rate``.

    transformers' ``EarlyStoppingCallback`` stops when a metric stops improving; a task with a known bar
    ("solved" at 0.9 greedy success) wants the budget spent only until the bar is met. Evaluations come
    from the trainer's ``eval_strategy``/``eval_steps``.

    ```python
    >>> trainer = EmbodiedPPOTrainer(..., callbacks=[StopAtSuccessCallback(0.9)])
    ```

    Args:
        success_rate: the bar, in [0, 1].
        metric: the evaluation metric compared with it.
    """

    def __init__(self, success_rate: float, metric: str = "eval_success_rate"):
        if not 0.0 <= success_rate <= 1.0:
            raise ValueError(f"success_rate={success_rate}; a success rate lies in [0, 1].")
        self.success_rate = success_rate
        self.metric = metric

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics is not None and metrics.get(self.metric, -1.0) >= self.success_rate:
            control.should_training_stop = True
