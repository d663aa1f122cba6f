#!/usr/bin/env bash
# Run Encore pipeline components in order under one MLflow parent run.
#
#   scripts/pipeline/run.sh [--experiment FILE] [--components a,b,c] [--force a,b] [--set key=value ...]
#
# Components (default order): prepare, every generator instance of the config (components.<name>:
# popular, als, ..., userknn, als128, ...), ranker, evaluate; register and promote run only when
# named. Outputs already done for the same configuration are reused. Fails fast, naming the component.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  echo
fi

python="${ENCORE_PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$root/.venv/bin/python" ]]; then python="$root/.venv/bin/python"; else python="python3"; fi
fi

# ENV_FILE (the settings file: tracking URI, folders, credentials) relative to where run.sh was
# called from, not to the checkout it changes into; Python reads every setting from that one file.
if [[ -n "${ENV_FILE:-}" && "$ENV_FILE" != /* && -e "$ENV_FILE" ]]; then
  ENV_FILE="$PWD/$ENV_FILE"
  export ENV_FILE
fi
cd "$root"
# A fresh clone has no .venv yet: say what to do instead of an ImportError traceback.
if ! "$python" -c 'import mlflow, pandas, pydantic, yaml' >/dev/null 2>&1; then
  echo "error: $python lacks Encore's packages: run \`make setup\` first (it creates .venv with Encore's packages)" >&2
  exit 2
fi
exec "$python" -m encore.pipeline "$@"
