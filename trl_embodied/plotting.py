"""Learning curves: success rate and return against env steps, for several methods and seeds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

#: What the curves show by default: greedy evaluation success and the training episodes' return.
DEFAULT_METRICS = ("eval_success_rate", "episode/return")
LABELS = {
    "eval_success_rate": "greedy success rate (eval)",
    "eval_return": "return (eval)",
    "episode/return": "episode return (training)",
    "episode/success_rate": "success rate (training)",
}

History = Sequence[Mapping[str, float]]


def curve(history: History, metric: str, x: str = "env_steps") -> tuple[np.ndarray, np.ndarray]:
    """The ``(x, metric)`` points of one run's logged history, where both are present, sorted by x."""
    points = sorted((row[x], row[metric]) for row in history if x in row and metric in row)
    if not points:
        return np.zeros(0), np.zeros(0)
    xs, ys = zip(*points, strict=True)
    return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)


def plot_learning_curves(
    runs: Mapping[str, Sequence[History]],
    path: str | Path | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    x: str = "env_steps",
    title: str | None = None,
):
    """Draw one panel per metric, one line per method: the mean over its seeds, shaded from min to max.

    Args:
        runs: method label -> the logged histories of its seeds (``trainer.state.log_history``, or the MLP
            baseline's history: both log ``env_steps`` and the same metric names).
        path: where to save; the figure is written as ``.png`` and ``.svg`` beside each other.
        metrics: history keys to plot against ``x``.

    Returns:
        The matplotlib ``Figure``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), squeeze=False)
    for axis, metric in zip(axes[0], metrics, strict=True):
        for label, histories in runs.items():
            curves = [c for c in (curve(h, metric, x) for h in histories) if len(c[0])]
            if not curves:
                continue
            grid = np.unique(np.concatenate([xs for xs, _ in curves]))
            # Each seed's curve on the common steps (held flat beyond its own range).
            stacked = np.stack([np.interp(grid, xs, ys) for xs, ys in curves])
            (line,) = axis.plot(
                grid, stacked.mean(0), label=f"{label} ({len(curves)} seed{'s' * (len(curves) > 1)})"
            )
            if len(curves) > 1:
                axis.fill_between(grid, stacked.min(0), stacked.max(0), color=line.get_color(), alpha=0.2)
        axis.set_xlabel("env steps" if x == "env_steps" else x)
        axis.set_ylabel(LABELS.get(metric, metric))
        axis.grid(alpha=0.3)
        axis.legend(loc="best", fontsize="small")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    if path is not None:
        path = Path(path).with_suffix("")
        path.parent.mkdir(parents=True, exist_ok=True)
        # A fixed salt for the SVG's element ids and no date: the same curves write the same files, so a
        # re-plot leaves a repository's unchanged figures unchanged.
        with matplotlib.rc_context({"svg.hashsalt": "trl-embodied"}):
            figure.savefig(path.with_suffix(".png"), dpi=120)
            figure.savefig(path.with_suffix(".svg"), dpi=120, metadata={"Date": None})
    return figure
