"""Screenshots of the MLflow UI for the docs, made by headless Chromium over a fresh pipeline run.

    python -m benchmarks.screenshots                 # writes docs/images/mlflow_*.png
    python -m benchmarks.screenshots --out /tmp/shots

Runs the tiny synthetic experiment of the tests (every generator, the ranker, evaluate and
register; a minute or two) twice into a temporary store (the second run reuses everything),
starts ``mlflow server`` over it and photographs, in a fresh browser profile, the pages a user
opens: the runs table (the link Encore prints), the *Encore models* view (the ranker beside every
generator), the compare view of the ranker and the best generators, the parent run's page and
the registered model. Nothing is typed by hand: re-run it
after a change to what Encore logs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.mlflow_ui import chromium_page, mlflow_ui

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT = REPO_ROOT / "docs" / "images"
TIMEOUT_MS = 120_000
DEMO = {
    "experiment": {"name": "demo", "seed": 3,
                   "description": "Tiny synthetic data: every generator, the CatBoost ranker, evaluate, register"},
    "dataset": {"kind": "synthetic", "n_users": 300, "n_items": 600, "n_interactions": 9000, "n_tags": 60,
                "n_clusters": 8, "random_state": 3},
    "split": {"kind": "per_user"},
    "components": {"ranker": {"iterations": 60, "early_stopping_rounds": 20},
                   "bpr": {"iterations": 20}, "als": {"iterations": 5}},
}


def fill_store(folder: Path) -> Any:
    """Run the demo pipeline twice (with register) into ``folder``; its config."""
    import yaml

    from encore.config.experiment import MachineSettings, load_config
    from encore.pipeline.runner import pipeline_components, run_pipeline

    path = folder / "demo.yaml"
    path.write_text(yaml.safe_dump(DEMO))
    settings = MachineSettings(_env_file=None, mlflow_tracking_uri=f"sqlite:///{folder / 'mlflow.db'}",
                               encore_output_dir=folder / "outputs", encore_data_dir=folder / "data")
    config = load_config(path, settings=settings)
    components = [*pipeline_components(config), "register"]
    run_pipeline(config, components, note="baseline")
    run_pipeline(config, components)
    return config


def shoot(config: Any, out: Path) -> list[Path]:
    """The five screenshots of a filled store; their paths."""
    import mlflow

    from encore.tracking.runs import MODELS_VIEW, UI_VIEW_QUERY, setup_tracking, tracking_uri, ui_url

    client = mlflow.MlflowClient(tracking_uri(config))
    experiment_id = setup_tracking(config)
    runs = client.search_runs([experiment_id], order_by=["attributes.start_time DESC"], max_results=200)
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
                and "ndcg_at_10" in r.data.metrics and r.data.tags["encore.component"] not in ("evaluate", "register")]
    children.sort(key=lambda r: (r.data.tags["encore.component"] != "ranker", -r.data.metrics["ndcg_at_10"]))
    compared = json.dumps([r.info.run_id for r in children[:6]])  # the ranker and the five best generators
    model = config.tracking.registered_model_name
    out.mkdir(parents=True, exist_ok=True)
    shots = []
    with mlflow_ui(tracking_uri(config)) as server, chromium_page({"width": 1500, "height": 860}) as page:
        url = server.wait()

        def save(name: str) -> None:
            page.wait_for_timeout(2500)  # charts and lazy cells settle
            path = out / f"mlflow_{name}.png"
            page.screenshot(path=str(path))
            shots.append(path)

        page.goto(ui_url(url, experiment_id))
        page.get_by_text(parent.info.run_name, exact=True).wait_for(timeout=TIMEOUT_MS)
        expand = page.locator("[role=row]", has=page.get_by_text(parent.info.run_name, exact=True)).locator("button")
        if expand.count():
            expand.first.click()  # the latest parent's component runs, each with its own ndcg_at_10
        save("runs_table")

        page.goto(ui_url(url, experiment_id, view=MODELS_VIEW))
        page.get_by_text("ranker", exact=True).first.wait_for(timeout=TIMEOUT_MS)
        save("models")

        page.goto(f"{url}/#/compare-runs?runs={compared}&experiments={json.dumps([experiment_id])}&{UI_VIEW_QUERY}")
        page.get_by_text("Run details").first.wait_for(timeout=TIMEOUT_MS)
        save("compare")

        page.goto(f"{url}/#/experiments/{experiment_id}/runs/{parent.info.run_id}?{UI_VIEW_QUERY}")
        page.get_by_text("uplift_vs_best_generator", exact=True).first.wait_for(timeout=TIMEOUT_MS)
        save("run_page")

        page.goto(f"{url}/#/models/{model}?{UI_VIEW_QUERY}")
        page.get_by_text("Version 1").first.wait_for(timeout=TIMEOUT_MS)
        save("registry")
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder of the PNGs (default {OUT})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory(prefix="encore-screenshots-") as folder:
        for path in shoot(fill_store(Path(folder)), args.out):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
