#!/usr/bin/env python3
"""Driver of bench/backfill.sh: runs each variant on a fresh copy of one template database and
prints a table. Talks to PostgreSQL through psql and pgbench only (stdlib Python)."""
import atexit
import glob
import json
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

N = int(os.environ["N"])
PORT = os.environ["PORT"]
ROUNDS = int(os.environ["ROUNDS"])
RATE = int(os.environ["RATE"])
OUT = os.environ["OUT"]
PGBIN = os.environ["PGBIN"]
MIGRATE = os.environ["MIGRATE_BIN"]
SERVER_LOG = os.environ["SERVER_LOG"]
HOST = "127.0.0.1"
CLIENTS, THREADS = 4, 2
URL = "postgres://postgres@%s:%s/run" % (HOST, PORT)
RESULTS = {"N": N, "rate": RATE, "runs": []}
# The workload is also measured for this long after the backfill: the writeback, checkpoint and
# vacuum work it leaves behind lands there.
AFTER = int(os.environ.get("AFTER", "20"))


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def psql(sql, db="run"):
    out = subprocess.run(
        [os.path.join(PGBIN, "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", HOST, "-p", PORT,
         "-U", "postgres", "-d", db, "-c", sql],
        capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError("psql failed: %s\n%s" % (sql, out.stderr))
    return out.stdout.strip()


def template():
    log("loading %d rows into the template" % N)
    psql("DROP DATABASE IF EXISTS tpl", "postgres")
    psql("CREATE DATABASE tpl", "postgres")
    psql("""CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL, email text,
            created_at timestamptz DEFAULT now(), payload text)""", "tpl")
    psql("""INSERT INTO users (id, name, email, created_at, payload)
            SELECT g, 'User Name ' || g, 'user' || g || '@example.com', now() - g * interval '1 second',
                   substr(repeat(md5(g::text), 4), 1, 100)
            FROM generate_series(1, %d) g""" % N, "tpl")
    psql("SELECT setval('users_id_seq', %d)" % N, "tpl")
    psql("VACUUM (FREEZE, ANALYZE) users", "tpl")
    psql("CHECKPOINT", "postgres")


def warm_up():
    """One backfill whose figures are thrown away. A new cluster has no WAL files to recycle,
    so the first backfill on it also creates and zero-fills some 3 GB of them, and its commits
    wait for that; a server that has been running recycles its WAL files instead."""
    log("warm-up backfill (not measured)")
    fresh()
    d = prepare_migrate(PLAIN)
    run_migrate(d)


def fresh():
    psql("DROP DATABASE IF EXISTS run WITH (FORCE)", "postgres")
    psql("CREATE DATABASE run TEMPLATE tpl STRATEGY FILE_COPY", "postgres")


def settle():
    """Every variant starts alike: statistics fresh, shared buffers and the page cache written
    out (copying the template leaves a gigabyte for the kernel to write back, which would
    otherwise stall the commits of whatever runs next)."""
    psql("ANALYZE users")
    psql("CHECKPOINT")
    os.sync()


# A second configuration ([backfill] keys), measured beside the default one: two workers.
THROTTLE = os.environ.get("VARIANT", "workers = 2")


def project(sql, extra=""):
    d = tempfile.mkdtemp(prefix="migrate-bench-")
    atexit.register(shutil.rmtree, d, True)
    with open(os.path.join(d, "0001_change.sql"), "w") as f:
        f.write(sql)
    with open(os.path.join(d, "migrate.toml"), "w") as f:
        # views = false: the rename measured here is the two-column one, whose triggers and
        # backfill are what this benchmark is about (through views a rename writes no row).
        f.write("views = false\n[backfill]\nmax_replica_lag = \"off\"\n" + extra + "\n")
    return d


def migrate(d, *args):
    t = time.time()
    out = subprocess.run([MIGRATE, *args, "--database-url", URL, "--dir", d, "--config",
                          os.path.join(d, "migrate.toml")], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError("migrate %s failed:\n%s\n%s" % (args, out.stdout, out.stderr))
    return time.time() - t, out.stdout


PLAIN = ("ALTER TABLE users ADD COLUMN full_name text;\n"
         "-- migrate:backfill\nUPDATE users SET full_name = name;\n")
RENAME = "ALTER TABLE users RENAME COLUMN name TO full_name;\n"


def run_single():
    psql("ALTER TABLE users ADD COLUMN full_name text")
    settle()
    t = time.time()
    psql("UPDATE users SET full_name = name")
    return time.time() - t, ""


def run_loop():
    """The baseline of batching itself: a bare client loop of 10,000-row key-range UPDATEs,
    each its own transaction with asynchronous commit, from one psql session. No sizing, no
    verification, no cursor: what a hand-written batch script does."""
    psql("ALTER TABLE users ADD COLUMN full_name text")
    settle()
    path = os.path.join(OUT, "loop.sql")
    with open(path, "w") as f:
        f.write("SET synchronous_commit = off;\n")
        for lo in range(0, N, 10000):
            f.write("UPDATE users SET full_name = name WHERE id > %d AND id <= %d;\n" % (lo, lo + 10000))
    t = time.time()
    out = subprocess.run([os.path.join(PGBIN, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", HOST,
                          "-p", PORT, "-U", "postgres", "-d", "run", "-f", path],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError("the batch loop failed:\n%s" % out.stderr)
    return time.time() - t, ""


def timed_update():
    t = time.time()
    psql("UPDATE users SET full_name = name")
    return time.time() - t, ""


def prepare_migrate(sql, extra=""):
    d = project(sql, extra)
    migrate(d, "expand", "--skip-backfill")
    settle()
    return d


def run_migrate(d):
    return migrate(d, "backfill")


SCRIPTS = {
    "update": "\\set id random(1, %d)\nUPDATE users SET email = 'u' || :id || '@example.org' WHERE id = :id;\n" % N,
    "select": "\\set id random(1, %d)\nSELECT id, email FROM users WHERE id = :id;\n" % N,
    # Old-version writes during a rename: its name column, another column, new rows.
    "old_name": "\\set id random(1, %d)\nUPDATE users SET name = 'Renamed ' || :id WHERE id = :id;\n" % N,
    "old_insert": "INSERT INTO users (name, email, payload) VALUES ('New User', 'new@example.com', repeat('x', 100));\n",
}


class Pgbench:
    def __init__(self, tag, scripts, rate=0, seconds=3600):
        self.dir = os.path.join(OUT, "pgbench", tag)
        os.makedirs(self.dir, exist_ok=True)
        files = []
        for s in scripts:
            p = os.path.join(self.dir, s + ".sql")
            with open(p, "w") as f:
                f.write(SCRIPTS[s])
            files += ["-f", p + "@1"]
        cmd = [os.path.join(PGBIN, "pgbench"), "-n", "-h", HOST, "-p", PORT, "-U", "postgres",
               "-c", str(CLIENTS), "-j", str(THREADS), "-M", "prepared", "-T", str(seconds),
               "--log", "--log-prefix=" + os.path.join(self.dir, "tx")] + files + ["run"]
        if rate:
            cmd[1:1] = ["-R", str(rate)]
        self.out = open(os.path.join(self.dir, "out.txt"), "w")
        self.p = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT,
                                  env=dict(os.environ, PGAPPNAME="pgbench"))

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.out.close()

    def wait(self):
        self.p.wait()
        self.out.close()

    def tps(self):
        with open(os.path.join(self.dir, "out.txt")) as f:
            text = f.read()
        if "aborted" in text or "error" in text:
            raise RuntimeError("the workload failed (%s):\n%s" % (self.dir, text[-2000:]))
        return float(re.search(r"tps = ([0-9.]+)", text).group(1))

    def latencies(self, t0, t1):
        """Latencies (ms, from the scheduled start) of transactions scheduled in [t0, t1],
        and the number that failed."""
        lat, failed = [], 0
        for fn in glob.glob(os.path.join(self.dir, "tx*")):
            with open(fn) as f:
                for line in f:
                    p = line.split()
                    if len(p) < 6:
                        continue
                    end = int(p[4]) + int(p[5]) / 1e6
                    if not p[2].isdigit():
                        failed += 1
                        continue
                    ms = int(p[2]) / 1000.0
                    if t0 <= end - ms / 1000.0 <= t1:
                        lat.append(ms)
        lat.sort()
        return lat, failed


def pct(v, p):
    return v[max(0, min(len(v) - 1, int(math.ceil(p / 100.0 * len(v))) - 1))] if v else float("nan")


def lock_waits(since_bytes):
    """Longest lock wait the server logged (waits of 100 ms and more), in ms, since an offset."""
    with open(SERVER_LOG, errors="replace") as f:
        f.seek(since_bytes)
        text = f.read()
    waits = [float(m) for m in re.findall(r"acquired \w+ on .*? after ([0-9.]+) ms", text)]
    still = len(re.findall(r"still waiting for", text))
    return (max(waits) if waits else 0.0), len(waits), still


def log_size():
    return os.path.getsize(SERVER_LOG)


def under_load(tag, backfill=None, seconds=30):
    """pgbench at RATE tps (half point updates, half point reads) for `seconds`, or around a
    backfill; the workload's latency in that window and the longest lock wait logged."""
    os.sync()
    pos = log_size()
    bench = Pgbench(tag, ["update", "select"], rate=RATE)
    time.sleep(5)
    t0 = time.time()
    took = None
    out = ""
    if backfill:
        took, out = backfill()
    else:
        time.sleep(seconds)
    t1 = time.time()
    time.sleep(AFTER + 1)
    bench.stop()
    lat, failed = bench.latencies(t0, t1)
    after, _ = bench.latencies(t1, t1 + AFTER)
    longest, n_waits, _ = lock_waits(pos)
    row = {"variant": tag, "window_s": round(t1 - t0, 1), "tx": len(lat), "failed": failed,
           "p50_ms": round(pct(lat, 50), 2), "p99_ms": round(pct(lat, 99), 2),
           "max_ms": round(lat[-1], 1) if lat else None,
           "lock_waits_over_100ms": n_waits, "longest_lock_wait_ms": longest,
           "after_p99_ms": round(pct(after, 99), 2), "after_max_ms": round(after[-1], 1) if after else None}
    if took:
        row["rows_per_s"] = round(N / took)
    # What the backfill said of itself (how often it backed off).
    said = [l for l in out.splitlines() if "rows changed" in l]
    if said:
        row["said"] = said[0].split("rows/s", 1)[-1].strip(", ")
    return row


def sweep(configs):
    """Only the workload's view: no backfill, then migrate under load with each configuration
    and alone with it (the rate it would have without the workload)."""
    rows = []
    fresh()
    settle()
    rows.append(dict(under_load("no backfill"), extra="", alone=None))
    for extra in configs:
        fresh()
        d = prepare_migrate(PLAIN, extra)
        took, out = run_migrate(d)
        alone = N / took
        log("  alone: " + out.strip().splitlines()[0])
        fresh()
        d = prepare_migrate(PLAIN, extra)
        r = under_load("migrate backfill, `%s`" % extra, lambda: run_migrate(d))
        rows.append(dict(r, extra=extra, alone=alone))
        log(rows[-1])
    L = ["| [backfill] | rows/s alone | rows/s under load (× alone) | p50 ms | p99 ms | max ms | lock waits ≥100 ms |",
         "|---|---|---|---|---|---|---|"]
    for r in rows:
        L.append("| %s | %s | %s | %.2f | %.2f | %.1f | %d |" % (
            ("`%s`" % r["extra"]) if r["extra"] else "(no backfill)" if r["alone"] is None else "default",
            "%.0f" % r["alone"] if r["alone"] else "—",
            "%d (%.2f)" % (r["rows_per_s"], r["rows_per_s"] / r["alone"]) if r["alone"] else "—",
            r["p50_ms"], r["p99_ms"], r["max_ms"], r["lock_waits_over_100ms"]))
    text = "\n".join(L) + "\n"
    with open(os.path.join(OUT, "sweep.md"), "w") as f:
        f.write(text)
    print(text)


def main():
    template()
    warm_up()
    if os.environ.get("SWEEP"):
        sweep([c.strip() for c in os.environ["SWEEP"].split(";")])
        return
    alone = {"single": [], "loop": [], "migrate": [], "second": []}
    for r in range(ROUNDS):
        order = ["single", "loop", "migrate", "second"]
        if r % 2:
            order.reverse()
        for v in order:
            fresh()
            if v == "single":
                took, _ = run_single()
            elif v == "loop":
                took, _ = run_loop()
            else:
                d = prepare_migrate(PLAIN, THROTTLE if v == "second" else "")
                took, out = run_migrate(d)
                log("  " + out.strip().splitlines()[0])
            alone[v].append(N / took)
            log("alone, round %d: %s %.0f rows/s" % (r + 1, v, N / took))
    RESULTS["alone"] = alone

    # Under load: the single UPDATE once (its stall is not subtle), the others every round,
    # interleaved, because the workload's p99 on a shared machine moves from run to run.
    loaded = []
    fresh()
    psql("ALTER TABLE users ADD COLUMN full_name text")
    settle()
    loaded.append(under_load("single UPDATE", timed_update))
    log(loaded[-1])
    for r in range(ROUNDS):
        fresh()
        settle()
        loaded.append(under_load("no backfill"))
        log(loaded[-1])
        for extra, tag in ([("", "migrate backfill"), (THROTTLE, "migrate backfill, `%s`" % THROTTLE)]
                           if r % 2 == 0 else
                           [(THROTTLE, "migrate backfill, `%s`" % THROTTLE), ("", "migrate backfill")]):
            fresh()
            d = prepare_migrate(PLAIN, extra)
            loaded.append(under_load(tag, lambda: run_migrate(d)))
            log(loaded[-1])
    RESULTS["loaded"] = loaded

    # The expand triggers: old-version writes with and without them, on the same table state
    # (a filled copy of name in full_name); the rename's backfill runs through them.
    trig = {"without": [], "with": [], "rename_backfill": []}
    for r in range(ROUNDS):
        order = ["without", "with"] if r % 2 == 0 else ["with", "without"]
        for v in order:
            fresh()
            if v == "with":
                d = prepare_migrate(RENAME)
                took, out = run_migrate(d)
                trig["rename_backfill"].append(N / took)
                log("  rename backfill through the triggers: %.0f rows/s" % (N / took))
            else:
                psql("ALTER TABLE users ADD COLUMN full_name text")
                psql("UPDATE users SET full_name = name")
            settle()
            b = Pgbench("old-writes-%s-%d" % (v, r), ["update", "old_name", "old_insert"], seconds=15)
            b.wait()
            trig[v].append(b.tps())
            log("old-version writes %s triggers: %.0f tps" % (v, b.tps()))
    RESULTS["triggers"] = trig
    report()


def mean(v):
    return sum(v) / len(v)


def median(v):
    v = sorted(v)
    return (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2


def report():
    a = RESULTS["alone"]
    single, ours, second = mean(a["single"]), mean(a["migrate"]), mean(a["second"])
    loop = mean(a["loop"])
    L = ["# Backfill benchmark: %d rows, PostgreSQL %s" % (N, psql("SHOW server_version", "postgres")), ""]
    L.append("## Alone (no other load), mean of %d interleaved rounds" % ROUNDS)
    L.append("| backfill | rows/s | each round | × single UPDATE |")
    L.append("|---|---|---|---|")
    L.append("| single `UPDATE` | %.0f | %s | 1.00 |" % (single, ", ".join("%.0f" % x for x in a["single"])))
    L.append("| bare loop of 10,000-row `UPDATE`s, asynchronous commit | %.0f | %s | %.2f |" % (loop, ", ".join("%.0f" % x for x in a["loop"]), loop / single))
    L.append("| migrate backfill | %.0f | %s | %.2f |" % (ours, ", ".join("%.0f" % x for x in a["migrate"]), ours / single))
    L.append("| migrate backfill, `%s` | %.0f | %s | %.2f |" % (THROTTLE, second, ", ".join("%.0f" % x for x in a["second"]), second / single))
    L.append("")
    L.append("## Under load: pgbench -R %d, %d clients, point updates + point reads" % (RATE, CLIENTS))
    L.append("| run | backfill rows/s | × unloaded | workload tx | failed | p50 ms | p99 ms | max ms | lock waits ≥100 ms | longest lock wait ms | %d s after: p99 / max ms |" % AFTER)
    L.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in RESULTS["loaded"]:
        base = single if r["variant"].startswith("single") else second if "`" in r["variant"] else ours
        rate = r.get("rows_per_s")
        L.append("| %s | %s | %s | %d | %d | %.2f | %.2f | %s | %d | %s | %s / %s |" % (
            r["variant"], rate or "—", "%.2f" % (rate / base) if rate else "—", r["tx"], r["failed"],
            r["p50_ms"], r["p99_ms"], r["max_ms"], r["lock_waits_over_100ms"],
            ("%.0f" % r["longest_lock_wait_ms"]) if r["lock_waits_over_100ms"] else "< 100 (none logged)",
            r["after_p99_ms"], r["after_max_ms"]))
    L.append("")
    L.append("Per variant, median of %d rounds (p99 against the median p99 with no backfill; rows/s against the same configuration alone):" % ROUNDS)
    L.append("| run | p99 ms, each round | median p99 | × no backfill | rows/s × alone |")
    L.append("|---|---|---|---|---|")
    base_p99 = None
    for v in ["no backfill", "migrate backfill", "migrate backfill, `%s`" % THROTTLE]:
        rs = [r for r in RESULTS["loaded"] if r["variant"] == v]
        p = median([r["p99_ms"] for r in rs])
        base_p99 = base_p99 or p
        alone_rate = second if "`" in v else ours
        rate = "—" if v == "no backfill" else "%.2f" % (median([r["rows_per_s"] for r in rs]) / alone_rate)
        L.append("| %s | %s | %.2f | %.1f | %s |" % (v, ", ".join("%.2f" % r["p99_ms"] for r in rs), p, p / base_p99, rate))
    t = RESULTS["triggers"]
    w, wo = mean(t["with"]), mean(t["without"])
    L.append("")
    L.append("## Expand triggers (a rename): old-version writes, unthrottled pgbench, 15 s, %d rounds" % ROUNDS)
    L.append("| | tps | each round |")
    L.append("|---|---|---|")
    L.append("| without triggers | %.0f | %s |" % (wo, ", ".join("%.0f" % x for x in t["without"])))
    L.append("| with the rename's sync trigger | %.0f (%.1f%% less) | %s |" % (w, 100 * (1 - w / wo), ", ".join("%.0f" % x for x in t["with"])))
    L.append("")
    rb = mean(t["rename_backfill"])
    L.append("Rename backfill through the triggers: %.0f rows/s (%s) = %.2f× the plain migrate backfill (%.0f rows/s)." % (
        rb, ", ".join("%.0f" % x for x in t["rename_backfill"]), rb / ours, ours))
    text = "\n".join(L) + "\n"
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(RESULTS, f, indent=1)
    print(text)


if __name__ == "__main__":
    main()
