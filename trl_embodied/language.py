"""Language retention: does the trained adapter keep the base model's language ability?

TWOSOME's claim: after RL, zero-shot ARC-Challenge, HellaSwag, PIQA and MMLU show no significant loss.
:func:`compare_language` measures it as multiple-choice accuracy of the base model (adapter disabled) and
of the adapted model on the same tasks, through one of two backends:

- ``"lm_eval"``: EleutherAI's lm-evaluation-harness (extra ``eval``: ``pip install trl-embodied[eval]``).
  A task is an lm-eval task name (``arc_challenge``, ``hellaswag``, ``piqa``, ``mmlu``: these download
  their datasets from the Hub) or a local JSONL file, which is turned into an lm-eval task config.
- ``"scorer"``: the project's own log-likelihood scorer (:class:`~trl_embodied.ActionScorer`: each choice
  scored after the question, as lm-eval does), for local JSONL files and no extra dependency.

A local multiple-choice file holds one JSON object a line: ``{"question": str, "choices": [str, ...],
"answer": int}``. Both backends report ``acc`` (the choice with the highest log-likelihood) and
``acc_norm`` (log-likelihood divided by the choice's length in bytes), lm-eval's definitions.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from trl_embodied.scoring import ActionScorer

DEFAULT_LANGUAGE_TASKS = ("arc_challenge", "hellaswag", "piqa", "mmlu")
Backend = Literal["auto", "lm_eval", "scorer"]


def read_multiple_choice(path: str | Path) -> list[dict[str, Any]]:
    """Read and check a local multiple-choice JSONL file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such multiple-choice file (one JSON object a line).")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        choices = row.get("choices")
        if not isinstance(row.get("question"), str) or not isinstance(choices, list) or len(choices) < 2:
            raise ValueError(f"{path}:{number}: needs a 'question' string and a 'choices' list of 2 or more.")
        if not isinstance(row.get("answer"), int) or not 0 <= row["answer"] < len(choices):
            raise ValueError(f"{path}:{number}: 'answer' must index 'choices' (0..{len(choices) - 1}).")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no questions in the file.")
    return rows


@torch.no_grad()
def multiple_choice_accuracy(
    model, tokenizer, rows: Sequence[dict[str, Any]], batch_size: int = 8
) -> dict[str, float]:
    """``acc`` and ``acc_norm`` of ``model`` on multiple-choice ``rows``, by the log-likelihood of each choice."""
    scorer = ActionScorer(model, tokenizer, normalization="none")
    correct = correct_norm = 0
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        scores = scorer.score([row["question"] for row in batch], [row["choices"] for row in batch])
        for i, row in enumerate(batch):
            logprobs = scores.logprobs[i][: len(row["choices"])].double()
            lengths = torch.tensor([len((" " + c).encode()) for c in row["choices"]], dtype=torch.float64)
            correct += int(logprobs.argmax()) == row["answer"]
            correct_norm += int((logprobs / lengths).argmax()) == row["answer"]
    return {"acc": correct / len(rows), "acc_norm": correct_norm / len(rows)}


def _lm_eval_task_config(name: str, path: Path) -> str:
    """An lm-eval YAML task reading a local multiple-choice JSONL file."""
    return "\n".join(
        [
            f"task: {name}",
            "dataset_path: json",
            "dataset_kwargs:",
            "  data_files:",
            f"    test: {json.dumps(str(path.resolve()))}",
            "test_split: test",
            "output_type: multiple_choice",
            'doc_to_text: "{{question}}"',
            'doc_to_choice: "{{choices}}"',
            'doc_to_target: "{{answer}}"',
            "metric_list:",
            "  - metric: acc",
            "  - metric: acc_norm",
            "",
        ]
    )


def _evaluate_with_lm_eval(model, tokenizer, tasks: Sequence[str], limit: int | None, batch_size: int):
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory() as configs:
        names = []
        for task in tasks:
            if Path(task).suffix == ".jsonl":
                read_multiple_choice(task)  # fail early with our message, not deep inside lm-eval
                name = f"trl_embodied_{Path(task).stem}"
                Path(configs, f"{name}.yaml").write_text(_lm_eval_task_config(name, Path(task)))
                names.append((task, name))
            else:
                names.append((task, task))
        results = simple_evaluate(
            model=HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size),
            tasks=[name for _, name in names],
            task_manager=TaskManager(include_path=configs),
            limit=limit,
            log_samples=False,
        )["results"]
    return {
        task: {
            metric: results[name][f"{metric},none"]
            for metric in ("acc", "acc_norm")
            if f"{metric},none" in results[name]
        }
        for task, name in names
    }


