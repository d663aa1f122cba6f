"""Compare runs of an experiment: a leaderboard by one metric, or a side-by-side diff of two runs.

    python -m encore.components.compare --experiment NAME --metric ndcg_at_10 [--top 20]
    python -m encore.components.compare --diff RUN_A RUN_B [--metrics ndcg recall] [--k 10] [--segment warm]

The tracking URI comes from ``--tracking-uri`` or the standard ``MLFLOW_TRACKING_URI``
(empty: the local store). Only parent runs are listed by default (runs without the
``mlflow.parentRunId`` tag); ``--include-children`` lists nested runs too.

``--metrics``, ``--k`` and ``--segment`` keep the metrics whose key names them (a key reads
``[model.][segment.]<metric>[_at_<k>]``: ``als.warm.ndcg_at_10``); the diff then leaves params
out, and the leaderboard shows the kept metrics as columns. Numbers print as people read them:
p-values below 1e-4 as ``< 1e-4``, changes between runs as percentages.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import get_args

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run, ViewType

from encore.config.validation import ConfigError
from encore.evaluation.segments import SegmentName
from encore.reports.numbers import P_FLOOR, format_pct, relative_change
from encore.tracking.credentials import readable_auth_errors
from encore.tracking.runs import cli_client

PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
SEGMENTS: tuple[str, ...] = get_args(SegmentName)  # all, warm, cold, cold_items
_AT_K = re.compile(r"(?P<name>.+)_at_(?P<k>\d+)")


@dataclass(frozen=True)
class MetricFilter:
    """Which metric keys to keep: by metric name (a prefix: ``uplift`` keeps ``uplift_vs_…``),
    cut-off ``k`` and user segment (``all`` = keys without a segment part). Empty keeps all."""

    metrics: tuple[str, ...] = ()
    ks: tuple[int, ...] = ()
    segments: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.metrics or self.ks or self.segments)

    def keeps(self, key: str) -> bool:
        parts = key.split(".")
        found = _AT_K.fullmatch(parts[-1])
        name, k = (found["name"], int(found["k"])) if found else (parts[-1], None)
        segment = next((p for p in parts[:-1] if p in SEGMENTS), "all")
        return ((not self.metrics or any(name.startswith(m) for m in self.metrics))
                and (not self.ks or k in self.ks)
                and (not self.segments or segment in self.segments))

    def select(self, keys: Iterable[str]) -> list[str]:
        return [key for key in keys if self.keeps(key)]


def is_p_value(key: str) -> bool:
    """Keys holding a p-value (``…_p_value``, ``…_pvalue``): shown as ``< 1e-4``, no change in %."""
    return key.endswith(("_p_value", "_pvalue", ".p_value"))


def readable(value: object, key: str = "") -> str:
    """A value as the tables print it: 4 significant digits for metrics, ``< 1e-4`` for tiny
    p-values, text as is."""
    number = _as_number(value)
    if number is None:
        return "" if value is None else str(value)
    if is_p_value(key) and number < P_FLOOR:
        return "< 1e-4"
    if number != 0 and (abs(number) >= 1e6 or abs(number) < 1e-3):
        return f"{number:.3e}"
    return f"{number:.4g}"


def _all_runs(client: MlflowClient, experiment_ids: list[str]) -> list[Run]:
    """Every active run of the experiments (paged)."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            experiment_ids, run_view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def compare_runs(
    client: MlflowClient,
    experiment: str,
    metric: str,
    *,
    top: int | None = 20,
    include_children: bool = False,
    ascending: bool = False,
    params: Sequence[str] | None = None,
    metrics: MetricFilter | None = None,
) -> pd.DataFrame:
    """Runs of ``experiment`` that have ``metric``, best first, with their key params.

    With ``metrics`` (a non-empty :class:`MetricFilter`), the metrics it keeps follow ``metric``
    as columns.

    Key params are ``params`` if given, else the params whose values differ between the
    listed runs (a param every run shares says nothing about the ranking). Columns:
    ``run_id, run_name, <metric>, start_time``, then ``params.<name>`` per key param
    (other metrics: see :func:`diff_runs`).
    """
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ValueError(f"experiment {experiment!r} not found")
    runs = _all_runs(client, [exp.experiment_id])
    if not include_children:
        runs = [r for r in runs if PARENT_TAG not in r.data.tags]
    rows = []
    for run in runs:
        value = run.data.metrics.get(metric)
        if value is None or math.isnan(value):
            continue
        rows.append(
            {
                "run_id": run.info.run_id,
                "run_name": run.info.run_name or run.data.tags.get(RUN_NAME_TAG, ""),
                metric: value,
                "start_time": pd.to_datetime(run.info.start_time, unit="ms", utc=True),
                **({f"metrics.{k}": run.data.metrics[k] for k in metrics.select(run.data.metrics) if k != metric}
                   if metrics else {}),
                **{f"params.{k}": v for k, v in run.data.params.items()},
            }
        )
    base = ["run_id", "run_name", metric, "start_time"]
    if not rows:
        return pd.DataFrame(columns=base)
    table = pd.DataFrame(rows)
    # Ties keep the newest run first: it is the one people usually look for.
    table = table.sort_values([metric, "start_time"], ascending=[ascending, False], kind="stable")
    if top is not None:
        table = table.head(top)
    param_cols = [c for c in table.columns if c.startswith("params.")]
    if params is not None:
        keep = [f"params.{p}" for p in params if f"params.{p}" in table.columns]
    else:
        keep = [c for c in param_cols if table[c].astype(str).nunique(dropna=False) > 1]
    kept_metrics = sorted(c for c in table.columns if c.startswith("metrics."))
    return table[base + kept_metrics + sorted(keep)].reset_index(drop=True)


