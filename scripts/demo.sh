#!/usr/bin/env bash
# The README's demo: a local control plane (etcd + kube-apiserver), PostgreSQL and the operator;
# a demo endpoint goes down and comes back, and `kubectl get healthmonitors,downtimeincidents`
# is printed while the incident is open and after it is resolved. About a minute once the
# control-plane binaries are cached (the first run builds them: ~8 minutes on 2 cores).
# The orchestration is scripts/demo.py; this wrapper prepares the venv and PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
# Same setup as scripts/test.sh, but only when missing (the demo's receivers need the test extras:
# standardwebhooks verifies the webhook's signatures), and
# skipping a redundant `pip install` keeps it working offline once the venv exists.
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import downtime_operator, aiohttp, asyncpg, yaml, standardwebhooks' 2>/dev/null; then
  "$VENV/bin/pip" install -q --disable-pip-version-check -e '.[test]'
fi

echo "== PostgreSQL"
DATABASE_URL="$(bash scripts/start-postgres.sh | grep '^DATABASE_URL=' | tail -n 1 | cut -d= -f2-)"
if [ -z "$DATABASE_URL" ]; then
  echo "demo: scripts/start-postgres.sh printed no DATABASE_URL" >&2
  exit 1
fi

exec "$VENV/bin/python" scripts/demo.py --admin-database-url "$DATABASE_URL" "$@"
