#!/usr/bin/env bash
# A throw-away PostgreSQL server for the test suite.
#
#   scripts/pg-test-server.sh          start it (if needed) and print its URL on stdout
#   scripts/pg-test-server.sh stop     stop it
#   scripts/pg-test-server.sh url      print the URL without starting anything
#
# The cluster lives in its own directory (not Debian's "main" cluster), listens on
# 127.0.0.1 only, trades durability for speed (fsync off: it is test data) and holds one
# role and one database, both named hotline_test. Run as root, the server runs as the
# `postgres` user (PostgreSQL refuses to run as root); run as anyone else, it runs as that
# user. Calling it again while the server is up costs one pg_isready.
#
# Only the URL goes to stdout, so a Makefile can do:
#   export HOTLINE_TEST_PG_URL=$(scripts/pg-test-server.sh)
set -euo pipefail

PORT="${HOTLINE_PG_PORT:-55432}"
BASE="${HOTLINE_PG_DIR:-/tmp/hotline-pg-test}"
DATA="$BASE/data"
SOCK="$BASE"
LOG="$BASE/server.log"
NAME=hotline_test
PASSWORD=hotline_test
URL="postgresql+psycopg2://$NAME:$PASSWORD@127.0.0.1:$PORT/$NAME"

say() { echo "pg-test-server: $*" >&2; }

bindir() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [ -x "$d/initdb" ] && { echo "$d"; return; }
    done
    d=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
    [ -x "$d/initdb" ] && { echo "$d"; return; }
    say "PostgreSQL server binaries not found (Debian: apt-get install postgresql)"
    exit 1
}

if [ "$(id -u)" = 0 ]; then
    OWNER=postgres
    as_owner() { runuser -u "$OWNER" -- "$@"; }
else
    OWNER=$(id -un)
    as_owner() { "$@"; }
fi

ready() { pg_isready -q -h 127.0.0.1 -p "$PORT" -d postgres >/dev/null 2>&1; }

case "${1:-start}" in
    url)
        echo "$URL"; exit 0 ;;
    stop)
        BIN=$(bindir)
        if [ -f "$DATA/postmaster.pid" ]; then
            as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >&2 || true
        fi
        exit 0 ;;
    start) ;;
    *)
        say "usage: $0 [start|stop|url]"; exit 2 ;;
esac

if ready; then
    echo "$URL"
    exit 0
fi

BIN=$(bindir)
mkdir -p "$BASE"
chmod 0755 "$BASE"
[ "$OWNER" != "$(id -un)" ] && chown "$OWNER" "$BASE"

if [ ! -s "$DATA/PG_VERSION" ]; then
    say "creating a cluster in $DATA"
    rm -rf "$DATA"
    pwfile=$(mktemp)
    echo "$PASSWORD" > "$pwfile"
    chmod 0644 "$pwfile"
    # Local socket: trust (the owner administers it); TCP: password, like production.
    as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust \
        --auth-host=scram-sha-256 --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 --no-sync >&2
    rm -f "$pwfile"
fi

# A server left over from a killed run leaves its pid file behind; pg_ctl copes with a stale one.
say "starting PostgreSQL on 127.0.0.1:$PORT"
as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start \
    -o "-p $PORT -k $SOCK -c listen_addresses=127.0.0.1 -c fsync=off \
        -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" >&2 \
    || { say "server did not start; last lines of $LOG:"; tail -n 20 "$LOG" >&2; exit 1; }

psql_admin() { as_owner psql -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres "$@"; }

if [ "$(psql_admin -d postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$NAME'")" != 1 ]; then
    psql_admin -d postgres -c "CREATE ROLE $NAME LOGIN PASSWORD '$PASSWORD'" >&2
fi
if [ "$(psql_admin -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$NAME'")" != 1 ]; then
    psql_admin -d postgres -c "CREATE DATABASE $NAME OWNER $NAME" >&2
fi

ready || { say "server started but does not answer on 127.0.0.1:$PORT"; exit 1; }
echo "$URL"
