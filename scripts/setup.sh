#!/usr/bin/env bash
# Installs and starts what migrate needs on a Debian/Ubuntu machine, whatever is already there:
#   - libclang (the PostgreSQL parser crate generates its bindings with it)
#   - with --postgres: a PostgreSQL server, started, reachable at 127.0.0.1:5432 as `postgres`.
#   - with --clients: the real app clients the tests drive through the version schemas —
#     Debian's ruby-activerecord and ruby-pg, libpostgresql-jdbc-java with a JDK, PgBouncer,
#     and psycopg 3 and asyncpg from PyPI in a virtualenv ($MIGRATE_CLIENTS_VENV, default
#     ~/.cache/migrate-clients/venv).
# Safe to run again: it only installs or starts what is missing.
# Prints `export MIGRATE_TEST_DATABASE_URL=…` when the server needs a password to reach.
set -euo pipefail

want_postgres=false
want_clients=false
for arg in "$@"; do
  case "$arg" in
    --postgres) want_postgres=true ;;
    --clients) want_clients=true ;;
    *) printf 'setup: unknown option %s\n' "$arg" >&2; exit 2 ;;
  esac
done

say() { printf 'setup: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=false
apt_install() {
  if ! $apt_updated; then as_root apt-get update -qq >&2; apt_updated=true; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >&2
}

if ! command -v cargo >/dev/null 2>&1; then
  say "cargo is not installed: install a Rust toolchain (rustup) first"; exit 2
fi

# libclang itself, not libclang-cpp (which comes with other LLVM packages and is no use here).
if ! ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* >/dev/null 2>&1 \
   && ! ldconfig -p 2>/dev/null | grep -Eq 'libclang(-[0-9.]+)?\.so'; then
  say "installing libclang-dev"
  apt_install libclang-dev
fi

if $want_clients; then
  missing=()
  ruby -e 'require "active_record"; require "pg"' >/dev/null 2>&1 || missing+=(ruby-activerecord ruby-pg)
  [ -f /usr/share/java/postgresql.jar ] || missing+=(libpostgresql-jdbc-java)
  command -v javac >/dev/null 2>&1 || missing+=(default-jdk-headless)
  command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
  python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)   # venv's --help works without it
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing the app clients the tests drive: ${missing[*]}"
    apt_install "${missing[@]}"
  fi
  venv="${MIGRATE_CLIENTS_VENV:-$HOME/.cache/migrate-clients/venv}"
  if ! "$venv/bin/python" -c 'import psycopg, asyncpg' >/dev/null 2>&1; then
    say "installing psycopg and asyncpg from PyPI into $venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q 'psycopg[binary]>=3.1,<4' 'asyncpg>=0.29,<1' >&2
  fi
  echo "export MIGRATE_CLIENTS_PYTHON=$venv/bin/python"
fi

$want_postgres || exit 0

if ! command -v pg_ctlcluster >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  say "installing PostgreSQL"
  apt_install postgresql postgresql-client
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  version=$(ls /usr/lib/postgresql | sort -n | tail -1)
  if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -q "^$version main$"; then
    say "creating cluster $version/main"
    as_root pg_createcluster "$version" main >&2
  fi
  say "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -q -h 127.0.0.1 -p 5432 || { say "PostgreSQL does not answer on 127.0.0.1:5432"; exit 2; }

# Fresh installs ask for a password over TCP: give the postgres role one for the tests.
if [ -z "${MIGRATE_TEST_DATABASE_URL:-}" ] && ! psql "postgres://postgres@127.0.0.1:5432/postgres" -qAtc 'SELECT 1' >/dev/null 2>&1; then
  say "setting a password for the postgres role (tests connect over TCP)"
  as_root runuser -u postgres -- psql -qc "ALTER ROLE postgres PASSWORD 'postgres'" >&2
  echo "export MIGRATE_TEST_DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/postgres"
fi
