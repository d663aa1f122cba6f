"""Helpers behind the integration fixtures (conftest.py): real PostgreSQL, S3 and MLflow server.

Everything runs on free localhost ports inside temporary folders and is always torn down.
Missing tools FAIL the session with the command that installs them: CI installs
PostgreSQL, so a skip would only hide a broken setup.

PostgreSQL refuses to run as root, and CI runs as root: the cluster is then created and
run as the ``postgres`` system user (or ``nobody`` when that user does not exist) through
``runuser``, in a temporary folder owned by that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_DIR = REPO_ROOT / "mlflow_server"

# Credentials with every character that breaks naive URI building (and a literal %2F that a
# double-decoding bug would turn into "/").
PG_USER = "encore@ml"
PG_PASSWORD = "En@c:o/r#e%2F pw"
PG_DB = "mlflow"
PG_ADMIN = "pgadmin"
S3_KEY = "testing"
S3_SECRET = "testing-secret"
S3_BUCKET = "encore-artifacts"
S3_PREFIX = "mlflow"

# No usage telemetry from anything these tests start (no network here anyway).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

#: Environment prefixes scrubbed from child processes so the test machine's own settings
#: (a developer's AWS keys, a real MLFLOW_TRACKING_URI ...) cannot leak into the tests.
_SCRUB_PREFIXES = ("AWS_", "POSTGRES_", "S3_", "MLFLOW_", "ENCORE_", "ENV_FILE", "RUN_DIR")


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without Encore/MLflow/AWS settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES)}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env.update(extra)
    return env


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float, what: str, log: Path | None = None) -> None:
    """Block until 127.0.0.1:port accepts connections or fail with the log tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    pytest.fail(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s\n{tail}")


def processes() -> list[tuple[int, int, str, str]]:
    """(pid, pgid, stat, args) of every process, from ps (no psutil dependency; -ww: never truncate args)."""
    out = subprocess.run(
        ["ps", "-ww", "-e", "-o", "pid=,pgid=,stat=,args="], capture_output=True, text=True, check=True
    ).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4:
            rows.append((int(parts[0]), int(parts[1]), parts[2], parts[3]))
    return rows


def live_group_members(pgid: int) -> list[str]:
    """Command lines of the non-zombie processes of a process group."""
    return [args for _, g, stat, args in processes() if g == pgid and not stat.startswith("Z")]


#: Command-line marks of MLflow's job runner (huey consumer), which Encore's server must not start.
JOB_RUNNER_MARKS = ("huey_consumer", "jobs._job_runner")


def server_leftovers(pgid: int, port: int) -> list[str]:
    """Live processes the server started with start.sh that are still around.

    Only the server's own process group and session (start.sh runs it under ``setsid``, so
    both ids equal the server's PID, and a child that called setpgid still shares the
    session), plus anything serving its port. Never every ``huey_consumer`` on the machine:
    a user's own ``mlflow ui`` elsewhere is not ours (issue #9, item 8).
    """
    out = subprocess.run(
        ["ps", "-ww", "-e", "-o", "pid=,pgid=,sid=,stat=,args="], capture_output=True, text=True, check=True
    ).stdout
    port_flag = f"--port {port}"
    leftovers = []
    for line in out.splitlines():
        parts = line.split(None, 4)
        if len(parts) != 5 or parts[3].startswith("Z"):
            continue
        group, session, args = int(parts[1]), int(parts[2]), parts[4]
        if group == pgid or session == pgid or port_flag in args:
            leftovers.append(args)
    return leftovers


# --------------------------------------------------------------------------- PostgreSQL


@dataclass(frozen=True)
class Postgres:
    """A throwaway cluster: TCP on 127.0.0.1:port (scram passwords), admin via the socket."""

    port: int
    socket_dir: str
    user: str
    password: str
    db: str
    admin: str

    def admin_connect(self, dbname: str = "postgres"):  # -> psycopg2 connection
        """Superuser connection over the unix socket (trust auth), autocommit."""
        import psycopg2

        conn = psycopg2.connect(host=self.socket_dir, port=self.port, user=self.admin, dbname=dbname)
        conn.autocommit = True
        return conn


def pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    if candidates:
        return str(candidates[-1])
    pytest.fail(
        f"PostgreSQL server binary '{name}' not found on PATH or under /usr/lib/postgresql/*/bin: "
        "install it with `apt-get install postgresql` (the integration tests need a real server)"
    )


def as_pg_user() -> tuple[list[str], str | None]:
    """Command prefix running a program as an unprivileged user (root only) and that user."""
    if os.geteuid() != 0:
        return [], None
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        runuser = shutil.which("runuser")
        if runuser:
            return [runuser, "-u", user, "--"], user
        su = shutil.which("su")
        if su:
            return [su, "-s", "/bin/sh", user, "-c", '"$0" "$@"', "--"], user
    pytest.fail("running as root but found neither the 'postgres' nor the 'nobody' user to run initdb as")


# --------------------------------------------------------------------------- S3 (moto)


@dataclass(frozen=True)
class S3:
    """A moto_server endpoint with the artifact bucket created."""

    endpoint: str
    bucket: str
    prefix: str
    key: str
    secret: str

    def client(self):  # -> boto3 S3 client
        """boto3 client with explicit credentials (nothing taken from the environment)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
            region_name="us-east-1",
        )

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key under ``prefix``."""
        paginator = self.client().get_paginator("list_objects_v2")
        return [
            obj["Key"]
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
        ]


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


# --------------------------------------------------------------------------- MLflow server


@dataclass(frozen=True)
class MlflowServer:
    """The server started by mlflow_server/start.sh."""

    url: str
    port: int
    env_file: Path
    run_dir: Path
    postgres: Postgres
    s3: S3

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "server.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "server.log"

    def script_env(self, **extra: str) -> dict[str, str]:
        """Environment for start.sh / stop.sh / clean.sh: settings come only from ENV_FILE."""
        base = {"ENV_FILE": str(self.env_file), "RUN_DIR": str(self.run_dir), "PYTHON": sys.executable}
        return clean_env(**{**base, **extra})

    def run_script(self, name: str, *args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
        """Run one of mlflow_server/*.sh and return the completed process."""
        return subprocess.run(
            [str(SERVER_DIR / name), *args],
            env=self.script_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO_ROOT,
        )


def write_env_file(path: Path, pg: Postgres, store: S3, mlflow_port: int, **overrides: str) -> Path:
    """A .env as a user would write it; the password single-quoted (it holds ' #')."""
    values = {
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": str(pg.port),
        "POSTGRES_DB": pg.db,
        "POSTGRES_USER": pg.user,
        "POSTGRES_PASSWORD": f"'{pg.password}'",
        "S3_BUCKET": store.bucket,
        "S3_PREFIX": store.prefix,
        "MLFLOW_S3_ENDPOINT_URL": store.endpoint,
        "AWS_ACCESS_KEY_ID": store.key,
        "AWS_SECRET_ACCESS_KEY": store.secret,
        "AWS_DEFAULT_REGION": "us-east-1",
        "MLFLOW_HOST": "127.0.0.1",
        "MLFLOW_PORT": str(mlflow_port),
        "MLFLOW_WORKERS": "2",  # several worker processes, so stop.sh must take them all down
    }
    values.update(overrides)
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


@contextlib.contextmanager
def tracking_uri(uri: str) -> Iterator[None]:
    """Point the fluent mlflow API at ``uri`` and restore the previous setting afterwards."""
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved_uri = tracking_utils._tracking_uri
    saved_env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved_uri)
        if saved_env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env


# --------------------------------------------------------------------------- toy model


def run_python(code: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (repo root as cwd) and return the result."""
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT
    )


def http_ok(url: str) -> bool:
    """True when GET url answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status == 200
    except OSError:
        return False


# --------------------------------------------------------------------------- services as context managers


@dataclass
class PostgresCluster:
    """A running throwaway cluster and how to stop and start it again (same port, same data)."""

    pg: Postgres
    base: Path
    data: Path
    log: Path
    options: str
    prefix: list[str]

    def pg_ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix, pg_bin("pg_ctl"), "-D", str(self.data), *args], cwd=self.base,
                              capture_output=True, text=True, timeout=timeout)

    def stop(self) -> None:
        done = self.pg_ctl("-m", "fast", "-w", "-t", "60", "stop")
        assert done.returncode == 0, done.stderr

    def start(self) -> None:
        done = self.pg_ctl("-l", str(self.log), "-w", "-t", "60", "-o", self.options, "start")
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """Start a private PostgreSQL cluster (initdb + pg_ctl) with role PG_USER / database PG_DB.

    PostgreSQL refuses to run as root: as root, the cluster is created and run as the
    ``postgres`` system user (``nobody`` without it), in a /tmp folder chowned to that user.
    """
    from psycopg2 import sql

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
    cluster = PostgresCluster(Postgres(port, str(sock), PG_USER, PG_PASSWORD, PG_DB, PG_ADMIN), base, data, log,
                              f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off", prefix)
    # Socket logins (the fixture's admin) are trusted; TCP logins (MLflow) must use the password.
    auth = ["--auth-local=trust", "--auth-host=scram-sha-256"]
    result = subprocess.run([*prefix, pg_bin("initdb"), "-D", str(data), "-U", PG_ADMIN, "-E", "UTF8", "--no-locale",
                             "--no-sync", *auth], cwd=base, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"initdb failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    try:
        try:
            cluster.start()
        except AssertionError as exc:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            pytest.fail(f"pg_ctl start failed:\n{exc}\n{tail}")
        pg = cluster.pg
        with contextlib.closing(pg.admin_connect()) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(PG_USER),
                                                                           sql.Literal(PG_PASSWORD)))
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(PG_DB), sql.Identifier(PG_USER)))
        yield cluster
    finally:
        cluster.pg_ctl("-m", "immediate", "-w", "-t", "30", "stop")
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class MotoS3:
    """A running moto_server and how to stop and start it again on the same port."""

    store: S3
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        moto = Path(sys.executable).with_name("moto_server")
        if not moto.exists():
            found = shutil.which("moto_server")
            if not found:
                pytest.fail("moto_server not found: pip install 'moto[server]' (see requirements-dev.txt)")
            moto = Path(found)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(self.port)], stdout=out,
                                         stderr=subprocess.STDOUT, env=clean_env(), start_new_session=True)
        wait_for_port(self.port, 30, "moto_server", self.log)
        self.store.client().create_bucket(Bucket=self.store.bucket)  # moto keeps objects in memory only

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)
            self.proc = None


