#!/usr/bin/env bash
# Fleet benchmark: the same rollout (expand with a backfill, then contract) over 24 databases
# on one server with `parallel` 1, 4 and 8, wall time side by side in one run, interleaved.
#
#   bench/fleet.sh                   # 24 databases of 100,000 rows, 3 rounds (~5 min)
#   DBS=48 ROWS=50000 ROUNDS=1 bench/fleet.sh
#
# It creates a throwaway PostgreSQL cluster (its own port, data under /tmp, deleted at the end).
# Needs the PostgreSQL server binaries, psql and python3 (stdlib only). Results: $OUT/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."

export DBS="${DBS:-24}"
export ROWS="${ROWS:-100000}"
export ROUNDS="${ROUNDS:-3}"
export PORT="${PORT:-55435}"
export OUT="${OUT:-/tmp/migrate-bench-fleet}"
source bench/cluster.sh
cat >>"$BASE/data/postgresql.conf" <<CONF
max_connections = 200
shared_buffers = 512MB
max_wal_size = 4GB
CONF
start_cluster
python3 - <<'PYEND'
import os, subprocess, tempfile, time

DBS, ROWS, ROUNDS = int(os.environ["DBS"]), int(os.environ["ROWS"]), int(os.environ["ROUNDS"])
PORT, OUT, PGBIN, MIGRATE = os.environ["PORT"], os.environ["OUT"], os.environ["PGBIN"], os.environ["MIGRATE_BIN"]
SERVER = "postgres://postgres@127.0.0.1:%s/postgres" % PORT


def psql(sql, db="postgres"):
    subprocess.run([os.path.join(PGBIN, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                    "-p", PORT, "-U", "postgres", "-d", db, "-c", sql], check=True, capture_output=True)


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


log("template: %d rows" % ROWS)
psql("DROP DATABASE IF EXISTS fleet_tpl")
psql("CREATE DATABASE fleet_tpl")
psql("CREATE TABLE items (id int PRIMARY KEY, qty int NOT NULL, note text); "
     "INSERT INTO items SELECT g, g, 'n' || g FROM generate_series(1, %d) g" % ROWS, "fleet_tpl")
psql("VACUUM ANALYZE items", "fleet_tpl")

d = tempfile.mkdtemp(prefix="migrate-bench-fleet-")
with open(os.path.join(d, "0001_total.sql"), "w") as f:
    f.write("ALTER TABLE items ADD COLUMN total bigint;\n-- migrate:backfill\nUPDATE items SET total = qty * 2;\n")
with open(os.path.join(d, "0002_drop_note.sql"), "w") as f:
    f.write("ALTER TABLE items DROP COLUMN note;\n")
with open(os.path.join(d, "migrate.toml"), "w") as f:
    f.write("[backfill]\nmax_replica_lag = \"off\"\n")


def fleet(parallel):
    p = os.path.join(d, "fleet-%d.toml" % parallel)
    with open(p, "w") as f:
        f.write("parallel = %d\n[[discover]]\nurl_env = \"BENCH_SERVER\"\nlike = 'fleet\\_t\\_%%'\n" % parallel)
    return p


def fresh():
    for i in range(DBS):
        psql("DROP DATABASE IF EXISTS fleet_t_%02d WITH (FORCE)" % i)
        psql("CREATE DATABASE fleet_t_%02d TEMPLATE fleet_tpl STRATEGY FILE_COPY" % i)
    psql("CHECKPOINT")
    os.sync()


def rollout(parallel):
    env = dict(os.environ, BENCH_SERVER=SERVER, NO_COLOR="1")
    t = time.time()
    for cmd in ("expand", "contract"):
        out = subprocess.run([MIGRATE, cmd, "--fleet", fleet(parallel), "--dir", d,
                              "--config", os.path.join(d, "migrate.toml")], env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError("%s failed:\n%s\n%s" % (cmd, out.stdout[-3000:], out.stderr[-3000:]))
    return time.time() - t


times = {1: [], 4: [], 8: []}
for r in range(ROUNDS):
    order = [1, 4, 8] if r % 2 == 0 else [8, 4, 1]
    for p in order:
        fresh()
        took = rollout(p)
        times[p].append(took)
        log("round %d: parallel %d: %.1f s" % (r + 1, p, took))

mean = lambda v: sum(v) / len(v)
base = mean(times[1])
L = ["# Fleet rollout: expand (with a %d-row backfill) then contract over %d databases, mean of %d interleaved rounds"
     % (ROWS, DBS, ROUNDS), "",
     "| parallel | wall s | each round | × parallel 1 |", "|---|---|---|---|"]
for p in (1, 4, 8):
    L.append("| %d | %.1f | %s | %.2f |" % (p, mean(times[p]), ", ".join("%.1f" % x for x in times[p]), mean(times[p]) / base))
text = "\n".join(L) + "\n"
with open(os.path.join(OUT, "results.md"), "w") as f:
    f.write(text)
print(text)
PYEND
