"""Generates a deterministic corpus of realistic migration files for bench/lint-corpus.sh.

Usage: gen_corpus.py DIR FILES. Writes DIR/NNNNN_name.sql and DIR/STATEMENTS (the count).
Each file mixes what real migrations hold: tables, columns, indexes, constraints, type changes,
backfills, functions with dollar-quoted bodies, comments.
"""
import os
import random
import sys

out, files = sys.argv[1], int(sys.argv[2])
marker = os.path.join(out, "STATEMENTS")
if os.path.exists(marker) and len([f for f in os.listdir(out) if f.endswith(".sql")]) == files:
    sys.exit(0)
os.makedirs(out, exist_ok=True)
for f in os.listdir(out):
    os.remove(os.path.join(out, f))

rng = random.Random(20261122)
tables = []
total = 0


def col():
    return rng.choice(["name", "email", "status", "amount", "note", "kind", "score", "region"]) + f"_{rng.randrange(50)}"


TYPES = ["text", "bigint", "integer", "varchar(120)", "numeric(12,2)", "timestamptz", "boolean", "jsonb", "uuid"]

for i in range(1, files + 1):
    stmts = []
    if not tables or rng.random() < 0.15:
        t = f"t{i}"
        cols = ",\n    ".join(f"{col()} {rng.choice(TYPES)}" for _ in range(rng.randrange(3, 9)))
        stmts.append(f"CREATE TABLE {t} (\n    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n    {cols}\n)")
        stmts.append(f"CREATE INDEX {t}_created_idx ON {t} (id)")
        tables.append(t)
    for _ in range(rng.randrange(3, 9)):
        t = rng.choice(tables)
        c = col()
        k = rng.randrange(12)
        if k == 0:
            stmts.append(f"ALTER TABLE {t} ADD COLUMN {c}_{i} {rng.choice(TYPES)}")
        elif k == 1:
            stmts.append(f"ALTER TABLE {t} ADD COLUMN {c}_{i} text NOT NULL DEFAULT 'x'")
        elif k == 2:
            stmts.append(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {t}_{c}_{i}_idx ON {t} ({c})")
        elif k == 3:
            stmts.append(f"CREATE INDEX {t}_{c}_{i}_idx ON {t} (lower({c}::text)) WHERE {c} IS NOT NULL")
        elif k == 4:
            stmts.append(f"ALTER TABLE {t} ADD CONSTRAINT {t}_{c}_{i}_chk CHECK (length({c}::text) < 500) NOT VALID")
        elif k == 5:
            stmts.append(f"ALTER TABLE {t} ALTER COLUMN {c} TYPE text")
        elif k == 6:
            stmts.append(f"UPDATE {t} SET {c} = NULL WHERE id < {rng.randrange(1000, 100000)}")
        elif k == 7:
            stmts.append(f"COMMENT ON TABLE {t} IS 'migration {i}; touched {c}'")
        elif k == 8:
            stmts.append(
                f"CREATE OR REPLACE FUNCTION {t}_touch_{i}() RETURNS trigger LANGUAGE plpgsql AS $fn$\n"
                f"BEGIN\n  NEW.{c} := coalesce(NEW.{c}, 'n/a'); -- keep it; not null\n  RETURN NEW;\nEND\n$fn$"
            )
        elif k == 9:
            stmts.append(f"ALTER TABLE {t} RENAME COLUMN {c} TO {c}_v{i}")
        elif k == 10:
            other = rng.choice(tables)
            stmts.append(f"ALTER TABLE {t} ADD CONSTRAINT {t}_{i}_fk FOREIGN KEY ({c}) REFERENCES {other} (id) NOT VALID")
        else:
            stmts.append(f"ALTER TABLE {t} ALTER COLUMN {c} SET DEFAULT 0")
    total += len(stmts)
    body = f"-- migration {i}: generated for the lint benchmark\n" + ";\n\n".join(stmts) + ";\n"
    with open(os.path.join(out, f"{i:05d}_change_{i}.sql"), "w") as f:
        f.write(body)

with open(marker, "w") as f:
    f.write(str(total))
