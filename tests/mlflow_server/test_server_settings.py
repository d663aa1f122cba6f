"""Fast tests of the server configuration (no services, no subprocesses)."""

from __future__ import annotations

import base64
import http.server
import shlex
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow.environment_variables as mlflow_env
import pytest
from sqlalchemy.engine import make_url

from encore.config.envfile import REPO_ROOT
from encore.config.validation import ConfigError
from encore.mlflow_server import cli
from encore.mlflow_server import settings as server_settings
from encore.mlflow_server.preflight import auth_findings, preflight, validate_server_args
from encore.mlflow_server.settings import (
    ServerConfigError,
    ServerSettings,
    artifacts_destination,
    auth_enabled,
    backend_store_uri,
    load_settings,
    missing_keys,
    shell_exports,
)
from encore.tracking import client as tracking_client
from encore.tracking.client import (
    TrackingServerUnreachable,
    check_tracking_server,
    client_fail_fast_env,
    mask,
    mask_uri,
    redact,
)
from tests.conftest import local_http_server

NASTY = "p@ss:w/rd#%2F 1?&="
SERVER_KEYS = (
    "POSTGRES_HOST",
    "POSTGRES_PORT",
    "POSTGRES_DB",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "S3_BUCKET",
    "S3_PREFIX",
    "MLFLOW_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "MLFLOW_DEFAULT_ARTIFACT_ROOT",
    "MLFLOW_PORT",
    "ENV_FILE",
    *tracking_client.CLIENT_FAIL_FAST_DEFAULTS,
)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No server setting leaks in from the developer's shell."""
    for key in SERVER_KEYS:
        monkeypatch.delenv(key, raising=False)


def settings(**values: object) -> ServerSettings:
    base: dict[str, object] = {
        "postgres_host": "db.internal",
        "postgres_port": 5433,
        "postgres_db": "mlflow",
        "postgres_user": "encore",
        "postgres_password": "secret",
        "s3_bucket": "bucket",
    }
    base.update(values)
    return ServerSettings(_env_file=None, **base)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- URIs


def test_backend_store_uri_percent_encodes_user_and_password() -> None:
    uri = backend_store_uri(settings(postgres_user="enc@re:x", postgres_password=NASTY))
    assert uri.startswith("postgresql+psycopg2://enc%40re%3Ax:")
    assert "p@ss" not in uri and "#" not in uri and " " not in uri
    parsed = make_url(uri)  # what SQLAlchemy (and so MLflow) will see
    assert parsed.username == "enc@re:x"
    assert parsed.password == NASTY  # "%2F" stays literal: no double decoding
    assert (parsed.host, parsed.port, parsed.database) == ("db.internal", 5433, "mlflow")
    assert parsed.drivername == "postgresql+psycopg2"


def test_backend_store_uri_brackets_ipv6_and_requires_keys() -> None:
    assert "@[::1]:5433/" in backend_store_uri(settings(postgres_host="::1"))
    with pytest.raises(ServerConfigError, match="POSTGRES_HOST"):
        backend_store_uri(settings(postgres_host=""))


@pytest.mark.parametrize(
    ("bucket", "prefix", "expected"),
    [
        ("bucket", "mlflow", "s3://bucket/mlflow"),
        ("bucket", "/team/mlflow/", "s3://bucket/team/mlflow"),
        ("bucket", "", "s3://bucket"),
        ("s3://bucket/", "x", "s3://bucket/x"),
    ],
)
def test_artifacts_destination(bucket: str, prefix: str, expected: str) -> None:
    assert artifacts_destination(settings(s3_bucket=bucket, s3_prefix=prefix)) == expected


def test_artifacts_destination_requires_bucket() -> None:
    with pytest.raises(ServerConfigError, match="S3_BUCKET"):
        artifacts_destination(settings(s3_bucket=""))


# ------------------------------------------------------------------------------- masking


def test_mask_never_reveals_length_or_prefix() -> None:
    assert mask("a") == mask("a much longer secret") == "****"
    assert mask("") == ""


def test_mask_uri_hides_only_the_password() -> None:
    uri = backend_store_uri(settings(postgres_password=NASTY))
    masked = mask_uri(uri)
    assert masked == "postgresql+psycopg2://encore:****@db.internal:5433/mlflow"
    assert mask_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_redact_removes_raw_and_encoded_secret() -> None:
    text = f"failed for {NASTY} and {backend_store_uri(settings(postgres_password=NASTY))}"
    cleaned = redact(text, [NASTY])
    assert NASTY not in cleaned and "p%40ss" not in cleaned
    assert cleaned.count("****") == 2


