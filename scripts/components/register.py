"""register: log the ranker's serving model and register it with alias ``challenger``.

In the pipeline (``run.sh --components ...,register``) this logs the ranker's bundle as a
models-from-code pyfunc in the register run, with the test metric, its per-user values
(for paired comparisons at promotion) and the dataset/split tags, then registers it as a
new version of ``tracking.registered_model_name`` and points ``challenger`` at it.

Alone, it registers the model of any run::

    python -m scripts.components.register --run-id RUN_ID --model-name encore-ranker

The tracking URI comes from ``--tracking-uri`` or ``MLFLOW_TRACKING_URI``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import mlflow
import pandas as pd
from mlflow import MlflowClient

from scripts.components.evaluate import PER_USER_FILE as EVALUATE_PER_USER_FILE
from scripts.core.config import EncoreConfig
from scripts.core.io import read_json, write_json, write_parquet
from scripts.core.registry import CHALLENGER, SIGNIFICANCE_TAG, register_run_model
from scripts.core.serving_model import log_serving_model
from scripts.core.tracking import cli_client, metric_key
from scripts.pipeline.component import Context, Result

NAME = "register"
DEPENDS_ON = ("ranker", "evaluate")
REUSABLE = False  # every call registers a new version
PER_USER_FILE = "per_user_metric.parquet"


def run(config: EncoreConfig, ctx: Context) -> Result:
    primary = config.evaluation.primary_metric
    ranker_metrics = read_json(ctx.inputs["ranker"] / "metrics.json")
    significance = read_json(ctx.inputs["evaluate"] / "significance.json")
    # The ranker's per-user values (from evaluate) travel with the model, so promotion can pair
    # this run with the champion's.
    per_user = pd.read_parquet(ctx.inputs["evaluate"] / EVALUATE_PER_USER_FILE, columns=["user_id", "ranker"])
    write_parquet(per_user.rename(columns={"ranker": "value"}), ctx.output / PER_USER_FILE)

    info = log_serving_model(ctx.inputs["ranker"] / "bundle", k=min(10, config.components.ranker.top_k))
    run_id = mlflow.active_run().info.run_id
    version = register_run_model(run_id, config.tracking.registered_model_name, client=MlflowClient())
    vs_best = significance.get("vs_best_generator", {})
    tags = {f"{SIGNIFICANCE_TAG}.vs_best_generator": json.dumps(vs_best)} if vs_best else {}
    write_json(ctx.output / "registered.json", {"model_name": config.tracking.registered_model_name,
                                                "version": version.version, "run_id": run_id,
                                                "model_uri": info.model_uri})
    return Result(metrics={primary: ranker_metrics[primary]}, artifacts=[PER_USER_FILE, "registered.json"],
                  tags=tags | {"encore.registered_version": str(version.version),
                               "encore.primary_metric": metric_key(primary)})


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: register and print the new version."""
    parser = argparse.ArgumentParser(prog="python -m scripts.components.register", description=__doc__.split("\n")[0])
    parser.add_argument("--run-id", required=True, help="run that logged the model")
    parser.add_argument("--model-name", required=True, help="registered model name")
    parser.add_argument("--artifact-path", default="model", help="name the model was logged under (default model)")
    parser.add_argument("--alias", default=CHALLENGER, help=f"alias to set (default {CHALLENGER}; '' for none)")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else the local store mlruns/mlflow.db")
    args = parser.parse_args(argv)

    client = cli_client(args.tracking_uri)
    version = register_run_model(
        args.run_id, args.model_name, client=client, artifact_path=args.artifact_path, alias=args.alias
    )
    alias_note = f", alias '{args.alias}'" if args.alias else ""
    print(f"registered {args.model_name} version {version.version} from run {args.run_id}{alias_note}")
    print(f"load it with: mlflow.pyfunc.load_model('models:/{args.model_name}/{version.version}')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
