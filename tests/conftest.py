"""Shared fixtures: isolated output folders and MLflow stores, the real Last.fm 2K folder."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

from encore.config.experiment import EncoreConfig, MachineSettings, load_config
from encore.outputs import EvaluateOutput, RankerOutput, RegisterOutput
from tests.markers import (  # noqa: F401 (hooks: markers by folder/fixture/source, and their runtime guard)
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_runtest_makereport,
    pytest_runtest_protocol,
)
from tests.paths import LASTFM2K_DIR, REPO_ROOT  # noqa: F401 (imported by tests from here)

TINY_SYNTHETIC = {
    "experiment": {"name": "tiny", "seed": 3},
    "dataset": {"kind": "synthetic", "n_users": 300, "n_items": 600, "n_interactions": 9000, "n_tags": 60,
                "n_clusters": 8, "random_state": 3},
    "split": {"kind": "per_user"},
    "components": {"ranker": {"iterations": 60, "early_stopping_rounds": 20},
                   "bpr": {"iterations": 20}, "als": {"iterations": 5}},
}


@pytest.fixture(scope="session")
def lastfm2k_dir() -> Path:
    """The real dataset; a missing folder fails the test (CI must never skip real-data tests)."""
    assert (LASTFM2K_DIR / "user_artists.dat").is_file(), (
        f"HetRec 2011 Last.fm 2K not found at {LASTFM2K_DIR}: set ENCORE_LASTFM2K_DIR to the unzipped "
        "hetrec2011-lastfm-2k folder (see docs/data.md, 'Data')"
    )
    return LASTFM2K_DIR


def make_config(tmp_path: Path, experiment: dict, overrides: list[str] | None = None) -> EncoreConfig:
    """A config whose outputs and MLflow store live in ``tmp_path``."""
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(experiment))
    settings = MachineSettings(_env_file=None, mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                               encore_output_dir=tmp_path / "outputs", encore_data_dir=tmp_path / "data")
    return load_config(path, overrides, settings=settings)


@pytest.fixture
def tiny_config(tmp_path: Path) -> EncoreConfig:
    return make_config(tmp_path, TINY_SYNTHETIC)


def ran_pipeline(factory: pytest.TempPathFactory, folder: str, experiment: dict) -> EncoreConfig:
    """The config of ``experiment`` after its whole pipeline ran in a fresh folder (module fixtures)."""
    from encore.pipeline.runner import run_pipeline

    config = make_config(factory.mktemp(folder), experiment)
    run_pipeline(config, note=folder)
    return config


RERANK_EXPERIMENT = TINY_SYNTHETIC | {
    "split": {"kind": "time", "target_start": 0.6, "test_start": 0.8},
    "components": TINY_SYNTHETIC["components"] | {
        "ranker": {"iterations": 30},
        # Fewer instances: the re-ranking, not the generators, is under test.
        **{name: {"enabled": False} for name in ("bpr", "itemknn", "friends", "userknn", "als128", "als32", "bpr128",
                                                  "ease500", "knncos")},
        "rerank": {"enabled": True, "lambdas": [1.0, 0.3], "freshness_boosts": [0.0, 0.5],
                   "exposure_ms": [0, 2], "popularity_penalties": [0.0, 0.5], "content_weights": [0.0, 0.5],
                   # One value each (the grid stays 2^5): the served lists must reproduce the cap's
                   # refusals (0.1 binds on the tiny data), the fill's promotions (weighed by the
                   # ranker's probabilities) and the new items placed by rank.
                   "exposure_caps": [0.1], "content_max_ranks": [3], "content_min_ranks": [2],
                   "coverage_slots": [2], "coverage_active_days": [60.0], "coverage_costs": ["chance"],
                   "objective": ["catalog_coverage", "diversity"], "match_content_on_cold_items": True}},
}


@pytest.fixture(scope="session")
def reranked_run(tmp_path_factory: pytest.TempPathFactory) -> EncoreConfig:
    """A tiny time-split pipeline with ``rerank`` on, a rejections file and a block list, through
    ``register`` (tests/components/test_rerank.py, tests/serving/test_rerank_serving.py)."""
    from encore.data.prepared import PreparedData
    from encore.outputs import RankerOutput
    from encore.pipeline.runner import output_dir, pipeline_components, run_pipeline

    folder = tmp_path_factory.mktemp("rerank")
    # The ranker's lists are known only after it ran: run up to it, then reject and block items
    # it recommends, then run the rest (rerank reads the file: its key holds the content).
    first = make_config(folder, RERANK_EXPERIMENT)
    upstream = pipeline_components(first)
    run_pipeline(first, list(upstream[:upstream.index("ranker") + 1]), note="rerank-ranker")
    ranked = RankerOutput(output_dir(first, "ranker")).recommendations()
    prepared = PreparedData(output_dir(first, "prepare"))
    top = ranked[ranked["rank"] <= 3]
    users, items = prepared.users["raw_id"].to_numpy(), prepared.items["raw_id"].to_numpy()
    rejected = pd.DataFrame({"user": users[top["user"].to_numpy()], "item": items[top["item"].to_numpy()]})
    rejected.to_csv(folder / "rejections.csv", index=False)
    blocked = str(items[ranked["item"].value_counts().index[0]])
    components = RERANK_EXPERIMENT["components"]
    experiment = RERANK_EXPERIMENT | {"components": components | {
        "rerank": components["rerank"] | {"rejections_file": str(folder / "rejections.csv"), "block_list": [blocked]}}}
    config = make_config(folder, experiment)
    run_pipeline(config, [*pipeline_components(config), "register"], note="rerank")
    return config


@contextlib.contextmanager
def local_http_server(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    """A threaded HTTP server with ``handler`` on a free loopback port (yielded), shut down after."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


