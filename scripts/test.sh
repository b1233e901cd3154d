#!/usr/bin/env bash
# The test command: installs libclang and PostgreSQL if missing, starts PostgreSQL if stopped,
# installs the real app clients the tests drive (ActiveRecord, psycopg, asyncpg, JDBC,
# PgBouncer), then runs every test against it (each test creates and drops its own database).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/setup.sh --postgres --clients)"
# The failpoints feature builds the test hook that stops the binary at a chosen checkpoint.
cargo test --locked --features failpoints "$@"