def test_describe_and_repr_do_not_leak_secrets() -> None:
    s = settings(postgres_password=NASTY, aws_secret_access_key="aws-secret-value")
    rendered = repr(s) + str(server_settings.describe(s))
    assert NASTY not in rendered and "aws-secret-value" not in rendered


def test_shell_exports_quote_secrets_safely() -> None:
    s = settings(postgres_password="it's $HOME `x`", aws_access_key_id="key", aws_secret_access_key="s3cr t")
    lines = shell_exports(s).splitlines()
    parsed = dict(shlex.split(line)[1].split("=", 1) for line in lines)
    assert make_url(parsed["MLFLOW_BACKEND_STORE_URI"]).password == "it's $HOME `x`"
    assert parsed["AWS_SECRET_ACCESS_KEY"] == "s3cr t"
    assert parsed["ENCORE_ARTIFACTS_DESTINATION"] == "s3://bucket/mlflow"
    assert "****" in parsed["ENCORE_BACKEND_STORE_URI_MASKED"]


# ------------------------------------------------------------------------------- server args


@pytest.mark.parametrize(
    "args",
    [
        ["--default-artifact-root", "s3://bucket/direct"],
        ["--default-artifact-root=s3://bucket/direct"],
        ["--allowed-hosts", "x", "--default-artifact-root", "/tmp/a"],
    ],
)
def test_default_artifact_root_is_refused(args: list[str]) -> None:
    with pytest.raises(ServerConfigError, match="--default-artifact-root must not be combined with --serve-artifacts"):
        validate_server_args(args, environ={})


def test_default_artifact_root_env_var_is_refused() -> None:
    # `mlflow server` reads MLFLOW_DEFAULT_ARTIFACT_ROOT as --default-artifact-root.
    with pytest.raises(ServerConfigError, match="MLFLOW_DEFAULT_ARTIFACT_ROOT"):
        validate_server_args([], environ={"MLFLOW_DEFAULT_ARTIFACT_ROOT": "s3://x"})


def test_harmless_server_args_pass() -> None:
    validate_server_args(["--allowed-hosts", "mlflow.example.com", "--expose-prometheus", "/tmp/p"], environ={})


def test_start_script_never_passes_default_artifact_root() -> None:
    script = (REPO_ROOT / "mlflow_server" / "start.sh").read_text()
    command = script[script.index("setsid") :]
    assert "--serve-artifacts" in command and "--artifacts-destination" in command
    assert "--default-artifact-root" not in command


def test_check_cli_refuses_default_artifact_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("")  # nothing configured: no database or S3 probe happens
    code = cli.main(["--env-file", str(env_file), "check", "--", "--default-artifact-root", "s3://b/x"])
    out = capsys.readouterr().out
    assert code == 1
    assert "refusing --default-artifact-root" in out
    for key in server_settings.REQUIRED_KEYS:
        assert f"{key} is not set" in out


# ------------------------------------------------------------------------------- settings


def test_settings_precedence_env_over_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text(
        "POSTGRES_HOST=from-file\nPOSTGRES_USER=file-user\n"
        f"POSTGRES_PASSWORD='{NASTY}'\nS3_BUCKET=file-bucket\nMLFLOW_PORT=5001\n"
    )
    monkeypatch.setenv("POSTGRES_HOST", "from-env")
    monkeypatch.setenv("S3_BUCKET", "")  # empty in the environment must not blank the file value
    monkeypatch.setenv("ENV_FILE", str(env_file))  # how the shell scripts pick the file
    s = load_settings()
    assert s.postgres_host == "from-env"
    assert s.postgres_user == "file-user"
    assert s.postgres_password.get_secret_value() == NASTY  # quoted ' #' survives .env parsing
    assert s.s3_bucket == "file-bucket"
    assert s.mlflow_port == 5001
    assert load_settings(env_file).postgres_host == "from-env"  # explicit path, env still wins


def test_missing_keys_named_one_by_one(tmp_path: Path) -> None:
    s = load_settings(tmp_path / "absent.env")  # a missing file is not an error
    assert missing_keys(s) == list(server_settings.REQUIRED_KEYS)
    findings = preflight(s, environ={})
    errors = [f.message for f in findings if f.level == "error"]
    assert errors == [f"{key} is not set (see .env_template)" for key in server_settings.REQUIRED_KEYS]


