"""Session fixtures starting REAL services on free localhost ports, always cleaned up.

* ``postgres``: a throwaway PostgreSQL cluster (initdb + pg_ctl) with a role whose name and
  password hold ``@ : / # %`` characters. PostgreSQL refuses to run as root and CI runs as
  root, so the cluster is created and run as the ``postgres`` system user (``nobody`` when
  that user does not exist) through ``runuser``, in a /tmp folder chowned to that user.
* ``s3``: ``moto_server`` with the artifact bucket created through boto3.
* ``mlflow_server``: started by ``mlflow_server/start.sh`` from an ENV_FILE written here,
  stopped by ``mlflow_server/stop.sh`` at teardown.

Missing tools FAIL (with the install command) instead of skipping: CI installs PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.integration.itest_support import S3, MlflowServer, Postgres, mlflow_server_started, moto_s3, postgres_cluster


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """test_stop_leaves_no_orphans stops the session's server: run it after every other test."""
    last = [item for item in items if item.nodeid.endswith("test_mlflow_server.py::test_stop_leaves_no_orphans")]
    items[:] = [item for item in items if item not in last] + last


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A private PostgreSQL cluster with role PG_USER / database PG_DB."""
    with postgres_cluster() as cluster:
        yield cluster.pg


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    """moto_server on a free port, bucket S3_BUCKET created with boto3."""
    with moto_s3(tmp_path_factory.mktemp("moto")) as moto:
        yield moto.store


@pytest.fixture(scope="session")
def mlflow_server(postgres: Postgres, s3: S3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """The MLflow server, started with start.sh and stopped with stop.sh at teardown."""
    with mlflow_server_started(postgres, s3, tmp_path_factory.mktemp("mlflow_server")) as (server, _):
        yield server


@pytest.fixture(scope="session")
def toy_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny serving bundle: users u1 (10 ranked items) and u2 (3), 30 popular items."""
    from encore.serving.pyfunc import write_bundle

    items = [f"a{n}" for n in range(30)]
    recommendations = pd.DataFrame(
        {
            "user_id": ["u1"] * 10 + ["u2"] * 3,
            "item_id": [*items[10:20], "a0", "a25", "a1"],
            "rank": [*range(1, 11), 1, 2, 3],
            "score": [1.0 - 0.01 * r for r in range(10)] + [0.9, 0.8, 0.7],
        }
    )
    popular = pd.DataFrame({"item_id": items, "score": [float(1000 - n) for n in range(30)]})
    similar = pd.DataFrame(
        {
            "item_id": ["a0", "a0", "a0"],
            "similar_item_id": ["a5", "a6", "a7"],
            "score": [0.9, 0.8, 0.7],
            "rank": [1, 2, 3],
        }
    )
    names = pd.DataFrame({"item_id": items, "name": [f"Artist {n}" for n in range(30)]})
    return write_bundle(
        tmp_path_factory.mktemp("bundle") / "bundle",
        recommendations=recommendations,
        popular=popular,
        similar_items=similar,
        items=names,
    )
