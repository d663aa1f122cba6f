"""What a user sees in MLflow's UI (3.17) after a pipeline run: headless Chromium over a real server.

One tiny pipeline (four generators and the ranker) runs twice into a fresh store (the second run
reuses everything) while ``mlflow server`` starts; then a fresh browser profile opens the link
Encore prints (the runs table, *Encore headline* view) and the *Encore models* view (the ranker
beside every generator).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import mlflow
import pytest

from benchmarks.mlflow_ui import chromium_page, mlflow_ui
from encore.config.experiment import EncoreConfig
from encore.pipeline.runner import run_pipeline
from encore.tracking.runs import MODELS_VIEW, REUSED_SUFFIX, setup_tracking, tracking_uri, ui_url
from tests.conftest import TINY_SYNTHETIC, make_config

GENERATORS = ("popular", "als", "ease", "itemknn")
OFF = {"enabled": False}
SMALL = TINY_SYNTHETIC | {
    "experiment": {"name": "ui", "seed": 3, "description": "Encore's browser test"},
    "components": TINY_SYNTHETIC["components"] | {
        "ranker": {"iterations": 30, "early_stopping_rounds": 10},
        **{name: OFF for name in ("bpr", "item2item", "friends", "userknn", "als128", "als32", "bpr128", "ease500",
                                  "knncos")}},
}
TIMEOUT_MS = 90_000  # a loaded CI machine renders slowly; a page that never shows fails here


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EncoreConfig, str, str, Any]]:
    """(config, experiment id, server address, page) after two pipeline runs."""
    config = make_config(tmp_path_factory.mktemp("ui"), SMALL)
    experiment_id = setup_tracking(config)  # the store's tables exist before the server opens it
    with mlflow_ui(tracking_uri(config)) as server:
        run_pipeline(config, note="first")  # meanwhile the server starts
        run_pipeline(config)
        url = server.wait()
        with chromium_page() as page:
            yield config, experiment_id, url, page


def parent_runs(config: EncoreConfig) -> list[Any]:
    client = mlflow.MlflowClient(tracking_uri(config))
    runs = client.search_runs([setup_tracking(config)], order_by=["attributes.start_time DESC"], max_results=100)
    return [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


def test_the_link_opens_the_runs_table_with_the_headline_columns_and_distinct_runs(ui) -> None:
    config, experiment_id, url, page = ui
    page.goto(ui_url(url, experiment_id))
    parents = parent_runs(config)
    names = [r.info.run_name for r in parents]
    assert len(set(names)) == 2 and names[0].endswith(REUSED_SUFFIX) and names[1].endswith(" first"), names
    for name in names:
        page.get_by_text(name, exact=True).wait_for(timeout=TIMEOUT_MS)
    assert "/runs" in page.url and "overview" not in page.url and "genai" not in page.url, page.url
    # The model-training sidebar (Runs, Models, Traces), not the GenAI one (Overview, Sessions, Judges ...)
    page.get_by_role("link", name="Runs", exact=True).first.wait_for(timeout=TIMEOUT_MS)
    assert page.get_by_text("Sessions", exact=True).count() == 0
    assert page.get_by_text("Evaluation runs", exact=True).count() == 0
    headers = page.locator("[role=columnheader]").all_inner_texts()
    for column in ("ndcg_at_10", "best_generator.ndcg_at_10", "uplift_vs_best_generator",
                   "uplift_vs_best_generator_p_value"):
        assert column in headers, headers
    # the two runs' colours, chosen by Encore (mlflow.runColor), differ
    colors = {r.data.tags["mlflow.runColor"] for r in parents}
    assert len(colors) == 2
    # The experiment's description is MLflow's note: the page shows it.
    page.get_by_text("Encore's browser test").first.wait_for(timeout=TIMEOUT_MS)


def test_the_models_view_puts_the_ranker_beside_every_generator(ui) -> None:
    config, experiment_id, url, page = ui
    client = mlflow.MlflowClient(tracking_uri(config))
    latest = parent_runs(config)[0]
    children = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{latest.info.run_id}'")
    scores = {r.data.tags["encore.component"]: r.data.metrics["ndcg_at_10"] for r in children
              if r.data.tags.get("encore.component") in (*GENERATORS, "ranker")}
    assert set(scores) == {*GENERATORS, "ranker"}  # the ranker run has its own ndcg_at_10
    page.goto(ui_url(url, experiment_id, view=MODELS_VIEW))
    page.get_by_text("ranker", exact=True).first.wait_for(timeout=TIMEOUT_MS)
    headers = page.locator("[role=columnheader]").all_inner_texts()
    assert "ndcg_at_10" in headers and "encore.component" in headers, headers
    # One row per model run (both pipeline runs), best ndcg_at_10 first: the ranker among the generators.
    page.get_by_text("Sort: ndcg_at_10").first.wait_for(timeout=TIMEOUT_MS)
    # The grid places rows by position, not DOM order: read them in their aria-rowindex order.
    names = page.evaluate("""() => [...document.querySelectorAll('[role=row][aria-rowindex]')]
        .sort((a, b) => a.getAttribute('aria-rowindex') - b.getAttribute('aria-rowindex')).map(r => r.innerText)""")
    shown = [line.strip() for text in names for line in text.splitlines() if line.strip() in scores]
    first_seen = list(dict.fromkeys(shown))
    assert first_seen == sorted(scores, key=lambda m: -scores[m]), (first_seen, scores)
    assert "evaluate" not in " ".join(names) and latest.info.run_name not in " ".join(names)
