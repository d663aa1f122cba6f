"""One command line for the team MLflow server: ``python -m encore.mlflow_server <command>``.

The ``mlflow_server/*.sh`` scripts drive the server through it::

    python -m encore.mlflow_server check            # preflight: one line per problem
    python -m encore.mlflow_server shell-env        # `export` lines for start.sh (secrets!)
    python -m encore.mlflow_server auth-prepare     # auth schema + 0600 auth config (start.sh)
    python -m encore.mlflow_server db-upgrade       # `mlflow db upgrade` only when behind
    python -m encore.mlflow_server wait-health      # bounded wait for GET /health
    python -m encore.mlflow_server gc [gc args]     # `mlflow gc` with the configured stores
    python -m encore.mlflow_server show             # settings with secrets masked

and the admin manages users through it (see :mod:`encore.mlflow_server.auth_admin`)::

    python -m encore.mlflow_server auth setup             # pipeline + release users, grants
    python -m encore.mlflow_server auth add-viewer NAME   # read-only user (password prompted)
    python -m encore.mlflow_server auth delete-user NAME

Settings come from a ``.env`` file (see ``.env_template``; ``--env-file`` or ``$ENV_FILE``);
variables set in the environment win over the file. Errors are one line, never a secret.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from encore.config.envfile import resolve_env_file
from encore.mlflow_server.settings import (
    ServerConfigError,
    ServerSettings,
    describe,
    load_settings,
    secret_values,
    shell_exports,
    tracking_url,
)
from encore.tracking.client import TrackingServerAuthError, TrackingServerUnreachable, redact

PROG = "python -m encore.mlflow_server"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """Every command, as the scripts and the admin call them."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--env-file", help="settings file (default: $ENV_FILE or <repo>/.env)")
    sub = parser.add_subparsers(dest="command", required=True)
    p_check = sub.add_parser("check", help="preflight: report every problem, one line each")
    p_check.add_argument("--for-start", action="store_true", help="also check that the port is free")
    p_check.add_argument("--timeout", type=float, default=5.0)
    p_check.add_argument("server_args", nargs=argparse.REMAINDER, help="extra `mlflow server` args to vet")
    sub.add_parser("shell-env", help="print export lines for the shell scripts (contains secrets)")
    p_prep = sub.add_parser("auth-prepare", help="create the user-store schema, write the 0600 auth config")
    p_prep.add_argument("--run-dir", required=True, help="folder of server.pid; the config goes to <run-dir>/auth/")
    sub.add_parser("db-upgrade", help="run `mlflow db upgrade` only when the schema is behind")
    p_wait = sub.add_parser("wait-health", help="wait for GET /health")
    p_wait.add_argument("--timeout", type=float, default=60.0)
    p_wait.add_argument("--pid", type=int, default=None, help="give up as soon as this process exits")
    p_gc = sub.add_parser("gc", help="mlflow gc with the configured stores (extra args passed on)")
    p_gc.add_argument("gc_args", nargs=argparse.REMAINDER)
    sub.add_parser("show", help="print the settings, secrets masked")
    p_auth = sub.add_parser("auth", help="users and grants, as the admin: setup, add-viewer, delete-user")
    # SUPPRESS: given after `auth`, it overrides the global one; not given, it leaves it alone.
    p_auth.add_argument("--env-file", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p_auth.add_argument("--tracking-uri", help="server URL (default: the one configured by MLFLOW_HOST/PORT)")
    auth_sub = p_auth.add_subparsers(dest="auth_command", required=True)
    auth_sub.add_parser("setup", help="create/refresh the pipeline and release users and their grants")
    p_view = auth_sub.add_parser("add-viewer", help="add a read-only user (password from a prompt or stdin)")
    p_view.add_argument("username")
    p_view.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p_del = auth_sub.add_parser("delete-user", help="remove a user")
    p_del.add_argument("username")
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str = PROG) -> int:
    """Run one command; 0 on success, 1 with one ``ERROR`` line (secrets redacted) otherwise."""
    args = build_parser(prog).parse_args(argv)
    settings = load_settings(args.env_file)
    secrets_ = secret_values(settings)
    try:
        return _run(args, settings, secrets_)
    except (ServerConfigError, TrackingServerAuthError, TrackingServerUnreachable, TimeoutError, RuntimeError) as exc:
        print(f"ERROR   {redact(str(exc), secrets_)}", file=sys.stderr)
        return 1
    except Exception as exc:  # the driver/mlflow message, but never a secret
        print(f"ERROR   {type(exc).__name__}: {redact(str(exc), secrets_)}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, settings: ServerSettings, secrets_: list[str]) -> int:
    # Why the imports are here: each command needs its own module only (the checks import
    # boto3 and psycopg2, the schema alembic and MLflow's store), and `show` needs none.
    if args.command == "check":
        return _check(args, settings)
    if args.command == "shell-env":
        sys.stdout.write(shell_exports(settings))
    elif args.command == "auth-prepare":
        from encore.mlflow_server.auth_config import prepare_exports

        exports = prepare_exports(settings, Path(args.run_dir))
        sys.stdout.write("".join(f"export {k}={shlex.quote(v)}\n" for k, v in exports.items()))
    elif args.command == "db-upgrade":
        from encore.mlflow_server.schema import upgrade_schema_if_needed

        print(upgrade_schema_if_needed(settings))
    elif args.command == "wait-health":
        from encore.mlflow_server.operations import wait_for_health

        waited = wait_for_health(tracking_url(settings), timeout=args.timeout, pid=args.pid)
        print(f"healthy after {waited:.1f} s")
    elif args.command == "gc":
        from encore.mlflow_server.operations import run_gc

        run_gc(settings, [a for a in args.gc_args if a != "--"])
    elif args.command == "show":
        print(json.dumps(describe(settings), indent=2))
    elif args.command == "auth":
        for line in _auth(args, settings, secrets_):
            print(line)
    return 0


def _check(args: argparse.Namespace, settings: ServerSettings) -> int:
    from encore.mlflow_server.preflight import Finding, preflight, validate_server_args

    extra = [a for a in args.server_args if a != "--"]
    findings = preflight(settings, timeout=args.timeout, for_start=args.for_start, server_args=extra)
    try:
        validate_server_args(extra, environ={})
    except ServerConfigError as exc:
        findings += [Finding("error", line) for line in str(exc).splitlines()]
    for finding in findings:
        print(finding)
    errors = sum(f.level == "error" for f in findings)
    if errors:
        print(f"preflight failed: {errors} problem(s) (settings file: {resolve_env_file(args.env_file)})")
    return 1 if errors else 0


def _auth(args: argparse.Namespace, settings: ServerSettings, secrets_: list[str]) -> list[str]:
    from encore.mlflow_server.auth_admin import add_viewer, delete_user, read_password, setup_roles

    uri = args.tracking_uri or tracking_url(settings)
    if args.auth_command == "setup":
        return setup_roles(settings, uri)
    if args.auth_command == "add-viewer":
        password = read_password(f"password for {args.username}: ", args.password_stdin)
        secrets_.append(password)  # the caller's list: the typed password is redacted from errors too
        return [add_viewer(settings, uri, args.username, password)]
    return [delete_user(settings, uri, args.username)]
