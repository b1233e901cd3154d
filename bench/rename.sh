#!/usr/bin/env bash
# Rename benchmark: `RENAME COLUMN` of an N-row table through version schemas of views (the
# default) against the two-physical-column rename of `views = false`, side by side in one run:
# time of expand (with its backfill) and of contract, WAL written, the table's size after, and
# what a steady probe workload (point reads and updates at RATE/s, prepared) saw meanwhile.
# Then pgbench through a version schema's view against the table itself, interleaved.
#
#   bench/rename.sh                 # N=5000000 rows (~5 min)
#   N=500000 ROUNDS=1 bench/rename.sh
#
# It creates a throwaway PostgreSQL cluster (its own port, data under /tmp, deleted at the end).
# Needs the PostgreSQL server binaries, psql, pgbench and python3. Results: $OUT/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."

N="${N:-5000000}"
PORT="${PORT:-55435}"
ROUNDS="${ROUNDS:-2}"
RATE="${RATE:-500}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-15}"
OUT="${OUT:-/tmp/migrate-bench-rename}"
source bench/cluster.sh
MIGRATE="$MIGRATE_BIN"
cat >>"$BASE/data/postgresql.conf" <<EOF
shared_buffers = 1GB
max_wal_size = 4GB
EOF
start_cluster
url() { echo "postgres://postgres@127.0.0.1:$PORT/$1"; }
q() { psql "$(url "$1")" -qAtX -c "$2"; }

# The probe: a point read and an update of a column no rename touches, valid for every version.
cat >"$OUT/probe.pgbench" <<'EOF'
\set id random(1, :n)
SELECT id, email FROM users WHERE id = :id;
UPDATE users SET email = email WHERE id = :id;
EOF

percentiles() { # pgbench per-transaction logs → "p99 max" in ms
  python3 - "$@" <<'EOF'
import sys, glob
lat = []
for pattern in sys.argv[1:]:
    for f in glob.glob(pattern):
        for line in open(f):
            parts = line.split()
            if len(parts) >= 3 and parts[2].isdigit():
                lat.append(int(parts[2]) / 1000.0)
lat.sort()
if not lat:
    print("- -"); sys.exit()
print(f"{lat[min(len(lat) - 1, int(0.99 * len(lat)))]:.1f} {lat[-1]:.1f}")
EOF
}

declare -A ROW
for mode in views dual; do
  db="rename_$mode"
  q postgres "CREATE DATABASE $db"
  dir="$OUT/$mode"
  mkdir -p "$dir/migrations"
  [ "$mode" = views ] && echo "views = true" >"$dir/migrate.toml" || echo "views = false" >"$dir/migrate.toml"
  echo "CREATE TABLE users (id bigint PRIMARY KEY, name text, email text, payload text);" >"$dir/migrations/0001_users.sql"
  echo "ALTER TABLE users RENAME COLUMN name TO full_name;" >"$dir/migrations/0002_rename.sql"
  m() { "$MIGRATE" "$@" --database-url "$(url "$db")" --dir "$dir/migrations" --config "$dir/migrate.toml"; }
  m expand 0001_users >/dev/null
  echo "$mode: loading $N rows" >&2
  q "$db" "INSERT INTO users SELECT g, 'user ' || g, 'u' || g || '@example.com', repeat('x', 120) FROM generate_series(1, $N) g"
  q "$db" "VACUUM ANALYZE users"
  q "$db" "CHECKPOINT"
  size_before=$(q "$db" "SELECT pg_total_relation_size('users')")
  lsn0=$(q "$db" "SELECT pg_current_wal_lsn()")
  # In 2 s pieces until the flag goes: pgbench writes its per-transaction log only as it ends.
  touch "$dir/running"
  (
    cd "$dir"
    i=0
    while [ -f running ]; do
      i=$((i + 1))
      pgbench -n -M prepared -c 2 -R "$RATE" -T 2 -D n="$N" -f "$OUT/probe.pgbench" -l --log-prefix="probe$i" "$(url "$db")" >>probe-runs.txt 2>&1
    done
  ) &
  probe=$!
  sleep 2
  t0=$(date +%s.%N)
  m expand >"$dir/expand.out"
  t1=$(date +%s.%N)
  m contract >"$dir/contract.out"
  t2=$(date +%s.%N)
  sleep 2
  rm -f "$dir/running"
  wait "$probe"
  if grep -q "ERROR\|aborted" "$dir/probe-runs.txt"; then
    echo "$mode: the probe workload failed:" >&2
    grep -m3 "ERROR\|aborted" "$dir/probe-runs.txt" >&2
    exit 1
  fi
  lsn1=$(q "$db" "SELECT pg_current_wal_lsn()")
  wal=$(q "$db" "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0')")
  size_after=$(q "$db" "SELECT pg_total_relation_size('users')")
  read -r p99 max < <(percentiles "$dir/probe[0-9]*")
  ROW[$mode]=$(python3 -c "
t0,t1,t2=$t0,$t1,$t2
print(f'{t1-t0:.2f} | {t2-t1:.2f} | {t2-t0:.2f} | {$wal/1048576:.0f} | {$size_before/1048576:.0f} → {$size_after/1048576:.0f} | $p99 | $max')")
  echo "$mode: ${ROW[$mode]}" >&2
done

# pgbench through the newest version schema's view against the table itself, interleaved.
db=rename_views
path=$("$MIGRATE" latest --database-url "$(url "$db")" --config "$OUT/views/migrate.toml")
cat >"$OUT/mix.pgbench" <<'EOF'
\set id random(1, :n)
SELECT * FROM users WHERE id = :id;
UPDATE users SET email = email WHERE id = :id;
EOF
declare -A TPS LAT
for r in $(seq 1 "$ROUNDS"); do
  for via in view table; do
    opts=""
    [ "$via" = view ] && opts="-c search_path=${path// /}"
    res=$(PGOPTIONS="$opts" pgbench -n -M prepared -c 4 -j 2 -T "$SECONDS_PER_RUN" -D n="$N" -f "$OUT/mix.pgbench" "$(url "$db")" 2>&1)
    tps=$(printf '%.0f' "$(echo "$res" | sed -n 's/^tps = \([0-9.]*\).*/\1/p')")
    lat=$(echo "$res" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')
    TPS[$via]="${TPS[$via]:-}${TPS[$via]:+, }$tps"
    LAT[$via]="${LAT[$via]:-}${LAT[$via]:+, }$lat"
    echo "round $r, through the $via: $tps tps, $lat ms" >&2
  done
done

{
  echo "# Rename of a $N-row table ($(date -u +%F), PostgreSQL $(q postgres 'SHOW server_version'))"
  echo
  echo "| rename | expand + backfill s | contract s | total s | WAL MB | table MB before → after | probe p99 ms | probe max ms |"
  echo "|---|---|---|---|---|---|---|---|"
  echo "| through views (default) | ${ROW[views]} |"
  echo "| two columns (\`views = false\`) | ${ROW[dual]} |"
  echo
  echo "Probe: point read + update of another column, prepared, $RATE/s on 2 connections, through the table, during expand and contract."
  echo
  echo "| pgbench (\`SELECT *\` by key + update, prepared, 4 clients, ${SECONDS_PER_RUN} s × $ROUNDS) | tps, each round | latency ms, each round |"
  echo "|---|---|---|"
  echo "| through the version schema's view | ${TPS[view]} | ${LAT[view]} |"
  echo "| the table itself | ${TPS[table]} | ${LAT[table]} |"
} | tee "$OUT/results.md"
