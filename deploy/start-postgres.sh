#!/usr/bin/env bash
# Make sure the local PostgreSQL server is running on 127.0.0.1:5432 and that the test
# role exists (the ledger of several instances of one node; tests/pg.py).
#
# - already accepting connections: only checks the role
# - installed but stopped: `systemctl start postgresql` when systemd is PID 1,
#   otherwise `pg_ctlcluster <version> main start` (Debian's cluster tools); a missing
#   cluster is created first (`pg_createcluster`)
# Never stops or restarts a running server. The role is crisisgw_test (LOGIN CREATEDB,
# password crisisgw_test, for loopback use by the tests only): created through the
# local socket as the postgres user, as Debian's peer authentication allows.
set -euo pipefail

HOST=127.0.0.1
PORT="${PGPORT:-5432}"
WAIT_SECS="${POSTGRES_WAIT_SECS:-60}"
ROLE=crisisgw_test

step() { printf '==> %s\n' "$*"; }
die() { printf 'start-postgres.sh: error: %s\n' "$*" >&2; exit 1; }

PATH="$PATH:/usr/sbin:/sbin"
AS_ROOT=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "run this as root (or install sudo)"
    AS_ROOT=(sudo)
fi
as_postgres() { "${AS_ROOT[@]}" runuser -u postgres -- "$@"; }

ready() { pg_isready -q -h "$HOST" -p "$PORT" -t 3 >/dev/null 2>&1; }

if ready; then
    step "postgresql: already accepting connections on $HOST:$PORT"
else
    command -v pg_lsclusters >/dev/null 2>&1 \
        || die "pg_lsclusters not found: install PostgreSQL first (deploy/setup.sh does, via apt-get install postgresql)"
    VERSION="$(ls /usr/lib/postgresql | sort -V | tail -1)"
    [[ -n $VERSION ]] || die "no PostgreSQL version under /usr/lib/postgresql"
    if ! pg_lsclusters -h | awk '{print $1"/"$2}' | grep -qx "$VERSION/main"; then
        step "pg_createcluster $VERSION main"
        "${AS_ROOT[@]}" pg_createcluster "$VERSION" main --port "$PORT" >/dev/null
    fi
    if [[ $(ps -p 1 -o comm= 2>/dev/null) == systemd ]]; then
        step "systemctl start postgresql"
        "${AS_ROOT[@]}" systemctl start postgresql
    else
        step "pg_ctlcluster $VERSION main start"
        "${AS_ROOT[@]}" pg_ctlcluster "$VERSION" main start
    fi
    deadline=$((SECONDS + WAIT_SECS))
    until ready; do
        ((SECONDS < deadline)) || die "PostgreSQL did not accept connections on $HOST:$PORT within ${WAIT_SECS}s
(see /var/log/postgresql/postgresql-$VERSION-main.log)"
        sleep 1
    done
    step "postgresql $VERSION: accepting connections on $HOST:$PORT"
fi

# The tests' role, over the local socket (peer authentication as postgres).
if ! as_postgres psql -p "$PORT" -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'" \
        | grep -q 1; then
    step "creating role $ROLE (LOGIN CREATEDB) for the tests"
    as_postgres psql -p "$PORT" -q -c "CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$ROLE'"
fi