def test_non_aws_keys_without_endpoint_warn() -> None:
    s = settings(postgres_host="", s3_bucket="", aws_access_key_id="minioadmin")
    warnings = [f.message for f in preflight(s, environ={}) if f.level == "warning"]
    assert len(warnings) == 1 and "MLFLOW_S3_ENDPOINT_URL is not set" in warnings[0]
    real = settings(postgres_host="", s3_bucket="", aws_access_key_id="AKIAABCDEFGHIJKLMNOP")
    assert not [f for f in preflight(real, environ={}) if f.level == "warning"]


def test_endpoint_without_keys_is_an_error() -> None:
    s = settings(postgres_host="", s3_bucket="", mlflow_s3_endpoint_url="http://127.0.0.1:9000")
    errors = [f.message for f in preflight(s, environ={}) if f.level == "error"]
    assert any("AWS_ACCESS_KEY_ID is not set" in e for e in errors)


# ------------------------------------------------------------------------------- client side


def test_fail_fast_env_names_exist_in_mlflow() -> None:
    env = client_fail_fast_env(environ={}, env_file=Path("/nonexistent/.env"))
    for name in env:
        assert getattr(mlflow_env, name).name == name
    assert int(env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) <= 3
    assert int(env["MLFLOW_HTTP_REQUEST_TIMEOUT"]) <= 60


