#!/usr/bin/env bash
# Rename benchmark: `RENAME COLUMN` of an N-row table through version schemas (the default:
# the table is renamed at expand and the old version reads it through a view until contract)
# against the two-physical-column rename of `views = false`, side by side in one run: time of
# expand (with its backfill) and of contract, WAL written, the table's size after, and what a
# steady probe workload (point reads and updates at RATE/s, prepared) saw meanwhile.
# Then pgbench, each against the table itself in the same state, interleaved: through the
# newest version's search_path after contract (it reads the table: the goal is the same rate),
# and through a running version's view during the window of a later migration.
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

# pgbench through a version's search_path against the table itself, interleaved, in two
# states: after contract (the newest version reads the table) and in the window of a later
# rename (the same version then reads its view of the table).
db=rename_views
dir="$OUT/views"
m() { "$MIGRATE" "$@" --database-url "$(url "$db")" --dir "$dir/migrations" --config "$dir/migrate.toml"; }
path=$(m latest)
cat >"$OUT/mix.pgbench" <<'EOF'
\set id random(1, :n)
SELECT * FROM users WHERE id = :id;
UPDATE users SET email = email WHERE id = :id;
EOF
declare -A TPS LAT
bench_pair() { # $1: the label of the path's state
  # A run first that is not counted (the caches after the loads), then the two in turns, the
  # order swapped every round so that neither always runs on the warmer cache.
  pgbench -n -M prepared -c 4 -j 2 -T 5 -D n="$N" -f "$OUT/mix.pgbench" "$(url "$db")" >/dev/null 2>&1
  for r in $(seq 1 "$ROUNDS"); do
    order="$1 table"
    [ $((r % 2)) = 0 ] && order="table $1"
    for via in $order; do
      opts=""
      [ "$via" != table ] && opts="-c search_path=$path"
      res=$(PGOPTIONS="$opts" pgbench -n -M prepared -c 4 -j 2 -T "$SECONDS_PER_RUN" -D n="$N" -f "$OUT/mix.pgbench" "$(url "$db")" 2>&1)
      tps=$(printf '%.0f' "$(echo "$res" | sed -n 's/^tps = \([0-9.]*\).*/\1/p')")
      lat=$(echo "$res" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')
      key="$1/$via"
      TPS[$key]="${TPS[$key]:-}${TPS[$key]:+, }$tps"
      LAT[$key]="${LAT[$key]:-}${LAT[$key]:+, }$lat"
      echo "round $r, $1, through the $via: $tps tps, $lat ms" >&2
    done
  done
}
views_now() { q "$db" "SELECT count(*) FROM pg_views WHERE schemaname = '${path%%,*}'"; }
VIEWS_AFTER=$(views_now)
bench_pair after
echo "ALTER TABLE users RENAME COLUMN full_name TO display_name;" >"$dir/migrations/0003_rename_again.sql"
m expand >/dev/null
VIEWS_WINDOW=$(views_now)
bench_pair window
ratio() { python3 -c "
a=[float(x) for x in '${TPS[$1]}'.split(', ')]; b=[float(x) for x in '${TPS[$2]}'.split(', ')]
print(', '.join(f'{x/y:.2f}' for x, y in zip(a, b)))"; }

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
  echo "| pgbench (\`SELECT *\` by key + update, prepared, 4 clients, ${SECONDS_PER_RUN} s × $ROUNDS) | tps, each round | latency ms, each round | × the table, each round |"
  echo "|---|---|---|---|"
  echo "| after contract: the newest version's path ($VIEWS_AFTER views in its schema) | ${TPS[after/after]} | ${LAT[after/after]} | $(ratio after/after after/table) |"
  echo "| after contract: the table itself | ${TPS[after/table]} | ${LAT[after/table]} | |"
  echo "| in a later migration's window: the same path, now through its view ($VIEWS_WINDOW views) | ${TPS[window/window]} | ${LAT[window/window]} | $(ratio window/window window/table) |"
  echo "| in that window: the table itself | ${TPS[window/table]} | ${LAT[window/table]} | |"
} | tee "$OUT/results.md"
