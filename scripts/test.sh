#!/usr/bin/env bash
# The project's test command (README): installs and starts everything the tests need on a
# fresh machine, then runs the static checks and every test suite. Safe to run repeatedly;
# the slow parts (venv, Go builds) are cached.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --disable-pip-version-check -e '.[test]'

echo "== PostgreSQL"
eval "$(bash scripts/start-postgres.sh | grep '^DATABASE_URL=' | sed 's/^/export /')"
echo "== control plane binaries"
eval "$(bash scripts/build-control-plane.sh | grep -E '^(KUBE_APISERVER|ETCD)=' | sed 's/^/export /')"
eval "$(bash scripts/build-helm.sh | grep '^HELM=' | sed 's/^/export /')"
eval "$(bash scripts/build-prometheus.sh | grep -E '^(PROMETHEUS|PROMTOOL)=' | sed 's/^/export /')"

echo "== static checks"
"$VENV/bin/ruff" check operator tests bench
"$VENV/bin/ruff" format --check operator tests bench
"$VENV/bin/mypy"
"$VENV/bin/mypy" --strict bench
"$VENV/bin/lint-imports"

echo "== tests"
"$VENV/bin/pytest" "$@"
