"""Reporting: the comparison table and the metric-vs-k plot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from os import PathLike

import numpy as np
import pandas as pd

# ----------------------------------------------------------------------------- reporting


def metrics_table(results: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """Models as rows, metric keys as columns (first-seen order); missing values are nan."""
    columns: dict[str, None] = {}
    for metrics in results.values():
        columns.update(dict.fromkeys(metrics))
    table = pd.DataFrame(
        [[metrics.get(c, np.nan) for c in columns] for metrics in results.values()],
        index=pd.Index(list(results), name="model"),
        columns=list(columns),
        dtype=np.float64,
    )
    return table


def _metric_by_k(metrics: Mapping[str, float], metric: str) -> tuple[list[int], list[float]]:
    prefix = f"{metric}@"
    pairs = sorted(
        (int(key[len(prefix) :]), float(value))
        for key, value in metrics.items()
        if key.startswith(prefix) and key[len(prefix) :].isdigit()
    )
    return [k for k, _ in pairs], [v for _, v in pairs]


def plot_metric_vs_k(
    results: Mapping[str, Mapping[str, float]], metric: str, path: str | PathLike[str]
) -> None:
    """Write a PNG of ``metric@k`` against ``k``, one line per model.

    ``metric`` is the bare name (``"ndcg"``). Uses the Agg canvas directly rather than
    pyplot, so it neither needs a display nor changes the process-wide backend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series: Sequence[tuple[str, list[int], list[float]]] = [
        (model, *_metric_by_k(metrics, metric)) for model, metrics in results.items()
    ]
    if not any(ks for _, ks, _ in series):
        raise ValueError(f"no '{metric}@k' values in results")

    fig = Figure(figsize=(6.0, 4.0), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for model, ks, values in series:
        if ks:
            ax.plot(ks, values, marker="o", label=model)
    all_ks = sorted({k for _, ks, _ in series for k in ks})
    ax.set_xticks(all_ks)
    ax.set_xlabel("k")
    ax.set_ylabel(f"{metric}@k")
    ax.set_title(f"{metric}@k by model")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