def test_fail_fast_env_precedence(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("MLFLOW_HTTP_REQUEST_MAX_RETRIES=5\nMLFLOW_HTTP_REQUEST_TIMEOUT=9\n")
    env = client_fail_fast_env(env_file=env_file, environ={"MLFLOW_HTTP_REQUEST_TIMEOUT": "4"})
    assert env["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "4"  # environment first
    assert env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"  # then the .env file
    assert (
        env["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"]
        == tracking_client.CLIENT_FAIL_FAST_DEFAULTS["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"]
    )


def test_check_tracking_server_fails_fast_on_closed_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        start = time.monotonic()
        with pytest.raises(TrackingServerUnreachable) as info:
            check_tracking_server(f"http://127.0.0.1:{port}", timeout=2)
    assert time.monotonic() - start < 3
    message = str(info.value)
    assert f"MLflow server at http://127.0.0.1:{port} is not reachable" in message
    assert "mlflow_server/start.sh" in message and "unset MLFLOW_TRACKING_URI" in message


class _BasicAuthHandler(http.server.BaseHTTPRequestHandler):
    """/health open; /api/2.0/mlflow/users/current wants basic auth alice:s3cret (a basic-auth server)."""

    def do_GET(self) -> None:
        expected = "Basic " + base64.b64encode(b"alice:s3cret").decode()
        if self.path == "/health":
            code = 200
        elif self.path == "/api/2.0/mlflow/users/current":
            code = 200 if self.headers.get("Authorization") == expected else 401
        else:
            code = 404
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def basic_auth_server() -> Iterator[str]:
    with local_http_server(_BasicAuthHandler) as port:
        yield f"127.0.0.1:{port}"


def test_check_tracking_server_accepts_credentials_in_uri_or_environment(basic_auth_server: str) -> None:
    """Issue #9 item 6: ``http://user:pw@host:port`` failed with 'Name or service not known'."""
    check_tracking_server(f"http://alice:s3cret@{basic_auth_server}", timeout=2, environ={})
    check_tracking_server(f"http://{basic_auth_server}", timeout=2,
                          environ={"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "s3cret"})
    # percent-encoded userinfo is decoded before it is sent
    with pytest.raises(tracking_client.TrackingServerAuthError) as info:
        check_tracking_server(f"http://alice:wr%40ng@{basic_auth_server}", timeout=2, environ={})
    assert "refused user 'alice'" in str(info.value) and "wr%40ng" not in str(info.value)
    assert "wr@ng" not in str(info.value) and "alice:****@" in str(info.value)
    with pytest.raises(tracking_client.TrackingServerAuthError, match="requires authentication"):
        check_tracking_server(f"http://{basic_auth_server}", timeout=2, environ={})


def test_client_env_reads_credentials_and_refuses_insecure_tls(tmp_path: Path) -> None:
    env_file = tmp_path / "client.env"
    env_file.write_text("MLFLOW_TRACKING_USERNAME=bob\nMLFLOW_TRACKING_PASSWORD='p #w'\n"
                        "MLFLOW_TRACKING_SERVER_CERT_PATH=/etc/ca.pem\n")
    env = tracking_client.client_env(env_file, environ={"MLFLOW_TRACKING_USERNAME": "carol"})
    assert env["MLFLOW_TRACKING_USERNAME"] == "carol"  # the environment wins
    assert env["MLFLOW_TRACKING_PASSWORD"] == "p #w"
    assert env["MLFLOW_TRACKING_SERVER_CERT_PATH"] == "/etc/ca.pem"
    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_INSECURE_TLS"):
        tracking_client.client_env(env_file, environ={"MLFLOW_TRACKING_INSECURE_TLS": "true"})


def test_network_bind_needs_auth_unless_overridden() -> None:
    open_net = ServerSettings(mlflow_host="0.0.0.0", encore_server_auth="off")
    assert [f.level for f in auth_findings(open_net)] == ["error"]
    assert auth_findings(open_net.model_copy(update={"encore_allow_unauthenticated_network": True})) == []
    auto = ServerSettings(mlflow_host="0.0.0.0", encore_auth_admin_password="short")
    assert auth_enabled(auto) and not auth_enabled(ServerSettings(mlflow_host="127.0.0.1"))
    messages = [f.message for f in auth_findings(auto, ["--allowed-hosts", "mlflow.example.com"])]
    assert messages == ["ENCORE_AUTH_ADMIN_PASSWORD is shorter than 12 characters: MLflow refuses such passwords"]


def test_auth_config_escapes_percent_and_is_private(tmp_path: Path) -> None:
    import configparser
    import stat

    from encore.mlflow_server.auth_config import write_auth_config

    settings = ServerSettings(postgres_host="db", postgres_db="mlflow", postgres_user="u@x",
                              postgres_password="p%w:d", encore_auth_admin_password="adm%in #secret")
    path = write_auth_config(settings, tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    parsed = configparser.ConfigParser()
    parsed.read(path)  # with %-interpolation, as MLflow reads it
    assert parsed["mlflow"]["admin_password"] == "adm%in #secret"
    assert parsed["mlflow"]["default_permission"] == "NO_PERMISSIONS"
    url = make_url(parsed["mlflow"]["database_uri"])
    assert url.password == "p%w:d" and url.username == "u@x"
    assert url.query["options"] == "-csearch_path=mlflow_auth"


def test_release_user_says_who_may_promote(tmp_path: Path) -> None:
    from encore.tracking.credentials import release_user

    none = str(tmp_path / "none.env")
    pipeline = {"ENV_FILE": none, "MLFLOW_TRACKING_USERNAME": "encore-pipeline"}
    with pytest.raises(tracking_client.TrackingServerAuthError) as info:
        release_user("encore-ranker", pipeline)
    assert "only the release user" in str(info.value) and "'encore-pipeline' may not" in str(info.value)
    assert release_user("encore-ranker", pipeline, required=False) is None
    assert release_user("encore-ranker", {"ENV_FILE": none}) is None  # no authentication: nothing to switch
    (tmp_path / "rel.env").write_text("ENCORE_RELEASE_PASSWORD='r #secret-pw'\n")
    assert release_user("encore-ranker", {**pipeline, "ENV_FILE": str(tmp_path / "rel.env")}) == (
        "encore-release", "r #secret-pw")


def test_auth_error_message_names_user_and_request() -> None:
    from mlflow.exceptions import MlflowException

    from encore.tracking.credentials import auth_error_message

    exc = MlflowException("API request to endpoint /api/2.0/mlflow/runs/create failed with error code 403 != 200. "
                          "Response body: 'Permission denied'")
    message = auth_error_message(exc, environ={"MLFLOW_TRACKING_USERNAME": "alice"})
    assert message == ("MLflow server refused user 'alice' for request /api/2.0/mlflow/runs/create (HTTP 403): "
                       "Permission denied")
    exc = MlflowException("API request to endpoint /x failed with error code 401 != 200. Response body: 'no'")
    assert "refused user '(anonymous)'" in auth_error_message(exc, environ={})
    assert auth_error_message(MlflowException("RESOURCE_DOES_NOT_EXIST: no run"), environ={}) is None
