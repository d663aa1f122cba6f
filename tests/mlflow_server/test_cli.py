"""The one MLflow-server command line and its two deprecated entry points.

``python -m encore.mlflow_server`` replaced ``python -m scripts.core.server`` and
``python -m scripts.core.server_auth``; for one release the old ones run the same commands.
No server is needed: ``show`` reads settings only, and ``auth setup`` fails on a missing
password before it contacts anything.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from encore.mlflow_server import cli
from encore.mlflow_server.auth_config import auth_config_text
from encore.mlflow_server.auth_plugin import AUTH_FUNCTION, authenticate_request
from encore.mlflow_server.settings import ServerSettings

REPO = Path(__file__).resolve().parents[2]  # the checkout: scripts/ is not installed
SECRET = "db-pass #not-shown"


@pytest.fixture
def env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith(("POSTGRES_", "S3_", "MLFLOW_", "AWS_", "ENCORE_")) or key == "ENV_FILE":
            monkeypatch.delenv(key)
    path = tmp_path / "server.env"
    path.write_text(f"POSTGRES_HOST=db\nPOSTGRES_DB=mlflow\nPOSTGRES_USER=encore\nPOSTGRES_PASSWORD='{SECRET}'\n"
                    "S3_BUCKET=artifacts\nENCORE_AUTH_ADMIN_PASSWORD=\n")
    return path


def _run(module: str, *args: str, env_file: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ENV_FILE"} | {"PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", module, "--env-file", str(env_file), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_show_is_the_same_from_the_new_cli_and_the_old_entry_point(env_file: Path) -> None:
    new = _run("encore.mlflow_server", "show", env_file=env_file)
    old = _run("scripts.core.server", "show", env_file=env_file)
    assert new.returncode == old.returncode == 0, new.stderr + old.stderr
    shown = json.loads(new.stdout)
    assert shown["POSTGRES_HOST"] == "db" and shown["POSTGRES_PASSWORD"] == "****"
    assert SECRET not in new.stdout and json.loads(old.stdout) == shown


@pytest.mark.parametrize("where", ["before auth", "after auth", "old entry point"])
def test_auth_setup_names_the_missing_password(where: str, env_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if where == "old entry point":
        code = importlib.import_module("scripts.core.server_auth").main(["--env-file", str(env_file), "setup"])
    elif where == "after auth":
        code = cli.main(["auth", "--env-file", str(env_file), "setup"])
    else:
        code = cli.main(["--env-file", str(env_file), "auth", "setup"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip() == "ERROR   ENCORE_AUTH_ADMIN_PASSWORD is not set (see .env_template)"


def test_the_auth_config_names_the_plugin_module() -> None:
    """MLflow imports ``module:function`` from the config: it must be the light plug-in's hook."""
    text = auth_config_text(ServerSettings(postgres_host="db", postgres_db="m", postgres_user="u",
                                           encore_auth_admin_password="x" * 12))
    assert f"authorization_function = {AUTH_FUNCTION}" in text
    module, _, name = AUTH_FUNCTION.partition(":")
    assert getattr(importlib.import_module(module), name) is authenticate_request
