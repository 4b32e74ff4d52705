#!/usr/bin/env bash
# Coverage-guided fuzzing of request decoding and the record-batch validator, for a bounded time:
#   fuzz/run.sh [SECONDS_PER_TARGET]   (default 60; the compat runner's `fuzz` suite)
#
# Installs cargo-fuzz (pinned) if it is missing, builds both targets (libFuzzer, no sanitizer:
# the broker has no unsafe code on these paths, and a stable toolchain cannot build ASan), and
# runs each from a corpus kept in ${SLUICE_CACHE:-$HOME/.cache/sluice}/fuzz/<target>, seeded from
# fuzz/seeds/<target> (frames real clients sent, captured with compat-tests/lib/wiretap.py).
# Prints "PASS <target>" or "FAIL <target>: ..." with the crashing input kept and printed (hex).
set -uo pipefail
cd "$(dirname "$0")"
SECS="${1:-60}"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}/fuzz"
CARGO_FUZZ_VERSION=0.13.2
mkdir -p "$CACHE"

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "# installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION" </dev/null || {
    echo "FAIL setup: cargo install cargo-fuzz failed"; exit 1; }
fi
echo "# building the fuzz targets"
if ! cargo fuzz build --sanitizer none -O </dev/null >"$CACHE/build.log" 2>&1; then
  tail -n 30 "$CACHE/build.log"
  echo "FAIL build: cargo fuzz build failed"
  exit 1
fi

failed=0
for target in request records; do
  corpus="$CACHE/corpus/$target"
  artifacts="$CACHE/artifacts/$target/"
  mkdir -p "$corpus" "$artifacts"
  cp -n seeds/"$target"/* "$corpus"/ 2>/dev/null
  log="$CACHE/$target.log"
  t0=$SECONDS
  cargo fuzz run --sanitizer none -O "$target" "$corpus" -- \
    -max_total_time="$SECS" -rss_limit_mb=2048 -max_len=65536 -timeout=10 \
    -artifact_prefix="$artifacts" -print_final_stats=1 </dev/null >"$log" 2>&1
  rc=$?
  runs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$')"
  cov="$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1)"
  echo "# $target: ${runs:-?} inputs in $((SECONDS - t0)) s, $cov, corpus $(ls "$corpus" | wc -l) files"
  if ((rc == 0)); then
    echo "PASS $target"
  else
    failed=1
    crash="$(grep -oE "Test unit written to [^ ]+" "$log" | tail -n 1 | sed 's/Test unit written to //')"
    grep -E "panicked|ERROR|SUMMARY" "$log" | head -n 5 | sed 's/^/    /'
    [[ -n "$crash" && -f "$crash" ]] && { echo "    input (hex): $(head -c 512 "$crash" | od -An -tx1 -v | tr -d ' \n')"; }
    echo "FAIL $target: libFuzzer exit $rc (log $log${crash:+, input $crash})"
  fi
done
exit "$failed"
