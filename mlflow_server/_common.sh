# shellcheck shell=bash
# Shared by start.sh, stop.sh and clean.sh (sourced, not executed).
#   ENV_FILE  settings file (default: <repo>/.env)
#   RUN_DIR   where server.pid and server.log live (default: mlflow_server/.run)
#   PYTHON    interpreter with mlflow installed (default: <repo>/.venv/bin/python, else python3)

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/.." && pwd)"
export ENV_FILE="${ENV_FILE:-$REPO_ROOT/.env}"
RUN_DIR="${RUN_DIR:-$HERE/.run}"
PID_FILE="$RUN_DIR/server.pid"
# shellcheck disable=SC2034  # used by start.sh
LOG_FILE="$RUN_DIR/server.log"

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then
        PYTHON="$REPO_ROOT/.venv/bin/python"
    else
        PYTHON="$(command -v python3)"
    fi
fi

# `python -m encore.mlflow_server` must resolve the project package.
cd "$REPO_ROOT" || exit 1

encore_server() {
    "$PYTHON" -m encore.mlflow_server "$@"
}

# True while any non-zombie process of process group $1 exists. Zombies are ignored:
# they hold no resources and, in containers whose PID 1 does not reap, never go away.
group_alive() {
    ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'
}

# The PID recorded by start.sh if that process is still an MLflow server, else nothing.
running_server_pid() {
    local pid
    [[ -f "$PID_FILE" ]] || return 0
    pid="$(tr -dc '0-9' <"$PID_FILE")"
    [[ -n "$pid" ]] || return 0
    # Why check the command line: after a reboot the PID may belong to something else.
    if ps -ww -o args= -p "$pid" 2>/dev/null | grep -q "mlflow"; then
        echo "$pid"
    fi
}
