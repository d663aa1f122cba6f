#!/usr/bin/env bash
# Stop the MLflow server started by start.sh, with its whole process group (uvicorn
# workers included): SIGTERM, up to STOP_TIMEOUT seconds (default 30), then SIGKILL.
set -euo pipefail

# shellcheck source=_common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
STOP_TIMEOUT="${STOP_TIMEOUT:-30}"

pid="$(running_server_pid)"
if [[ -z "$pid" ]]; then
    if [[ -f "$PID_FILE" ]]; then
        echo "MLflow server not running (stale PID file $PID_FILE removed)"
        rm -f "$PID_FILE"
    else
        echo "MLflow server not running (no PID file $PID_FILE)"
    fi
    exit 0
fi

pgid="$(ps -o pgid= -p "$pid" | tr -d ' ')"
if [[ "$pgid" != "$pid" ]]; then
    # start.sh runs the server under setsid, so this means it was started some other way.
    echo "PID $pid does not lead its process group ($pgid); not stopping it blindly." >&2
    echo "Stop it by hand (kill $pid) and remove $PID_FILE." >&2
    exit 1
fi

echo "Stopping MLflow server (process group $pgid)"
kill -TERM -- "-$pgid" 2>/dev/null || true
deadline=$((SECONDS + STOP_TIMEOUT))
while group_alive "$pgid" && ((SECONDS < deadline)); do
    sleep 0.5
done
if group_alive "$pgid"; then
    echo "Still running after ${STOP_TIMEOUT}s: sending SIGKILL to process group $pgid" >&2
    kill -KILL -- "-$pgid" 2>/dev/null || true
    sleep 1
fi
if group_alive "$pgid"; then
    echo "Processes of group $pgid survived SIGKILL:" >&2
    ps -ww -o pid=,stat=,args= -g "$pgid" >&2 || true
    exit 1
fi
rm -f "$PID_FILE"
# The auth config holds the admin and database passwords: it lives only while the server runs.
rm -rf "$RUN_DIR/auth"
echo "MLflow server stopped; no process of group $pgid left"