# The cheapest pipeline that registers a model: two generators, a short ranker (~45 s on 2 cores).
CHEAP_REGISTERED = [*[f"components.{name}.enabled=false" for name in
                      ("bpr", "item2item", "itemknn", "friends", "ease", "userknn", "als128", "als32", "bpr128",
                       "ease500", "knncos")],
                    "components.ranker.similar_items_from=als", "components.ranker.iterations=30",
                    "evaluation.n_bootstrap=200"]


@dataclass(frozen=True)
class TinyRegistry:
    """A store holding one finished pipeline run (note ``tiny-registry``) that registered and
    promoted its ranker as version 1 of ``name``."""

    uri: str
    name: str
    run_id: str
    tmp: Path
    evaluate: EvaluateOutput
    ranker: RankerOutput
    prepare: Path


@pytest.fixture(scope="session")
def tiny_registry(tmp_path_factory: pytest.TempPathFactory) -> TinyRegistry:
    """Shared by the registry and notebook tests: the pipeline runs once per session."""
    from encore.pipeline.runner import output_dir, run_pipeline

    tmp = tmp_path_factory.mktemp("registry")
    config = make_config(tmp, TINY_SYNTHETIC, CHEAP_REGISTERED)
    run_pipeline(config, ["prepare", "popular", "als", "ranker", "evaluate", "register", "promote"],
                 note="tiny-registry")
    registered = RegisterOutput(output_dir(config, "register")).registered()
    return TinyRegistry(config.tracking.tracking_uri, registered["model_name"], registered["run_id"], tmp,
                        EvaluateOutput(output_dir(config, "evaluate")), RankerOutput(output_dir(config, "ranker")),
                        output_dir(config, "prepare"))


@pytest.fixture(scope="session")
def spark_cluster() -> Iterator[object]:
    """A real Spark standalone cluster for the session: a master and two 1-core / 1g workers on
    127.0.0.1 free ports, returned once both are registered; every process stopped afterwards.
    A test that kills a worker restarts it (``start_worker``) before it ends."""
    from encore.data.spark_cluster import StandaloneCluster

    with StandaloneCluster(n_workers=2, cores=1, memory="1g") as cluster:
        yield cluster


SPARK_COMPONENTS = ["prepare", "popular", "als_spark", "ranker", "evaluate"]
SPARK_EXPERIMENT = TINY_SYNTHETIC | {"components": {
    **{name: {"enabled": False} for name in ("als", "bpr", "item2item", "itemknn", "friends", "ease", "userknn",
                                             "als128", "als32", "bpr128", "ease500", "knncos")},
    "als_spark": {"kind": "als_spark", "factors": 16, "iterations": 5, "blocks": 2, "num_threads": 1,
                  "block_users": 128},
    "ranker": {"iterations": 30, "similar_items_from": "als_spark", "fallback": "popular"}},
    "evaluation": {"n_bootstrap": 200}}
"""The Spark tests' one pipeline: tiny synthetic data, MLlib's ALS (5 iterations, user blocks of 128: several
executor blocks), the ranker and evaluate."""


def spark_experiment(experiment: dict) -> dict:
    """``experiment`` with the ranking stage and evaluate on Spark (``engine: spark``)."""
    components = experiment["components"]
    return experiment | {"components": components | {"ranker": components["ranker"] | {"engine": "spark"}},
                         "evaluation": experiment["evaluation"] | {"engine": "spark"}}


@dataclass
class SparkRuns:
    """Configs of :func:`spark_runs`' three pipelines (their outputs are on disk)."""

    pandas: EncoreConfig
    cluster: EncoreConfig
    local: EncoreConfig


@pytest.fixture(scope="session")
def spark_runs(tmp_path_factory: pytest.TempPathFactory, spark_cluster: object) -> SparkRuns:
    """``prepare + popular + als_spark + ranker + evaluate`` on the session's cluster with the pandas
    ranking stage and evaluation, then the same pipeline with both on Spark (the runner reuses prepare
    and the generators: same candidates, same trained model), then the whole Spark pipeline again from
    scratch on ``local[2]``. Shared by the ``als_spark`` and the Spark ranking-stage tests (one set of
    MLlib fits for both)."""
    from benchmarks.spark import cluster_settings, session_on
    from encore.data.spark_session import SparkSettings
    from encore.pipeline.runner import run_pipeline

    base = SparkSettings(driver_memory="1g", shuffle_partitions=2,
                         conf={"spark.ui.enabled": False, "spark.ui.showConsoleProgress": False})
    folder = tmp_path_factory.mktemp("spark_runs")
    runs = SparkRuns(make_config(folder, SPARK_EXPERIMENT), make_config(folder, spark_experiment(SPARK_EXPERIMENT)),
                     make_config(tmp_path_factory.mktemp("spark_runs_local"), spark_experiment(SPARK_EXPERIMENT)))
    with session_on(spark_cluster.master_url, cluster_settings(base)):  # type: ignore[attr-defined]
        run_pipeline(runs.pandas, SPARK_COMPONENTS, note="pandas stage")
        run_pipeline(runs.cluster, SPARK_COMPONENTS, note="spark stage")
    with session_on("local[2]", base):
        run_pipeline(runs.local, SPARK_COMPONENTS, note="spark stage, local")
    return runs
