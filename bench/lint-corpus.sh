#!/usr/bin/env bash
# Lints a generated corpus with migrate and with squawk (PyPI squawk-cli), side by side in one
# run, and prints files/s and statements/s for each (median of ROUNDS interleaved runs).
#   bench/lint-corpus.sh                 # 2,400 files, ~15,000 statements, 5 rounds
#   FILES=5000 ROUNDS=7 bench/lint-corpus.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
FILES="${FILES:-2400}"
ROUNDS="${ROUNDS:-5}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/migrate-bench"
corpus="$cache/corpus-$FILES"
mkdir -p "$cache"

"$root/scripts/setup.sh"
if [ ! -x "$cache/venv/bin/squawk" ]; then
  python3 -m venv "$cache/venv"
  "$cache/venv/bin/pip" install -q squawk-cli
fi
squawk="$cache/venv/bin/squawk"
cargo build --release --locked --quiet --manifest-path "$root/Cargo.toml"
migrate="${CARGO_TARGET_DIR:-$root/target}/release/migrate"

python3 "$root/bench/gen_corpus.py" "$corpus" "$FILES"
statements=$(cat "$corpus/STATEMENTS")

python3 - "$migrate" "$squawk" "$corpus" "$FILES" "$statements" "$ROUNDS" <<'PY'
import statistics, subprocess, sys, time
migrate, squawk, corpus, files, statements, rounds = sys.argv[1:7]
files, statements, rounds = int(files), int(statements), int(rounds)
cmds = {
    "migrate plan --format json": [migrate, "plan", "--format", "json", corpus],
    "migrate plan --format json --explain (full plans)": [migrate, "plan", "--format", "json", "--explain", corpus],
    "squawk --reporter json": [squawk, "--reporter", "json", corpus + "/*.sql"],  # squawk takes file patterns
}
times = {k: [] for k in cmds}
for _ in range(rounds):
    for name, cmd in cmds.items():  # interleaved, so drift on a shared machine hits both
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times[name].append(time.perf_counter() - t0)
ver = lambda cmd: subprocess.run([cmd, "--version"], capture_output=True, text=True).stdout.split()[-1]
print(f"\ncorpus: {files} files, {statements} statements ({corpus})")
print(f"{rounds} rounds, interleaved; median wall time")
print("| tool | median s | files/s | statements/s | runs (s) |\n|---|---|---|---|---|")
med = {k: statistics.median(v) for k, v in times.items()}
versions = {"migrate": ver(migrate), "squawk": ver(squawk)}
for name in cmds:
    m = med[name]
    runs = " ".join(f"{t:.3f}" for t in times[name])
    tool = name.split()[0]
    print(f"| {tool} {versions[tool]}: `{name.split(' ', 1)[1]}` | {m:.3f} | {files / m:,.0f} | {statements / m:,.0f} | {runs} |")
base = med["squawk --reporter json"]
for name in list(cmds)[:2]:
    print(f"{name}: {base / med[name]:.2f}x squawk's throughput")
PY
