#!/usr/bin/env bash
# Lints real projects' migration folders with migrate and with squawk (PyPI squawk-cli), side by
# side in one run, interleaved, and prints the median wall time of each and the ratio to squawk.
# Two ways of naming the files, both as CI steps do it:
#   - the directory:  migrate plan migrations
#   - every file:     migrate plan migrations/*/up.sql   (each file checked against the ones before)
# squawk has no directory mode that knows the earlier files; it is given the same file list.
#
# The projects are not committed: each is read from a git mirror at run time and its migration
# folder extracted into a temporary directory that is removed afterwards.
#   bench/lint-corpus.sh                       # 3 projects, 31 rounds (each a fraction of a second)
#   ROUNDS=9 MIRRORS=/path/to/mirrors bench/lint-corpus.sh
# MIRRORS holds owner+name/repo git directories (default /work/.mirror); a project whose mirror is
# missing is cloned from GitHub when that is reachable, else skipped with a message.
# SYNTHETIC=2400 adds the generated corpus of bench/gen_corpus.py as a fourth set.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS="${ROUNDS:-31}"
MIRRORS="${MIRRORS:-/work/.mirror}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/migrate-bench"
mkdir -p "$cache"

"$root/scripts/setup.sh"
if [ ! -x "$cache/venv/bin/squawk" ]; then
  python3 -m venv "$cache/venv"
  "$cache/venv/bin/pip" install -q squawk-cli
fi
squawk="$cache/venv/bin/squawk"
cargo build --release --locked --quiet --manifest-path "$root/Cargo.toml"
migrate="${CARGO_TARGET_DIR:-$root/target}/release/migrate"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# name | owner/repo | folder in the repository | files to keep (a grep -E over paths) | files to drop
projects=(
  "crates.io (diesel)|rust-lang/crates.io|migrations|/up\.sql$|^$"
  "lemmy (diesel)|LemmyNet/lemmy|migrations|/up\.sql$|^$"
  "kratos (popx)|ory/kratos|persistence/sql/migrations/sql|\.up\.sql$|\.(cockroach|mysql|sqlite3?)\."
)
sets=()
for p in "${projects[@]}"; do
  IFS='|' read -r name repo folder keep drop <<<"$p"
  git_dir="$MIRRORS/${repo/\//+}/repo"
  if [ ! -d "$git_dir" ]; then
    git_dir="$cache/mirrors/${repo/\//+}"
    if [ ! -d "$git_dir" ] && ! git clone -q --bare --depth 1 "https://github.com/$repo" "$git_dir" 2>/dev/null; then
      echo "skipping $name: no mirror of $repo in $MIRRORS and GitHub is not reachable" >&2
      continue
    fi
  fi
  commit=$(git -C "$git_dir" rev-parse --short=12 HEAD)
  dest="$work/${repo/\//+}"
  mkdir -p "$dest"
  git -C "$git_dir" archive HEAD "$folder" | tar -x -C "$dest"
  # Keep what a PostgreSQL team runs: the up files, of PostgreSQL where a project has dialects.
  (cd "$dest" && find "$folder" -type f | grep -Ev "$keep" | xargs -r rm -f
   find "$folder" -type f | grep -E "$drop" | xargs -r rm -f) || true
  sets+=("$name @ $commit|$dest/$folder")
done
if [ -n "${SYNTHETIC:-}" ]; then
  python3 "$root/bench/gen_corpus.py" "$work/synthetic" "$SYNTHETIC"
  rm -f "$work/synthetic/STATEMENTS"
  sets+=("generated ($SYNTHETIC files)|$work/synthetic")
fi
[ ${#sets[@]} -gt 0 ] || { echo "no migration sets to measure" >&2; exit 2; }

python3 - "$migrate" "$squawk" "$ROUNDS" "${sets[@]}" <<'PY'
import json, os, statistics, subprocess, sys, time
migrate, squawk, rounds, *sets = sys.argv[1:]
rounds = int(rounds)
ver = lambda cmd: subprocess.run([cmd, "--version"], capture_output=True, text=True).stdout.split()[-1]
print(f"\nmigrate {ver(migrate)}, squawk {ver(squawk)}; {rounds} rounds, interleaved; median wall time (s), the fastest and slowest round after it\n")
print("| project | files | migrate DIR | migrate FILE… | squawk FILE… | DIR / squawk | FILE… / squawk |")
print("|---|---|---|---|---|---|---|")
for s in sets:
    name, folder = s.split("|", 1)
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(folder) for f in fs if f.endswith(".sql"))
    cmds = {
        "dir": [migrate, "plan", "--format", "json", folder],
        "files": [migrate, "plan", "--format", "json", *files],
        "squawk": [squawk, "--reporter", "json", *files],
    }
    times = {k: [] for k in cmds}
    for _ in range(rounds):
        for k, cmd in cmds.items():  # interleaved, so drift on a shared machine hits all three
            t0 = time.perf_counter()
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            times[k].append(time.perf_counter() - t0)
            if k != "squawk" and r.returncode not in (0, 1):
                sys.exit(f"{' '.join(cmd[:4])} … exited {r.returncode}")
    out = json.loads(subprocess.run(cmds["dir"], capture_output=True).stdout)
    unreadable = sum(1 for x in out["findings"] if x["rule"] in ("syntax-error", "unreadable-file"))
    med = {k: statistics.median(v) for k, v in times.items()}
    cell = lambda k: f"{med[k]:.3f} ({min(times[k]):.3f}–{max(times[k]):.3f})"
    print(f"| {name} | {len(files)} | {cell('dir')} | {cell('files')} | {cell('squawk')} | "
          f"{med['dir'] / med['squawk']:.2f}× | {med['files'] / med['squawk']:.2f}× |")
    if unreadable:
        print(f"|  ↳ {name}: {unreadable} syntax-error / unreadable-file findings | | | | | | |")
print("\nRatios are wall time against squawk's on the same files: below 1 is faster.")
PY
