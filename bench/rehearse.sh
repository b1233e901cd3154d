#!/usr/bin/env bash
# Rehearsal benchmark: how close `migrate rehearse`'s projections come to the real run. An
# N-row table gets a type change (shadow column, backfill, swap) and a concurrent index. Each
# round, on a fresh copy of the same database: `migrate rehearse` (it makes its own sampled copy
# on the server, 5% by default) projects every step that scans or changes rows onto the
# table's size; then the real `migrate expand` and `migrate contract` run on that database and
# their steps are timed. Per step: the rehearsal's own time, its projection, the real time and
# real / projected. Also the cost: the rehearsal's wall time against the real run's.
#
#   bench/rehearse.sh                 # N=2000000 rows, ROUNDS=3 (~3 min)
#   N=500000 ROUNDS=2 bench/rehearse.sh
#
# It creates a throwaway PostgreSQL cluster (its own port, data under /tmp, deleted at the end).
# Needs the PostgreSQL server binaries, psql and python3. Results: $OUT/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."

N="${N:-2000000}"
PORT="${PORT:-55437}"
ROUNDS="${ROUNDS:-3}"
OUT="${OUT:-/tmp/migrate-bench-rehearse}"
source bench/cluster.sh
cat >>"$BASE/data/postgresql.conf" <<EOF
shared_buffers = 1GB
max_wal_size = 4GB
EOF
start_cluster
url() { echo "postgres://postgres@127.0.0.1:$PORT/$1"; }
q() { psql "$(url "$1")" -qAtX -c "$2"; }

mkdir -p "$OUT/migrations"
cat >"$OUT/migrations/0001_accounts.sql" <<'EOF'
CREATE TABLE accounts (id bigint PRIMARY KEY, balance int NOT NULL, note text);
EOF
cat >"$OUT/migrations/0002_wider.sql" <<'EOF'
-- migrate:no-transaction
ALTER TABLE accounts ALTER COLUMN balance TYPE bigint;
CREATE INDEX CONCURRENTLY accounts_note ON accounts (note);
EOF

q postgres "CREATE DATABASE base"
q base "CREATE TABLE accounts (id bigint PRIMARY KEY, balance int NOT NULL, note text);
        INSERT INTO accounts SELECT g, g % 1000, 'account ' || g FROM generate_series(1, $N) g"
"$MIGRATE_BIN" baseline 0001_accounts --database-url "$(url base)" --dir "$OUT/migrations" >/dev/null
q base "VACUUM ANALYZE accounts"

for r in $(seq 1 "$ROUNDS"); do
  db="r_$r"
  q postgres "CREATE DATABASE $db TEMPLATE base"
  q postgres "CHECKPOINT"
  t0=$(date +%s.%N)
  "$MIGRATE_BIN" rehearse --format json --database-url "$(url "$db")" --dir "$OUT/migrations" \
    >"$OUT/$db.rehearse.json" 2>"$OUT/$db.rehearse.log"
  t1=$(date +%s.%N)
  q postgres "CHECKPOINT"
  "$MIGRATE_BIN" expand --database-url "$(url "$db")" --dir "$OUT/migrations" >"$OUT/$db.real.log" 2>&1
  "$MIGRATE_BIN" contract --database-url "$(url "$db")" --dir "$OUT/migrations" >>"$OUT/$db.real.log" 2>&1
  t2=$(date +%s.%N)
  echo "$r $t0 $t1 $t2" >>"$OUT/times.txt"
  q postgres "DROP DATABASE $db"
  echo "round $r done"
done

python3 - "$OUT" "$ROUNDS" "$N" <<'PY' | tee "$OUT/results.md"
import json, re, statistics, sys
out, rounds, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
times = {int(l.split()[0]): [float(x) for x in l.split()[1:]] for l in open(f"{out}/times.txt")}
rows, ratios = [], {}
for r in range(1, rounds + 1):
    rep = json.load(open(f"{out}/r_{r}.rehearse.json"))
    steps = rep["steps"]
    last_abort = max((i for i, s in enumerate(steps) if s["phase"] == "abort"), default=-1)
    projected = {(s["phase"], s["step"]): s for s in steps[last_abort + 1:] if s.get("projected_ms") is not None}
    real = {}
    for line in open(f"{out}/r_{r}.real.log"):
        m = re.match(r"^(\S+)\s+(expand|backfill|contract) (\d+)/\d+\s+(.*?)\s+\((\d+) ms\)$", line.strip())
        if m and m.group(1) == "0002_wider":
            real[(m.group(2), int(m.group(3)))] = float(m.group(5))
    for key, s in sorted(projected.items()):
        if key not in real:
            continue
        ratio = real[key] / s["projected_ms"] if s["projected_ms"] > 0 else float("nan")
        ratios.setdefault(key, []).append((s["action"], ratio))
        rows.append((r, f"{key[0]} {key[1]}: {s['action']}", s["ms"], s["projected_ms"], real[key], ratio))
    t0, t1, t2 = times[r]
    rows.append((r, "(wall) rehearsal vs real expand + contract", (t1 - t0) * 1e3, None, (t2 - t1) * 1e3, None))
copied = rep.get("scratch", {}).get("tables", [])
acc = next((t for t in copied if t["table"] == "public.accounts"), None)
print(f"# migrate rehearse: projections against the real run\n\n{n} rows; {rounds} rounds; the copy held "
      f"{acc['rows'] if acc else '?'} of them.\n")
print("| round | step | rehearsal ms | projected ms | real ms | real / projected |\n|---|---|---:|---:|---:|---:|")
for r, step, ms, proj, real_ms, ratio in rows:
    f = lambda v, d=0: "" if v is None else f"{v:.{d}f}"
    print(f"| {r} | {step} | {f(ms)} | {f(proj)} | {f(real_ms)} | {f(ratio, 2)} |")
print("\nMedian real / projected per step:")
for key, v in sorted(ratios.items()):
    print(f"- {key[0]} {key[1]} ({v[0][0]}): {statistics.median(x for _, x in v):.2f} "
          f"(range {min(x for _, x in v):.2f}-{max(x for _, x in v):.2f})")
PY
