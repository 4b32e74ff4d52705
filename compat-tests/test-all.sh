#!/usr/bin/env bash
# The project's whole test run (what .ci/run calls): client setup, unit tests, compat suites.
# The last line is run.sh's "N passed, M failed", with the unit tests counted as one more line.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

echo "[test-all] setup: compat-tests/setup.sh"
compat-tests/setup.sh </dev/null || { echo "[test-all] setup.sh failed"; echo "0 passed, 1 failed"; exit 1; }

echo "[test-all] unit tests: cargo test --release"
t0=$SECONDS
if cargo test --release </dev/null; then unit=pass; else unit=fail; fi
echo "[test-all] cargo test --release: $unit"

SLUICE_SKIP_SETUP=1 SLUICE_UNIT_TESTS="$unit" SLUICE_UNIT_TESTS_SECS=$((SECONDS - t0)) compat-tests/run.sh "$@"
