# Sourced by the benchmarks: builds migrate (release) and makes a throwaway PostgreSQL cluster
# of their own — its own port, data under /tmp, run as an unprivileged user when root, removed
# on exit — so figures do not depend on the settings of the machine's server.
#
# Set before sourcing: PORT, OUT (results folder). Then append settings to
# "$BASE/data/postgresql.conf" and call start_cluster. Defines PGBIN, BASE, MIGRATE_BIN, as_pg.

PGBIN="${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}"
export PGBIN
BASE="/tmp/migrate-bench-cluster.$PORT"
RUN_USER="${RUN_USER:-migrate_bench}"

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u "$RUN_USER" -- "$@"; else "$@"; fi; }

if [ "$(id -u)" = 0 ] && ! id "$RUN_USER" >/dev/null 2>&1; then
  useradd -m "$RUN_USER"
fi
bash scripts/setup.sh >/dev/null
cargo build --release --locked --quiet
export MIGRATE_BIN="${CARGO_TARGET_DIR:-target}/release/migrate"

cleanup() {
  set +e
  [ -f "$BASE/data/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$BASE/data" -m immediate -w stop >/dev/null
  rm -rf "$BASE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$BASE" "$OUT"
mkdir -p "$BASE" "$OUT"
[ "$(id -u)" = 0 ] && chown "$RUN_USER": "$BASE" && chmod 777 "$OUT"
as_pg "$PGBIN/initdb" -D "$BASE/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null
cat >>"$BASE/data/postgresql.conf" <<CONF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$BASE'
lc_messages = 'C'
CONF

start_cluster() {
  as_pg "$PGBIN/pg_ctl" -D "$BASE/data" -l "$BASE/server.log" -w -t 120 start >/dev/null
}
