"""What the notebooks call (``notebooks/eda.ipynb``, ``notebooks/compare_runs.ipynb``): they hold
no logic of their own.

A pipeline run is found in MLflow (the embedded store or a server) by experiment, name or note,
and its outputs through its component runs' ``encore.output_dir`` tags, or, when that folder is
not on this machine, the component run's artifacts. Nothing is re-derived from the current
environment (``ENCORE_DATA_DIR``, the working directory, the default config), so a notebook
shows the run it names from any folder.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from encore.data.prepared import PreparedData
from encore.outputs import EvaluateOutput, RankerOutput
from encore.reports.numbers import format_p, format_pct
from encore.tracking.client import cli_client

PARENT_TAG = "mlflow.parentRunId"
COMPONENT_TAG = "encore.component"
OUTPUT_TAG = "encore.output_dir"
LINE_STYLES = ("-", "--", "-.", ":")


def tracking_client(uri: str | None = None) -> Any:
    """``uri``, else ``MLFLOW_TRACKING_URI`` (environment or .env), else Encore's embedded store."""
    return cli_client(uri)


def pipeline_runs(client: Any, *, experiment: str | None = None, name: str | None = None,
                  note: str | None = None) -> pd.DataFrame:
    """Parent runs of pipelines, newest first: ``run_id, experiment, run_name, note, start_time,
    status``. ``experiment`` is an experiment name; ``name`` and ``note`` match parts of the
    run name and of its note (case-insensitive)."""
    experiments = [client.get_experiment_by_name(experiment)] if experiment else client.search_experiments()
    if experiment and experiments[0] is None:
        raise ValueError(f"experiment {experiment!r} not found in {client.tracking_uri}")
    names = {e.experiment_id: e.name for e in experiments}
    runs = client.search_runs(list(names), filter_string="tags.`encore.config_hash` != ''", max_results=5000,
                              order_by=["attributes.start_time DESC"])
    rows = [{"run_id": r.info.run_id, "experiment": names[r.info.experiment_id], "run_name": r.info.run_name or "",
             "note": r.data.tags.get("encore.note", ""),
             "start_time": pd.to_datetime(r.info.start_time, unit="ms", utc=True), "status": r.info.status}
            for r in runs if PARENT_TAG not in r.data.tags]
    table = pd.DataFrame(rows, columns=["run_id", "experiment", "run_name", "note", "start_time", "status"])
    for column, part in (("run_name", name), ("note", note)):
        if part:
            table = table[table[column].str.contains(part, case=False, regex=False)]
    return table.reset_index(drop=True)


@dataclass
class PipelineRun:
    """One pipeline execution: its parent run and its component runs, by component name."""

    client: Any
    run_id: str
    run_name: str
    experiment_id: str
    components: dict[str, Any]
    _downloads: dict[str, Path] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, client: Any, run_id: str) -> PipelineRun:
        parent = client.get_run(run_id)
        children = client.search_runs([parent.info.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{run_id}'",
                                      max_results=1000)
        components = {c.data.tags[COMPONENT_TAG]: c for c in children if COMPONENT_TAG in c.data.tags}
        return cls(client, run_id, parent.info.run_name or run_id, parent.info.experiment_id, components)

    @classmethod
    def latest(cls, client: Any, **match: str | None) -> PipelineRun:
        """The newest pipeline run matching ``experiment`` / ``name`` / ``note`` (see :func:`pipeline_runs`)."""
        runs = pipeline_runs(client, **match)
        if runs.empty:
            wanted = ", ".join(f"{k}={v!r}" for k, v in match.items() if v) or "any"
            raise LookupError(f"no pipeline run ({wanted}) in {client.tracking_uri}: run `make run` first, "
                              "or set MLFLOW_TRACKING_URI to the store that holds it")
        return cls.load(client, runs["run_id"].iloc[0])

    def output(self, component: str) -> Path:
        """The component's output folder: where its run says it wrote it, else its run's artifacts."""
        if component not in self.components:
            raise LookupError(f"pipeline run {self.run_name} ({self.run_id}) has no {component!r} component run; "
                              f"it ran {sorted(self.components)}")
        run = self.components[component]
        local = Path(run.data.tags.get(OUTPUT_TAG, ""))
        if run.data.tags.get(OUTPUT_TAG) and local.is_dir():
            return local
        if component not in self._downloads:
            target = Path(tempfile.mkdtemp(prefix=f"encore-{component}-"))
            self._downloads[component] = Path(self.client.download_artifacts(run.info.run_id, "", str(target)))
        return self._downloads[component]

    @property
    def evaluate(self) -> EvaluateOutput:
        return EvaluateOutput(self.output("evaluate"))

    @property
    def ranker(self) -> RankerOutput:
        return RankerOutput(self.output("ranker"))

    @property
    def prepared(self) -> PreparedData:
        return PreparedData(self.output("prepare"))


# ------------------------------------------------------------------------ comparing models


def metrics_long(comparison: pd.DataFrame) -> pd.DataFrame:
    """evaluate's ``comparison.csv`` (models × ``metric@k``) as ``model, metric, k, value``."""
    long = comparison.rename_axis("model").reset_index().melt(id_vars="model", var_name="column")
    parts = long["column"].str.rsplit("@", n=1, expand=True)
    return pd.DataFrame({"model": long["model"], "metric": parts[0], "k": parts[1].astype(int),
                         "value": long["value"].astype(float)})


def model_styles(models: list[str]) -> dict[str, dict[str, Any]]:
    """A colour and line style per model, the ranker drawn thick: the 10 dark hues of tab20 first,
    then their light shades, the line style turning with every model, so no two of up to 20
    models share both and neighbours in the legend always differ (14 models stay apart)."""
    import matplotlib as mpl

    tab20 = mpl.colormaps["tab20"].colors
    colours = [*tab20[0::2], *tab20[1::2]]
    return {model: {"color": colours[i % len(colours)], "linestyle": LINE_STYLES[i % len(LINE_STYLES)],
                    "linewidth": 3 if model == "ranker" else 1.5}
            for i, model in enumerate(models)}


def plot_metrics_vs_k(comparison: pd.DataFrame, metrics: tuple[str, ...] = ("ndcg", "recall")) -> Any:
    """Every model at every k, one panel per metric, the legend outside the data."""
    import matplotlib.pyplot as plt

    long = metrics_long(comparison)
    styles = model_styles(list(comparison.index))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics) + 2.5, 4.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for model, rows in long[long["metric"] == metric].groupby("model", sort=False):
            ax.plot(rows["k"], rows["value"], marker="o", label=model, **styles[model])
        ax.set(xscale="log", xlabel="k", ylabel=f"{metric}@k", title=f"{metric} vs k")
        ks = sorted(long["k"].unique())
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    fig.tight_layout()
    return fig