@contextlib.contextmanager
def moto_s3(log_dir: Path) -> Iterator[MotoS3]:
    """moto_server on a free port with bucket S3_BUCKET created through boto3."""
    port = free_port()
    moto = MotoS3(S3(f"http://127.0.0.1:{port}", S3_BUCKET, S3_PREFIX, S3_KEY, S3_SECRET), port, log_dir / "moto.log")
    moto.start()
    try:
        yield moto
    finally:
        moto.stop()


@contextlib.contextmanager
def mlflow_server_started(pg: Postgres, store: S3, base: Path, *, env_writer: Callable[..., Path] | None = None,
                          **env_overrides: str) -> Iterator[tuple[MlflowServer, str]]:
    """The MLflow server, started with start.sh and stopped with stop.sh afterwards; yields it
    and start.sh's output. ``env_writer(path, pg, store, port, **env_overrides)`` writes its
    settings file (default :func:`write_env_file`)."""
    port = free_port()
    env_file = (env_writer or write_env_file)(base / "server.env", pg, store, port, **env_overrides)
    server = MlflowServer(f"http://127.0.0.1:{port}", port, env_file, base / "run", pg, store)
    started = server.run_script("start.sh")
    if started.returncode != 0:
        server.run_script("stop.sh", timeout=60)
        pytest.fail(f"start.sh failed ({started.returncode}):\n{started.stdout}\n{started.stderr}")
    try:
        yield server, started.stdout + started.stderr
    finally:
        stopped = server.run_script("stop.sh", timeout=60)
        if stopped.returncode != 0:
            print(f"stop.sh failed at teardown:\n{stopped.stdout}\n{stopped.stderr}", file=sys.stderr)
