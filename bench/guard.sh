#!/usr/bin/env bash
# Guard benchmark: what the guard's sampling (once a second, on its own connection) costs the
# backfill. The same type change of an N-row table is expanded and backfilled with the guard on
# and with `[guard] enabled = false`, alternating which goes first, ROUNDS times, each on a
# fresh copy of the same database, after one warm-up run of each; the backfill's rows/s side
# by side and their ratio, and the guard's own cost directly: the time of one sample (the
# guard says it at the end of a run) against the second between samples.
#
#   bench/guard.sh                  # N=2000000 rows, ROUNDS=4 (~4 min)
#   N=500000 ROUNDS=2 bench/guard.sh
#
# It creates a throwaway PostgreSQL cluster (its own port, data under /tmp, deleted at the end).
# Needs the PostgreSQL server binaries, psql and python3. Results: $OUT/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."

N="${N:-2000000}"
PORT="${PORT:-55436}"
ROUNDS="${ROUNDS:-6}"
OUT="${OUT:-/tmp/migrate-bench-guard}"
source bench/cluster.sh
cat >>"$BASE/data/postgresql.conf" <<EOF
shared_buffers = 1GB
max_wal_size = 4GB
EOF
start_cluster
url() { echo "postgres://postgres@127.0.0.1:$PORT/$1"; }
q() { psql "$(url "$1")" -qAtX -c "$2"; }

mkdir -p "$OUT/migrations"
echo "ALTER TABLE accounts ALTER COLUMN balance TYPE bigint;" >"$OUT/migrations/0001_wider.sql"
printf '[guard]\nenabled = true\n' >"$OUT/on.toml"
printf '[guard]\nenabled = false\n' >"$OUT/off.toml"

q postgres "CREATE DATABASE base"
q base "CREATE TABLE accounts (id bigint PRIMARY KEY, balance int NOT NULL, note text);
        INSERT INTO accounts SELECT g, g % 1000, 'account ' || g FROM generate_series(1, $N) g"
q base "VACUUM ANALYZE accounts"

run() { # $1 = on|off, $2 = run number → rows/s of the backfill
  local db="g_$1_$2"
  q postgres "CREATE DATABASE $db TEMPLATE base"
  q postgres "CHECKPOINT"
  "$MIGRATE_BIN" expand --database-url "$(url "$db")" --dir "$OUT/migrations" --config "$OUT/$1.toml" \
    >"$OUT/$db.log" 2>&1
  q postgres "DROP DATABASE $db"
  grep -o '[0-9]* rows/s' "$OUT/$db.log" | head -1 | cut -d' ' -f1
}

run on 0 >/dev/null
run off 0 >/dev/null
: >"$OUT/runs.txt"
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order="on off"; else order="off on"; fi
  for mode in $order; do
    rate=$(run "$mode" "$r")
    echo "$r $mode $rate" >>"$OUT/runs.txt"
    echo "round $r, guard $mode: $rate rows/s"
  done
done

grep -ho 'guard: [0-9]* samples, [0-9.]* ms each' "$OUT"/g_on_*.log | grep -v '^$' >"$OUT/samples.txt" || true
python3 - "$OUT/runs.txt" "$N" "$ROUNDS" "$OUT/samples.txt" <<'EOF' | tee "$OUT/results.md"
import sys, statistics
runs = [l.split() for l in open(sys.argv[1]) if l.strip()]
on = {int(r): float(v) for r, m, v in runs if m == "on"}
off = {int(r): float(v) for r, m, v in runs if m == "off"}
ratios = [on[r] / off[r] for r in sorted(on) if r in off]
print(f"## Guard cost: backfill of {int(sys.argv[2]):,} rows, {sys.argv[3]} rounds (alternating order)\n")
print("| round | guard on rows/s | guard off rows/s | on / off |")
print("|---|---:|---:|---:|")
for r in sorted(on):
    print(f"| {r} | {on[r]:,.0f} | {off[r]:,.0f} | {on[r] / off[r]:.3f} |")
print(f"\nmedian on / off: {statistics.median(ratios):.3f} (range {min(ratios):.3f}–{max(ratios):.3f})")
ms = [float(l.split()[3]) for l in open(sys.argv[4]) if l.strip()]
if ms:
    print(f"one sample took {min(ms):.2f}–{max(ms):.2f} ms (median {statistics.median(ms):.2f}) once a second: "
          f"{statistics.median(ms) / 10:.3f}% of the time between samples")
EOF
