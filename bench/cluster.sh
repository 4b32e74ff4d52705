#!/usr/bin/env bash
# The cluster benchmark (bench/README.md, "Cluster"): three Sluice nodes on loopback.
#   bench/cluster.sh [--no-build] [ROUNDS]
# Needs compat-tests/setup.sh's venv (confluent-kafka) and rdkafka_performance (built and
# cached by bench/run.sh). Prints the table and writes bench/out/cluster.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
NO_BUILD=0
ROUNDS=3
for a in "$@"; do
  case "$a" in
    --no-build) NO_BUILD=1 ;;
    [0-9]*) ROUNDS=$a ;;
    *) echo "usage: bench/cluster.sh [--no-build] [ROUNDS]" >&2; exit 2 ;;
  esac
done
[[ -x "$CACHE/venv/bin/python" ]] || compat-tests/setup.sh </dev/null
RP=$(bench/run.sh --rdkafka-performance | tail -n 1)
[[ $NO_BUILD == 1 ]] || cargo build --release
BIN="${SLUICE_BIN:-${CARGO_TARGET_DIR:-target}/release/sluice}"
export PYTHONDONTWRITEBYTECODE=1 NO_COLOR=1
exec "$CACHE/venv/bin/python" -u bench/cluster.py "$RP" "$(realpath "$BIN")" "$ROUNDS"
