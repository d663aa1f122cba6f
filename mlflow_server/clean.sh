#!/usr/bin/env bash
# Garbage-collect deleted runs: `mlflow gc` removes runs (and experiments / logged models)
# in the `deleted` lifecycle stage for good, metadata from PostgreSQL and artifacts from S3.
#
#   mlflow_server/clean.sh                        # everything already deleted
#   mlflow_server/clean.sh --older-than 30d       # only what was deleted 30+ days ago
#   mlflow_server/clean.sh --run-ids ID1,ID2      # other `mlflow gc` options are passed on
#
# The server must be running: proxied runs have mlflow-artifacts:/ URIs, which gc deletes
# through the server's artifact proxy.
set -euo pipefail

# shellcheck source=_common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

# Runs `mlflow gc --backend-store-uri ... --artifacts-destination ... --tracking-uri ...`
# in-process, so the database password stays out of the process list.
encore_server gc -- "$@"