def _resolve_backend(backend: Backend, tasks: Iterable[str]) -> str:
    try:
        import lm_eval  # noqa: F401

        available = True
    except ImportError:
        available = False
    if backend == "auto":
        backend = "lm_eval" if available else "scorer"
    if backend == "lm_eval" and not available:
        raise ImportError("backend='lm_eval' needs lm-evaluation-harness: pip install 'trl-embodied[eval]'.")
    if backend == "scorer":
        hub_tasks = [t for t in tasks if Path(t).suffix != ".jsonl"]
        if hub_tasks:
            raise ValueError(
                f"tasks {hub_tasks} are lm-eval task names; the 'scorer' backend reads local .jsonl files only. "
                "Install the 'eval' extra for lm-eval tasks."
            )
    return backend


def evaluate_language(
    model,
    tokenizer,
    tasks: Sequence[str] = DEFAULT_LANGUAGE_TASKS,
    *,
    backend: Backend = "auto",
    limit: int | None = None,
    batch_size: int = 8,
) -> dict[str, dict[str, float]]:
    """Multiple-choice accuracy of a causal LM on ``tasks``: ``{task: {"acc": ..., "acc_norm": ...}}``.

    Args:
        model: a causal LM (with or without a PEFT adapter).
        tasks: lm-eval task names and/or local ``.jsonl`` multiple-choice files.
        backend: ``"auto"`` uses lm-eval when installed, else the project's scorer.
        limit: at most this many questions per task.
    """
    backend = _resolve_backend(backend, tasks)
    if backend == "lm_eval":
        return _evaluate_with_lm_eval(model, tokenizer, tasks, limit, batch_size)
    results = {}
    for task in tasks:
        rows = read_multiple_choice(task)[:limit]
        results[task] = multiple_choice_accuracy(model, tokenizer, rows, batch_size)
    return results


def compare_language(
    model,
    tokenizer=None,
    tasks: Sequence[str] = DEFAULT_LANGUAGE_TASKS,
    **kwargs: Any,
) -> dict[str, dict[str, float]]:
    """The base model against the adapted one, on the same tasks and backend.

    Args:
        model: an :class:`~trl_embodied.EmbodiedActorCritic` or a ``peft.PeftModel``; the base is the same
            model with its adapter disabled, so no second copy is loaded.
        tokenizer: needed for a ``PeftModel`` (an actor-critic carries its own).
        kwargs: passed to :func:`evaluate_language` (``backend``, ``limit``, ``batch_size``).

    Returns:
        ``{task: {"base_acc", "adapter_acc", "delta_acc", "base_acc_norm", "adapter_acc_norm",
        "delta_acc_norm"}}`` (delta: adapter minus base).
    """
    policy = getattr(model, "policy", model)  # EmbodiedActorCritic -> its PeftModel
    tokenizer = tokenizer or getattr(model, "tokenizer", None)
    if not hasattr(policy, "disable_adapter"):
        raise TypeError(
            f"compare_language needs a model with a PEFT adapter (EmbodiedActorCritic or PeftModel), "
            f"got {type(model).__name__}; use evaluate_language for a single model."
        )
    if tokenizer is None:
        raise ValueError("Pass the tokenizer with a PeftModel.")
    language_model = policy.get_base_model()  # LoRA layers live inside it: active unless disabled
    with policy.disable_adapter():
        base = evaluate_language(language_model, tokenizer, tasks, **kwargs)
    adapted = evaluate_language(language_model, tokenizer, tasks, **kwargs)
    table = {}
    for task in tasks:
        row = {}
        for metric in base[task]:
            row[f"base_{metric}"] = base[task][metric]
            row[f"adapter_{metric}"] = adapted[task][metric]
            row[f"delta_{metric}"] = adapted[task][metric] - base[task][metric]
        table[task] = row
    return table
