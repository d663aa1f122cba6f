"""Compare runs of an experiment: a leaderboard by one metric, or a side-by-side diff of two runs.

    python -m encore.components.compare --experiment NAME --metric ndcg_at_10 [--top 20]
    python -m encore.components.compare --diff RUN_A RUN_B

The tracking URI comes from ``--tracking-uri`` or the standard ``MLFLOW_TRACKING_URI``
(empty: the local store). Only parent runs are listed by default (runs without the
``mlflow.parentRunId`` tag); ``--include-children`` lists nested runs too.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run, ViewType

from encore.config.validation import ConfigError
from encore.tracking.credentials import readable_auth_errors
from encore.tracking.runs import cli_client

PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"


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
) -> pd.DataFrame:
    """Runs of ``experiment`` that have ``metric``, best first, with their key params.

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
    return table[base + sorted(keep)].reset_index(drop=True)


def _as_number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def diff_runs(client: MlflowClient, run_a: str, run_b: str, *, include_equal: bool = False) -> pd.DataFrame:
    """Params and metrics that differ between two runs, side by side.

    Columns ``kind`` ("param" | "metric"), ``key``, ``run_a``, ``run_b`` and ``difference``
    (b - a when both values are numeric, else empty). A key present in one run only
    counts as different. Metrics are the latest logged values.
    """
    a, b = client.get_run(run_a), client.get_run(run_b)
    rows = []
    for kind, left, right in (
        ("param", a.data.params, b.data.params),
        ("metric", a.data.metrics, b.data.metrics),
    ):
        for key in sorted(set(left) | set(right)):
            va, vb = left.get(key), right.get(key)
            if va == vb and not include_equal:
                continue
            na, nb = _as_number(va), _as_number(vb)
            diff = nb - na if na is not None and nb is not None else None
            rows.append({"kind": kind, "key": key, "run_a": va, "run_b": vb, "difference": diff})
    return pd.DataFrame(rows, columns=["kind", "key", "run_a", "run_b", "difference"])


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
    args = parser.parse_args(argv)

    try:
        client = cli_client(args.tracking_uri)
        with readable_auth_errors():
            return _show(parser, args, client)
    except ConfigError as exc:  # wrong password, refused permission: one line, as run.sh and promote give
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _show(parser: argparse.ArgumentParser, args: argparse.Namespace, client: MlflowClient) -> int:
    with pd.option_context("display.max_columns", None, "display.width", 200, "display.max_colwidth", 60):
        if args.diff:
            table = diff_runs(client, *args.diff)
            if table.empty:
                print(f"runs {args.diff[0]} and {args.diff[1]} have identical params and metrics")
            else:
                print(f"run_a = {args.diff[0]}\nrun_b = {args.diff[1]}  (difference = b - a)")
                print(table.fillna("").to_string(index=False))
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
            )
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if table.empty:
            print(f"no runs in {args.experiment!r} have metric {args.metric!r}")
            return 0
        print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
