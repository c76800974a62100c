#!/usr/bin/env bash
# Makes a real PostgreSQL available on 127.0.0.1 for the integration tests, on a fresh Debian
# machine or an already prepared one. Idempotent: installs only when the server binaries are
# missing, starts the cluster only when it is down, and (re)asserts the `downtime` role and
# database every run. Progress goes to stderr; the last stdout line is the DSN to use:
#   DATABASE_URL=postgresql://downtime:downtime@127.0.0.1:<port>/downtime
set -euo pipefail

DB_USER="downtime"
DB_PASSWORD="downtime"
DB_NAME="downtime"

log() { echo "start-postgres: $*" >&2; }

# Run a command as the `postgres` OS user (peer auth over the local socket).
as_postgres() {
  if [ "$(id -un)" = "postgres" ]; then
    "$@"
  elif [ "$(id -u)" = "0" ]; then
    if command -v runuser >/dev/null 2>&1; then
      runuser -u postgres -- "$@"
    else
      su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    fi
  else
    sudo -n -u postgres -- "$@"
  fi
}

as_root() {
  if [ "$(id -u)" = "0" ]; then "$@"; else sudo -n -- "$@"; fi
}

have_server() {
  compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null && command -v pg_lsclusters >/dev/null
}

if ! have_server; then
  log "PostgreSQL server not found; installing it with apt-get"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
fi

# First cluster named `main` of the newest version, else the first cluster of any name.
pick_cluster() {
  pg_lsclusters -h | sort -k1,1Vr | awk '$2 == "main" { print; found = 1; exit } END { if (!found) exit 1 }' \
    || pg_lsclusters -h | sort -k1,1Vr | head -n 1
}

cluster="$(pick_cluster || true)"
if [ -z "$cluster" ]; then
  version="$(basename "$(dirname "$(dirname "$(compgen -G '/usr/lib/postgresql/*/bin/postgres' | sort -V | tail -n 1)")")")"
  log "no cluster found; creating $version/main"
  as_root pg_createcluster "$version" main >&2
  cluster="$(pick_cluster)"
fi

read -r version name port status _ <<<"$cluster"

case "$status" in
  online*)
    log "cluster $version/$name already running on port $port"
    ;;
  *)
    log "starting cluster $version/$name on port $port"
    # The socket directory lives on a tmpfs in containers and may be gone after a restart.
    as_root install -d -o postgres -g postgres -m 2775 /var/run/postgresql
    as_root pg_ctlcluster "$version" "$name" start >&2
    ;;
esac

for _ in $(seq 1 60); do
  if pg_isready -q -h 127.0.0.1 -p "$port"; then break; fi
  sleep 0.5
done
pg_isready -q -h 127.0.0.1 -p "$port" || { log "server did not become ready on port $port"; exit 1; }

psql_admin() { as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$port" -d postgres "$@"; }

# The names and password are constants above, so interpolating them into SQL is safe here.
role_exists="$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER'")"
if [ "$role_exists" != "1" ]; then
  log "creating role $DB_USER"
  psql_admin -c "CREATE ROLE $DB_USER LOGIN CREATEDB PASSWORD '$DB_PASSWORD'"
else
  # Re-assert the attributes the tests rely on, in case the role was changed by hand.
  psql_admin -c "ALTER ROLE $DB_USER LOGIN CREATEDB PASSWORD '$DB_PASSWORD'"
fi
# The tests drop their throw-away databases WITH (FORCE); PostgreSQL 15 refuses that when an
# autovacuum worker happens to be in the database, unless the role may signal other backends.
psql_admin -c "GRANT pg_signal_backend TO $DB_USER"

db_exists="$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")"
if [ "$db_exists" != "1" ]; then
  log "creating database $DB_NAME"
  psql_admin -c "CREATE DATABASE $DB_NAME OWNER $DB_USER"
fi

echo "DATABASE_URL=postgresql://$DB_USER:$DB_PASSWORD@127.0.0.1:$port/$DB_NAME"
