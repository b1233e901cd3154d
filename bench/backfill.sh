#!/usr/bin/env bash
# Backfill benchmark: migrate's batched backfill against a plain single UPDATE of the same rows,
# side by side in one run, alone and under a pgbench workload of point reads and updates; and
# the cost of the expand triggers on old-version writes.
#
#   bench/backfill.sh                 # N=5000000 rows (takes ~15 min)
#   N=500000 ROUNDS=1 bench/backfill.sh
#   SWEEP='pause = "50%";target = "20ms"' bench/backfill.sh   # only the workload's view, per config
#   EXTRA_CONF="wal_compression = lz4" bench/backfill.sh        # a server setting for the run
#
# It creates a throwaway PostgreSQL cluster (its own port, data under /tmp, deleted at the end),
# so figures do not depend on the settings of the machine's server. Needs the PostgreSQL server
# binaries, psql, pgbench and python3 (stdlib only). Results: $OUT/results.md and results.json.
set -euo pipefail
cd "$(dirname "$0")/.."

export N="${N:-5000000}"
export PORT="${PORT:-55434}"
export ROUNDS="${ROUNDS:-2}"
export RATE="${RATE:-1000}"
export OUT="${OUT:-/tmp/migrate-bench-backfill}"
PGBIN="${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}"
export PGBIN
BASE="/tmp/migrate-bench-cluster.$PORT"
RUN_USER="${RUN_USER:-migrate_bench}"

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u "$RUN_USER" -- "$@"; else "$@"; fi; }

if [ "$(id -u)" = 0 ] && ! id "$RUN_USER" >/dev/null 2>&1; then
  useradd -m "$RUN_USER"
fi
bash scripts/setup.sh >/dev/null
cargo build --release --locked --quiet
export MIGRATE_BIN="${CARGO_TARGET_DIR:-target}/release/migrate"

cleanup() {
  set +e
  [ -f "$BASE/data/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$BASE/data" -m immediate -w stop >/dev/null
  rm -rf "$BASE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$BASE" "$OUT"
mkdir -p "$BASE" "$OUT"
[ "$(id -u)" = 0 ] && chown "$RUN_USER": "$BASE" && chmod 777 "$OUT"
as_pg "$PGBIN/initdb" -D "$BASE/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null
cat >>"$BASE/data/postgresql.conf" <<EOF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$BASE'
max_connections = 50
shared_buffers = 1GB
max_wal_size = 4GB
log_lock_waits = on
deadlock_timeout = 100ms
log_line_prefix = '%m [%p] %a '
lc_messages = 'C'
${EXTRA_CONF:-}
EOF
as_pg "$PGBIN/pg_ctl" -D "$BASE/data" -l "$BASE/server.log" -w -t 120 start >/dev/null
export SERVER_LOG="$BASE/server.log"
python3 bench/backfill.py
