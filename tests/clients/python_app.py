"""An app version written with psycopg 3 or asyncpg (DRIVER=psycopg | asyncpg).

psycopg prepares every statement from its first run (prepare_threshold=0); asyncpg prepares
and caches every statement it runs. Both connect with the search_path that `migrate latest`
printed for this version, read `SELECT *`, write only the columns their version knows, and
use COPY and TRUNCATE as apps do (psycopg's `copy`, asyncpg's `copy_records_to_table`).

Driven by tests/clients.rs over stdin/stdout: each line `round` runs every operation once and
prints one JSON line, {"op": "ok" | "<error class>: <message>"}; `quit` ends.
Environment: DATABASE_URL, SEARCH_PATH, APP_VERSION (old | new), DRIVER.
"""
import asyncio
import json
import os
import sys

URL = os.environ["DATABASE_URL"]
PATH = os.environ["SEARCH_PATH"]
OLD = os.environ["APP_VERSION"] == "old"
NAME = "name" if OLD else "full_name"
SELECT_USER = "SELECT * FROM users WHERE id = {}"
INSERT_USER = f"INSERT INTO users ({NAME}, age) VALUES ({{}}, {{}}) RETURNING *"


def check_user(row, columns):
    if NAME not in columns:
        raise RuntimeError(f"no column {NAME} in {columns}")


def record(results, op, fn):
    try:
        fn()
        results[op] = "ok"
    except Exception as e:  # what the app would see
        results[op] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def run_psycopg():
    import psycopg

    conn = psycopg.connect(URL, options=f"-c search_path={PATH}", prepare_threshold=0, autocommit=True)
    n = 0
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        n += 1
        r = {}

        def find():
            cur = conn.execute(SELECT_USER.format("%s"), (1,))
            row = cur.fetchone()
            check_user(row, [d.name for d in cur.description])

        def create():
            cur = conn.execute(INSERT_USER.format("%s", "%s"), (f"psycopg {n}", n))
            check_user(cur.fetchone(), [d.name for d in cur.description])

        def copy(table, columns, row):
            def go():
                with conn.cursor() as cur:
                    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
                        cp.write_row(row)
            return go

        def truncate():
            conn.execute("INSERT INTO jobs (payload) VALUES (%s)", ("x",))
            conn.execute("TRUNCATE jobs")

        record(r, "users.find", find)
        record(r, "users.create", create)
        record(r, "orders.select", lambda: conn.execute("SELECT * FROM orders WHERE id = %s", (1,)).fetchone())
        record(r, "orders.copy", copy("orders", ["user_id", "total"], (1, n)))
        record(r, "users.copy", copy("users", [NAME, "age"], ("copied", n)))
        record(r, "jobs.truncate", truncate)
        print(json.dumps(r), flush=True)


async def run_asyncpg():
    import asyncpg

    conn = await asyncpg.connect(URL, server_settings={"search_path": PATH})
    loop = asyncio.get_running_loop()
    n = 0
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or line.strip() == "quit":
            break
        n += 1
        r = {}

        async def attempt(op, coro):
            try:
                await coro
                r[op] = "ok"
            except Exception as e:
                r[op] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"

        async def find():
            row = await conn.fetchrow(SELECT_USER.format("$1"), 1)
            check_user(row, list(row.keys()))

        async def create():
            row = await conn.fetchrow(INSERT_USER.format("$1", "$2"), f"asyncpg {n}", n)
            check_user(row, list(row.keys()))

        async def truncate():
            await conn.execute("INSERT INTO jobs (payload) VALUES ($1)", "x")
            await conn.execute("TRUNCATE jobs")

        await attempt("users.find", find())
        await attempt("users.create", create())
        await attempt("orders.select", conn.fetchrow("SELECT * FROM orders WHERE id = $1", 1))
        await attempt("orders.copy", conn.copy_records_to_table("orders", records=[(1, n)], columns=["user_id", "total"]))
        await attempt("users.copy", conn.copy_records_to_table("users", records=[("copied", n)], columns=[NAME, "age"]))
        await attempt("jobs.truncate", truncate())
        print(json.dumps(r), flush=True)
    await conn.close()


if os.environ["DRIVER"] == "psycopg":
    run_psycopg()
else:
    asyncio.run(run_asyncpg())
