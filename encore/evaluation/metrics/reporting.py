"""Reporting: the comparison table and its plots (metric vs k, per segment, feature importance).

Plots use the Agg canvas directly rather than pyplot, so they neither need a display nor change
the process-wide backend. With many models (14 by default) colour alone does not tell lines apart:
each model gets a colour *and* a line style and marker, and legends sit outside the axes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import cycle
from os import PathLike
from typing import Any

import numpy as np
import pandas as pd

# 20 distinct colours (tab20's dark shades first, then its light ones), 4 line styles and 6
# markers: no two of up to 20 models share colour, style and marker.
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7",
          "#dbdb8d", "#9edae5")
LINE_STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P")

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


def model_styles(models: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per model: ``color``, ``linestyle`` and ``marker``, distinct up to 20 models; the ranker in black."""
    styles = zip(cycle(COLORS), cycle(LINE_STYLES), cycle(MARKERS), strict=False)
    out = {model: {"color": c, "linestyle": s, "marker": m}
           for model, (c, s, m) in zip([m for m in models if m != "ranker"], styles, strict=False)}
    if "ranker" in models:
        out["ranker"] = {"color": "black", "linestyle": "-", "marker": "*", "linewidth": 2.5, "markersize": 9}
    return out


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def plot_metric_vs_k(
    results: Mapping[str, Mapping[str, float]], metric: str, path: str | PathLike[str]
) -> None:
    """Write a PNG of ``metric@k`` against ``k``, one line per model (best at the largest k first in
    the legend, which sits right of the axes).

    ``metric`` is the bare name (``"ndcg"``).
    """
    series: Sequence[tuple[str, list[int], list[float]]] = [
        (model, *_metric_by_k(metrics, metric)) for model, metrics in results.items()
    ]
    if not any(ks for _, ks, _ in series):
        raise ValueError(f"no '{metric}@k' values in results")
    styles = model_styles(list(results))  # by the models' own order: the same look in every plot of a run
    series = sorted((s for s in series if s[1]), key=lambda s: -s[2][-1])
    fig = _figure(8.0 if len(series) > 1 else 6.0, 4.5)
    ax = fig.add_subplot()
    for model, ks, values in series:
        ax.plot(ks, values, label=model, **styles[model])
    all_ks = sorted({k for _, ks, _ in series for k in ks})
    ax.set_xscale("log")
    ax.set_xticks(all_ks, [str(k) for k in all_ks])
    ax.minorticks_off()
    ax.set_xlabel("k")
    ax.set_ylabel(f"{metric}@k")
    ax.set_title(f"{metric}@k by model")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    fig.tight_layout()
    fig.savefig(path, format="png")


def plot_segments(by_segment: Mapping[str, Mapping[str, Mapping[str, float]]], metric: str,
                  path: str | PathLike[str]) -> None:
    """Write a PNG of ``metric`` (``"ndcg@10"``) per segment: one group of horizontal bars per
    segment, one bar per model (best of the all-user segment on top), each labelled with its value."""
    segments = [seg for seg, res in by_segment.items() if res]
    if not segments:
        raise ValueError("no segment with results")
    first = by_segment[segments[0]]
    models = sorted(first, key=lambda m: first[m].get(metric, np.nan), reverse=True)
    styles = model_styles(list(first))
    fig = _figure(4.0 * len(segments), 0.32 * len(models) + 1.4)
    axes = fig.subplots(1, len(segments), sharey=True, squeeze=False)[0]
    y = np.arange(len(models))[::-1]
    for ax, seg in zip(axes, segments, strict=True):
        values = [by_segment[seg].get(m, {}).get(metric, np.nan) for m in models]
        ax.barh(y, values, color=[styles[m]["color"] for m in models])
        for row, value in zip(y, values, strict=True):
            if np.isfinite(value):
                ax.text(value, row, f" {value:.3f}", va="center", fontsize="x-small")
        ax.set_title(seg)
        ax.set_xlabel(metric)
        ax.margins(x=0.25)
        ax.grid(True, axis="x", alpha=0.3)
    axes[0].set_yticks(y, models)
    fig.tight_layout()
    fig.savefig(path, format="png")


def plot_importance(importance: pd.DataFrame, path: str | PathLike[str], top: int = 30) -> None:
    """Write a PNG of the ``top`` features of ``importance`` (columns ``feature``, ``importance``,
    largest first), largest on top, each bar labelled with its value."""
    shown = importance.head(top).iloc[::-1]
    fig = _figure(8.0, max(3.0, 0.26 * len(shown) + 1.0))
    ax = fig.add_subplot()
    ax.barh(shown["feature"], shown["importance"], color=COLORS[0])
    for row, value in enumerate(shown["importance"]):
        ax.text(value, row, f" {value:.1f}", va="center", fontsize="x-small")
    ax.margins(x=0.15)
    ax.set_xlabel("CatBoost feature importance")
    ax.set_title(f"ranker: top {len(shown)} of {len(importance)} features")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
