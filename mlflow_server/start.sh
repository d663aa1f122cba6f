#!/usr/bin/env bash
# Start the Encore MLflow tracking server: PostgreSQL backend store, artifacts proxied to S3.
#
#   mlflow_server/start.sh [extra `mlflow server` options, e.g. --allowed-hosts mlflow.example.com]
#
# Reads .env (override with ENV_FILE=path), runs the preflight check, upgrades the DB schema
# only when it is behind, starts the server in the background in its own process group
# (PID in mlflow_server/.run/server.pid, log in mlflow_server/.run/server.log), waits for
# GET /health (HEALTH_TIMEOUT seconds, default 60) and prints the UI address.
set -euo pipefail

# shellcheck source=_common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
HEALTH_TIMEOUT="${HEALTH_TIMEOUT:-60}"

mkdir -p "$RUN_DIR"
existing="$(running_server_pid)"
if [[ -n "$existing" ]]; then
    echo "MLflow server already running (PID $existing); stop it first: mlflow_server/stop.sh" >&2
    exit 1
fi
rm -f "$PID_FILE"

echo "Preflight checks (settings: $ENV_FILE)"
# Also refuses --default-artifact-root & co. among the extra arguments.
if ! encore_server check --for-start -- "$@"; then
    exit 1
fi

# MLFLOW_BACKEND_STORE_URI (read by `mlflow server` as --backend-store-uri, so the password
# never appears in `ps`), the artifact destination and the server's S3 endpoint/credentials.
eval "$(encore_server shell-env)"

# Empty DB: `mlflow server` creates the schema itself (once, in its parent process, before
# the workers start). Behind: `mlflow db upgrade`, because the server refuses an old schema.
encore_server db-upgrade

# Authentication (ENCORE_SERVER_AUTH; on by default off loopback): MLflow's basic-auth app with
# its user store in its own schema of the same database. auth-prepare writes the config (admin
# password, store URI) 0600 under $RUN_DIR/auth and exports only its path.
auth_args=()
if [[ "$ENCORE_AUTH" == "on" ]]; then
    unset MLFLOW_AUTH_CONFIG_PATH
    eval "$(encore_server auth-prepare --run-dir "$RUN_DIR")"
    [[ -n "${MLFLOW_AUTH_CONFIG_PATH:-}" ]] || { echo "could not prepare the auth config" >&2; exit 1; }
    auth_args=(--app-name basic-auth)
fi

# No huey job-runner processes: Encore uses no server-side jobs (judges, scorers, trace
# rollups), and the consumer would otherwise run beside the web workers.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
# Self-hosted: no usage telemetry leaves the machine (set to false to opt back in).
export MLFLOW_DISABLE_TELEMETRY="${MLFLOW_DISABLE_TELEMETRY:-true}"

[[ -f "$LOG_FILE" ]] && mv -f "$LOG_FILE" "$LOG_FILE.1"
echo "Starting: mlflow server --backend-store-uri $ENCORE_BACKEND_STORE_URI_MASKED" \
    "--serve-artifacts --artifacts-destination $ENCORE_ARTIFACTS_DESTINATION" \
    "--host $MLFLOW_HOST --port $MLFLOW_PORT --workers $MLFLOW_WORKERS ${auth_args[*]} $*"
# setsid: the server, its uvicorn workers and any helper share one new process group that
# stop.sh can signal as a whole; the PID written below is that group's id.
setsid "$PYTHON" -m mlflow server \
    --serve-artifacts \
    --artifacts-destination "$ENCORE_ARTIFACTS_DESTINATION" \
    --host "$MLFLOW_HOST" \
    --port "$MLFLOW_PORT" \
    --workers "$MLFLOW_WORKERS" \
    "${auth_args[@]}" \
    "$@" >"$LOG_FILE" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$PID_FILE"

if ! encore_server wait-health --timeout "$HEALTH_TIMEOUT" --pid "$pid"; then
    echo "MLflow server did not become healthy. Last lines of $LOG_FILE:" >&2
    tail -n 40 "$LOG_FILE" >&2 || true
    "$HERE/stop.sh" >&2 || true
    exit 1
fi

echo "MLflow server running (PID $pid, log $LOG_FILE, authentication $ENCORE_AUTH)"
echo "UI:        $ENCORE_TRACKING_URL"
echo "Clients:   export MLFLOW_TRACKING_URI=$ENCORE_TRACKING_URL"
if [[ "$ENCORE_AUTH" == "on" ]]; then
    echo "Users:     python -m encore.mlflow_server auth setup   (pipeline + release users, grants)"
fi