def ranker_vs_best(significance: dict[str, Any]) -> pd.DataFrame:
    """The headline model against the best generator per user segment, from ``significance.json``:
    users, both values, the uplift with its CI and the paired t-test (readable text)."""
    primary = significance.get("primary_metric", "ndcg@10")
    model = significance.get("headline_model", "ranker")
    rows = []
    for segment, entry in (significance.get("segments") or {"all": significance}).items():
        vs, values = entry.get("vs_best_generator") or {}, entry.get(primary) or {}
        best = entry.get("best_generator")
        rows.append({"segment": segment, "users": entry.get("n_users", 0), "best generator": best or "",
                     f"{model} {primary}": values.get(model, math.nan), f"best {primary}": values.get(best, math.nan),
                     "uplift": format_pct(vs.get("rel_uplift")),
                     "CI": (f"{format_pct(vs.get('rel_ci_low'))} .. {format_pct(vs.get('rel_ci_high'))}"
                            if vs else ""),
                     "paired t-test": format_p(vs.get("p_value")) if vs else entry.get("note", "")})
    return pd.DataFrame(rows).set_index("segment")


def plot_feature_importance(importance: pd.DataFrame, top: int = 20) -> Any:
    """The ranker's ``feature_importance.csv``, largest ``top`` features, largest on top."""
    import matplotlib.pyplot as plt

    shown = importance.nlargest(top, "importance").iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(shown) + 1))
    ax.barh(shown["feature"], shown["importance"], color="tab:blue")
    ax.set(xlabel="importance (CatBoost, share %)", title=f"ranker: top {len(shown)} features")
    fig.tight_layout()
    return fig


def plot_accuracy_vs(comparison: pd.DataFrame, k: int = 10, accuracy: str = "ndcg",
                     beyond: tuple[str, ...] = ("novelty", "catalog_coverage")) -> Any:
    """Accuracy against novelty and coverage at ``k``, one labelled point per model."""
    import matplotlib.pyplot as plt

    styles = model_styles(list(comparison.index))
    fig, axes = plt.subplots(1, len(beyond), figsize=(6 * len(beyond), 4.5), squeeze=False)
    for ax, other in zip(axes[0], beyond, strict=True):
        for model in comparison.index:
            x, y = comparison.loc[model, f"{other}@{k}"], comparison.loc[model, f"{accuracy}@{k}"]
            ax.scatter(x, y, color=styles[model]["color"], s=60 if model == "ranker" else 30)
            ax.annotate(model, (x, y), fontsize="small", xytext=(3, 3), textcoords="offset points")
        ax.set(xlabel=f"{other}@{k}", ylabel=f"{accuracy}@{k}", title=f"{accuracy} vs {other} at k={k}")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def user_examples(prepared: PreparedData, recommendations: pd.DataFrame, *, n_users: int = 3, n_items: int = 10,
                  seed: int = 0) -> pd.DataFrame:
    """A few test users (drawn with ``seed``): their most played training artists, their test
    artists and the ranker's list, by name; a recommended artist heard in the test is marked ✓."""
    names = prepared.items["name"].astype(str).to_numpy()
    test = prepared.part("test")
    rng = np.random.default_rng(seed)
    users = rng.choice(np.unique(test["user"].to_numpy()), size=min(n_users, test["user"].nunique()), replace=False)
    train = prepared.part("train")
    rows = []
    for user in users:
        heard = train[train["user"] == user].nlargest(n_items, "weight")["item"].to_numpy()
        held_out = set(test.loc[test["user"] == user, "item"].to_numpy().tolist())
        listed = recommendations[recommendations["user"] == user].nsmallest(n_items, "rank")["item"].to_numpy()
        rows.append({"user": prepared.users["raw_id"].iloc[user],
                     "most played (train)": ", ".join(names[heard]),
                     "listened in test": ", ".join(names[sorted(held_out)][:n_items]),
                     "ranker's list": ", ".join(f"{names[i]}{' ✓' if i in held_out else ''}" for i in listed)})
    return pd.DataFrame(rows).set_index("user")


