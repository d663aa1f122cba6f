"""``compare`` on a real MLflow store: metric/k/segment filters, readable p-values and changes."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient

from encore.components import compare

METRICS_A = {"ndcg_at_10": 0.40, "als.ndcg_at_10": 0.38, "als.warm.ndcg_at_10": 0.36, "als.recall_at_20": 0.5,
             "ranker.cold_items.ndcg_at_10": 0.20, "uplift_vs_best_generator_p_value": 0.2,
             "uplift_vs_best_generator": 0.05, "time_run_seconds": 3.0}
METRICS_B = {**METRICS_A, "ndcg_at_10": 0.42, "als.warm.ndcg_at_10": 0.35, "ranker.cold_items.ndcg_at_10": 0.25,
             "uplift_vs_best_generator_p_value": 3e-9, "als.recall_at_20": 0.5}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    uri = f"sqlite:///{tmp_path_factory.mktemp('compare') / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("cmp")
    ids = []
    for metrics, params in ((METRICS_A, {"seed": 1}), (METRICS_B, {"seed": 2})):
        with mlflow.start_run() as run:
            mlflow.log_metrics(metrics)
            mlflow.log_params(params)
            ids.append(run.info.run_id)
    return uri, ids[0], ids[1]


def test_filter_reads_model_segment_metric_and_k() -> None:
    keys = list(METRICS_A)
    assert compare.MetricFilter(metrics=("ndcg",), ks=(10,), segments=("all",)).select(keys) == [
        "ndcg_at_10", "als.ndcg_at_10"]
    assert compare.MetricFilter(segments=("warm",)).select(keys) == ["als.warm.ndcg_at_10"]
    assert compare.MetricFilter(segments=("cold_items",)).select(keys) == ["ranker.cold_items.ndcg_at_10"]
    assert compare.MetricFilter(ks=(20,)).select(keys) == ["als.recall_at_20"]
    assert compare.MetricFilter(metrics=("uplift",)).select(keys) == [
        "uplift_vs_best_generator_p_value", "uplift_vs_best_generator"]
    assert compare.MetricFilter().select(keys) == keys


def test_diff_with_filters_prints_p_values_and_percent_changes(runs, capsys: pytest.CaptureFixture) -> None:
    uri, a, b = runs
    assert compare.main(["--tracking-uri", uri, "--diff", a, b, "--metrics", "ndcg", "uplift"]) == 0
    lines = {line.split()[1]: line.split()[2:] for line in capsys.readouterr().out.splitlines()[3:]}
    assert set(lines) == {"ndcg_at_10", "als.warm.ndcg_at_10", "ranker.cold_items.ndcg_at_10",
                          "uplift_vs_best_generator_p_value"}  # equal ones and params left out
    assert lines["ndcg_at_10"] == ["0.4", "0.42", "+0.02", "+5.00%"]
    assert lines["als.warm.ndcg_at_10"] == ["0.36", "0.35", "-0.01", "-2.78%"]
    assert lines["uplift_vs_best_generator_p_value"] == ["0.2", "<", "1e-4"]  # no difference, no change


def test_diff_by_segment_and_unfiltered_diff_keeps_params(runs, capsys: pytest.CaptureFixture) -> None:
    uri, a, b = runs
    assert compare.main(["--tracking-uri", uri, "--diff", a, b, "--segment", "warm", "--k", "10"]) == 0
    out = capsys.readouterr().out
    assert "als.warm.ndcg_at_10" in out and "cold_items" not in out and "seed" not in out
    table = compare.diff_runs(MlflowClient(uri), a, b)
    assert ("param", "seed") in set(zip(table["kind"], table["key"], strict=True))
    assert "e-0" not in compare.readable_diff(table)["difference"].str.cat()  # no scientific notation


def test_leaderboard_shows_the_filtered_metrics(runs, capsys: pytest.CaptureFixture) -> None:
    uri, _, b = runs
    assert compare.main(["--tracking-uri", uri, "--experiment", "cmp", "--metrics", "uplift"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "metrics.uplift_vs_best_generator_p_value" in out[0]
    assert out[1].split()[0] == b and "< 1e-4" in out[1]
