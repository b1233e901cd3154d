#!/usr/bin/env bash
# What the GitHub Action (action.yml) runs: `migrate plan` on the migration files a change adds
# or modifies, the earlier files of their folder replayed as context, with annotations on the
# diff (the github reporter) and a SARIF file for code scanning. Exit 1 when a finding is at
# error level, as `migrate plan` exits.
#
# Environment:
#   MIGRATE      the migrate binary (default: migrate on PATH)
#   MIGRATIONS   the migrations folder (default: migrations)
#   BASE         the git revision to compare with (default: origin/HEAD, else HEAD~1)
#   PG_VERSION   the target server version (default: from migrate.toml, else 15)
#   SARIF        where to write the SARIF report (default: none)
set -euo pipefail

migrate="${MIGRATE:-migrate}"
dir="${MIGRATIONS:-migrations}"
base="${BASE:-}"
if [ -z "$base" ]; then
  base="$(git rev-parse --verify --quiet origin/HEAD || git rev-parse HEAD~1)"
fi
version=()
[ -n "${PG_VERSION:-}" ] && version=(--pg-version "$PG_VERSION")

# Added or modified files under the folder; a deleted one has nothing left to lint. Each
# migration is a .sql file or a folder's up.sql (diesel).
mapfile -t changed < <(git diff --name-only --diff-filter=AM "$base"...HEAD -- "$dir" | grep -E '\.sql$' || true)
if [ "${#changed[@]}" -eq 0 ]; then
  echo "migrate plan: no migration file changed under $dir since $base"
  exit 0
fi
echo "migrate plan: ${#changed[@]} changed file(s): ${changed[*]}" >&2
if [ -n "${SARIF:-}" ]; then
  # Its exit code is the annotations' to give.
  "$migrate" plan --format sarif "${version[@]}" "${changed[@]}" >"$SARIF" || true
fi
exec "$migrate" plan --format github "${version[@]}" "${changed[@]}"