# ------------------------------------------------------------------------------------ EDA


def interactions(prepared: PreparedData) -> pd.DataFrame:
    """Every kept interaction (base, target and test), with its part."""
    return pd.concat([prepared.part(p).assign(part=p) for p in ("base", "target", "test")], ignore_index=True)


def plot_long_tails(prepared: PreparedData) -> Any:
    """Plays per user and listeners per item by rank, on log axes: the two long tails."""
    import matplotlib.pyplot as plt

    events = interactions(prepared)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (values, what) in zip(axes, ((events.groupby("user")["weight"].sum(), "plays per user"),
                                         (events.groupby("item")["user"].nunique(), "listeners per item")),
                                  strict=True):
        ordered = np.sort(values.to_numpy())[::-1]
        ax.plot(np.arange(1, len(ordered) + 1), ordered)
        ax.set(xscale="log", yscale="log", xlabel="rank", ylabel=what, title=f"{what} (log-log)")
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def concentration(prepared: PreparedData, shares: tuple[float, ...] = (0.01, 0.1)) -> pd.Series:
    """Share of all plays that goes to the top 1% (10% …) of items by plays."""
    plays = np.sort(interactions(prepared).groupby("item")["weight"].sum().to_numpy())[::-1]
    total = plays.sum()
    return pd.Series({f"top {100 * s:g}% items": plays[: max(1, math.ceil(s * len(plays)))].sum() / total
                      for s in shares}, name="share of plays")


def plot_listening_over_time(prepared: PreparedData) -> Any | None:
    """Interactions per month by part (base, target, test), or None without timestamps."""
    import matplotlib.pyplot as plt

    if not prepared.has_timestamps:
        return None
    events = interactions(prepared)
    monthly = events.groupby([events["timestamp"].dt.to_period("M"), "part"]).size().unstack(fill_value=0)
    fig, ax = plt.subplots(figsize=(10, 3.5))
    for part in ("base", "target", "test"):
        if part in monthly:
            ax.plot(monthly.index.to_timestamp(), monthly[part], label=part)
    ax.set(yscale="log", ylabel="interactions per month", title="listening over time")
    ax.legend()
    fig.tight_layout()
    return fig


def tag_coverage(prepared: PreparedData) -> pd.Series:
    """How much of the catalogue and of the plays item tags describe."""
    tags = prepared.table("item_tags")
    tagged = np.zeros(prepared.n_items, dtype=bool)
    if tags is not None and len(tags):
        tagged[tags["item"].to_numpy()] = True
    plays = interactions(prepared).groupby("item")["weight"].sum()
    return pd.Series({"tags": prepared.n_tags, "items with a tag": tagged.mean(),
                      "tags per tagged item": (len(tags) / max(tagged.sum(), 1)) if tags is not None else 0.0,
                      "plays of tagged items": plays[tagged[plays.index]].sum() / plays.sum()},
                     name="tag coverage")


def split_table(prepared: PreparedData) -> pd.DataFrame:
    """Rows, users and items of each part of the split (base, target, test)."""
    return pd.DataFrame({part: {"rows": len(frame), "users": frame["user"].nunique(), "items": frame["item"].nunique()}
                         for part in ("base", "target", "test") for frame in [prepared.part(part)]}).T


def warm_and_cold(prepared: PreparedData) -> pd.Series:
    """Test users and items, and how many of them are warm or cold (from prepare's summary)."""
    summary = prepared.summary
    return pd.Series({"test users": summary.get("test_users"), "warm test users": summary.get("test_users_warm"),
                      "cold test users": summary.get("test_users_cold"), "test items": summary.get("test_items"),
                      "cold test items": summary.get("test_items_cold")}, name="count")