def _as_number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def diff_runs(client: MlflowClient, run_a: str, run_b: str, *, include_equal: bool = False,
              metrics: MetricFilter | None = None) -> pd.DataFrame:
    """Params and metrics that differ between two runs, side by side.

    Columns ``kind`` ("param" | "metric"), ``key``, ``run_a``, ``run_b``, ``difference``
    (b - a when both values are numeric, else empty) and ``change`` ((b - a) / |a|, empty for
    p-values and when a is 0). A key present in one run only counts as different. Metrics are
    the latest logged values. With ``metrics`` (a non-empty :class:`MetricFilter`) only the
    metrics it keeps are listed, and no params.
    """
    a, b = client.get_run(run_a), client.get_run(run_b)
    rows = []
    kinds = [("metric", a.data.metrics, b.data.metrics)]
    if not metrics:
        kinds.insert(0, ("param", a.data.params, b.data.params))
    for kind, left, right in kinds:
        keys = sorted(set(left) | set(right))
        for key in metrics.select(keys) if metrics else keys:
            va, vb = left.get(key), right.get(key)
            if va == vb and not include_equal:
                continue
            na, nb = _as_number(va), _as_number(vb)
            diff = nb - na if na is not None and nb is not None else None
            change = None if is_p_value(key) else relative_change(na, nb)
            rows.append({"kind": kind, "key": key, "run_a": va, "run_b": vb, "difference": diff, "change": change})
    return pd.DataFrame(rows, columns=["kind", "key", "run_a", "run_b", "difference", "change"])


def readable_diff(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`diff_runs`'s table as text: values by :func:`readable`, the difference signed,
    the change in percent."""
    shown = table.copy()
    for column in ("run_a", "run_b"):
        shown[column] = [readable(v, k) for v, k in zip(table[column], table["key"], strict=True)]
    shown["difference"] = ["" if d is None or pd.isna(d) or is_p_value(k) else
                           ("+" if d > 0 else "") + readable(d, k)
                           for d, k in zip(table["difference"], table["key"], strict=True)]
    shown["change"] = [format_pct(c, digits=2) if c is not None and pd.notna(c) else "" for c in table["change"]]
    return shown


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: print the leaderboard or the diff."""
    parser = argparse.ArgumentParser(prog="python -m encore.components.compare", description=__doc__.split("\n")[0])
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else the local store mlruns/mlflow.db")
    parser.add_argument("--experiment", help="experiment name")
    parser.add_argument("--metric", default="ndcg_at_10", help="metric to rank by (default ndcg_at_10)")
    parser.add_argument("--top", type=int, default=20, help="rows to show (default 20)")
    parser.add_argument("--ascending", action="store_true", help="lower is better (losses, errors)")
    parser.add_argument("--include-children", action="store_true", help="also list nested (child) runs")
    parser.add_argument("--params", nargs="*", help="param columns to show (default: those that differ)")
    parser.add_argument("--diff", nargs=2, metavar=("RUN_A", "RUN_B"), help="params/metrics that differ")
    parser.add_argument("--metrics", nargs="+", default=(), metavar="NAME",
                        help="keep these metrics (names or prefixes: ndcg recall uplift)")
    parser.add_argument("--k", nargs="+", type=int, default=(), metavar="K", help="keep metrics at these cut-offs")
    parser.add_argument("--segment", nargs="+", default=(), choices=SEGMENTS,
                        help="keep metrics of these user segments ('all' = keys without a segment)")
    args = parser.parse_args(argv)

    try:
        client = cli_client(args.tracking_uri)
        with readable_auth_errors():
            return _show(parser, args, client)
    except ConfigError as exc:  # wrong password, refused permission: one line, as run.sh and promote give
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _show(parser: argparse.ArgumentParser, args: argparse.Namespace, client: MlflowClient) -> int:
    chosen = MetricFilter(tuple(args.metrics), tuple(args.k), tuple(args.segment))
    with pd.option_context("display.max_columns", None, "display.width", 200, "display.max_colwidth", 60):
        if args.diff:
            table = diff_runs(client, *args.diff, metrics=chosen)
            if table.empty:
                what = "values of the chosen metrics" if chosen else "params and metrics"
                print(f"runs {args.diff[0]} and {args.diff[1]} have identical {what}")
            else:
                print(f"run_a = {args.diff[0]}\nrun_b = {args.diff[1]}  (difference = b - a, change = (b - a) / |a|)")
                print(readable_diff(table).to_string(index=False))
            return 0
        if not args.experiment:
            parser.error("--experiment is required (or use --diff RUN_A RUN_B)")
        try:
            table = compare_runs(
                client,
                args.experiment,
                args.metric,
                top=args.top,
                include_children=args.include_children,
                ascending=args.ascending,
                params=args.params,
                metrics=chosen,
            )
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if table.empty:
            print(f"no runs in {args.experiment!r} have metric {args.metric!r}")
            return 0
        numbers = [c for c in table.columns if c == args.metric or c.startswith("metrics.")]
        print(table.to_string(index=False, formatters={c: (lambda v, c=c: readable(v, c)) for c in numbers}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
