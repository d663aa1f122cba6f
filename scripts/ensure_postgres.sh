#!/usr/bin/env bash
# Make sure PostgreSQL server binaries (initdb, pg_ctl) exist for the integration tests;
# install Debian's postgresql package when they are missing and we may (root).
set -euo pipefail

if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then exit 0; fi
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then exit 0; fi

if [[ "$(id -u)" -ne 0 ]]; then
  echo "error: PostgreSQL server binaries (initdb, pg_ctl) are missing; install them with" >&2
  echo "       sudo apt-get install postgresql   (the integration tests start a throwaway cluster)" >&2
  exit 1
fi
echo "installing PostgreSQL (apt-get install postgresql) for the integration tests"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq postgresql >/dev/null
