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

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from itest_support import (
    PG_ADMIN,
    PG_DB,
    PG_PASSWORD,
    PG_USER,
    S3,
    S3_BUCKET,
    S3_KEY,
    S3_PREFIX,
    S3_SECRET,
    MlflowServer,
    Postgres,
    as_pg_user,
    clean_env,
    free_port,
    pg_bin,
    stop_group,
    wait_for_port,
    write_env_file,
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """test_stop_leaves_no_orphans stops the session's server: run it after every other test."""
    last = [item for item in items if item.nodeid.endswith("test_mlflow_server.py::test_stop_leaves_no_orphans")]
    items[:] = [item for item in items if item not in last] + last


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """Start a private PostgreSQL cluster with role PG_USER / database PG_DB."""
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    prefix, user = as_pg_user()
    # /tmp, not pytest's tmp_path: that one sits below a root-only 0700 folder the
    # unprivileged postgres user cannot enter.
    base = Path(tempfile.mkdtemp(prefix="encore-pg-"))
    data, sock, log = base / "data", base / "sock", base / "postgres.log"
    data.mkdir(mode=0o700)
    sock.mkdir(mode=0o755)
    if user is not None:
        info = pwd.getpwnam(user)
        for path in (base, data, sock):
            os.chown(path, info.pw_uid, info.pw_gid)
    port = free_port()

    def run(cmd: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*prefix, *cmd], cwd=base, capture_output=True, text=True, timeout=timeout)

    # Socket logins (the fixture's admin) are trusted; TCP logins (MLflow) must use the password.
    auth = ["--auth-local=trust", "--auth-host=scram-sha-256"]
    result = run([initdb, "-D", str(data), "-U", PG_ADMIN, "-E", "UTF8", "--no-locale", "--no-sync", *auth])
    if result.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"initdb failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    options = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
    result = run([pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options, "start"])
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"pg_ctl start failed:\n{result.stdout}\n{result.stderr}\n{tail}")
    pg = Postgres(port, str(sock), PG_USER, PG_PASSWORD, PG_DB, PG_ADMIN)
    try:
        from psycopg2 import sql

        with contextlib.closing(pg.admin_connect()) as conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(PG_USER), sql.Literal(PG_PASSWORD))
            )
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(PG_DB), sql.Identifier(PG_USER)))
        yield pg
    finally:
        run([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "-t", "30", "stop"])
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    """moto_server on a free port, bucket S3_BUCKET created with boto3."""
    moto = Path(sys.executable).with_name("moto_server")
    if not moto.exists():
        found = shutil.which("moto_server")
        if not found:
            pytest.fail("moto_server not found: pip install 'moto[server]' (see requirements-dev.txt)")
        moto = Path(found)
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env(),
            start_new_session=True,
        )
    try:
        wait_for_port(port, 30, "moto_server", log)
        store = S3(f"http://127.0.0.1:{port}", S3_BUCKET, S3_PREFIX, S3_KEY, S3_SECRET)
        store.client().create_bucket(Bucket=S3_BUCKET)
        yield store
    finally:
        stop_group(proc)


@pytest.fixture(scope="session")
def mlflow_server(postgres: Postgres, s3: S3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """The MLflow server, started with start.sh and stopped with stop.sh at teardown."""
    base = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    env_file = write_env_file(base / "server.env", postgres, s3, port)
    server = MlflowServer(f"http://127.0.0.1:{port}", port, env_file, base / "run", postgres, s3)
    started = server.run_script("start.sh")
    if started.returncode != 0:
        server.run_script("stop.sh", timeout=60)
        pytest.fail(f"start.sh failed ({started.returncode}):\n{started.stdout}\n{started.stderr}")
    try:
        yield server
    finally:
        stopped = server.run_script("stop.sh", timeout=60)
        if stopped.returncode != 0:
            print(f"stop.sh failed at teardown:\n{stopped.stdout}\n{stopped.stderr}", file=sys.stderr)


@pytest.fixture(scope="session")
def toy_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny serving bundle: users u1 (10 ranked items) and u2 (3), 30 popular items."""
    from scripts.core.serving_model import write_bundle

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
