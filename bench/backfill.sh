#!/usr/bin/env bash
# Backfill benchmark: migrate's batched backfill, with one worker and with two, against a plain
# single UPDATE of the same rows and a bare loop of batches, side by side in one run, alone and
# under a pgbench workload of point reads and updates; and the cost of the expand triggers on
# old-version writes.
#
#   bench/backfill.sh                 # N=5000000 rows (takes ~15 min)
#   N=500000 ROUNDS=1 bench/backfill.sh
#   VARIANT='pause = "50%"' bench/backfill.sh   # the second configuration (default: workers = 2)
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
source bench/cluster.sh
cat >>"$BASE/data/postgresql.conf" <<EOF
max_connections = 50
shared_buffers = 1GB
max_wal_size = 4GB
log_lock_waits = on
deadlock_timeout = 100ms
log_line_prefix = '%m [%p] %a '
${EXTRA_CONF:-}
EOF
start_cluster
export SERVER_LOG="$BASE/server.log"
python3 bench/backfill.py
