#!/usr/bin/env bash
# Make sure the system programs the test suite needs exist, installing Debian's packages for
# the missing ones when we may (root):
#   - PostgreSQL server binaries (initdb, pg_ctl): the integration tests start a throwaway cluster;
#   - a Java 17+ runtime: the Spark preprocessing engine's tests start a local Spark session;
#   - Chromium (/usr/bin/chromium): the browser tests drive the MLflow UI in it (Playwright never
#     downloads a browser of its own).
set -euo pipefail

missing=()
if ! { command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; } \
   && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  missing+=(postgresql)
fi
java_major() {  # major version of the java on PATH (or JAVA_HOME), empty when there is none
  local java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
  command -v "$java" >/dev/null 2>&1 || return 0
  "$java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1
}
major="$(java_major)"
if [[ -z "$major" || "$major" -lt 17 ]]; then
  missing+=(openjdk-17-jre-headless)
fi
if [[ ! -x /usr/bin/chromium ]]; then
  missing+=(chromium)
fi

[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ "$(id -u)" -ne 0 ]]; then
  echo "error: missing system packages for the tests: ${missing[*]}; install them with" >&2
  echo "       sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "installing ${missing[*]} (apt-get) for the tests"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
