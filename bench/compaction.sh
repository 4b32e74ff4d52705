#!/usr/bin/env bash
# Log compaction benchmark (see bench/compaction.py): starts a fresh broker on a free
# loopback port with a temp data dir, runs the rounds, prints the table, stops the broker.
#   bench/compaction.sh [ROUNDS]   (needs compat-tests/setup.sh's venv; builds the broker unless SLUICE_BIN is set)
# PIN=0 leaves the broker and the client unpinned (default: broker CPU 0, client CPU 1, as run.sh).
# KEEP_LOG=1 keeps the broker's log (it is always kept, and its path printed, when a run fails).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${SLUICE_CACHE:-$HOME/.cache/sluice}
[[ -x "$CACHE/venv/bin/python" ]] || "$REPO/compat-tests/setup.sh"
# The load generator, as bench/run.sh builds it (once, cached).
RP=$("$REPO/bench/run.sh" --rdkafka-performance | tail -n 1)
[[ -x "$RP" ]] || { echo "no rdkafka_performance ($RP)" >&2; exit 1; }
if [[ -z "${SLUICE_BIN:-}" ]]; then
  (cd "$REPO" && cargo build --release --bin sluice)
  SLUICE_BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/sluice"
fi
BROKER_PIN=() CLIENT_PIN=()
if [[ "${PIN:-1}" == 1 ]] && command -v taskset >/dev/null && (($(nproc) >= 2)); then
  BROKER_PIN=(taskset -c 0) CLIENT_PIN=(taskset -c 1)
fi
DATA=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench-compaction.XXXXXX")
LOG="$DATA.log"
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
PORT=$(freeport)
MPORT=$(freeport)  # metrics on (the default), on a free port: 9644 may be another broker's
"${BROKER_PIN[@]}" "$SLUICE_BIN" --override "listeners=PLAINTEXT://127.0.0.1:$PORT" --override "log.dirs=$DATA" \
  --override "metrics.listener=127.0.0.1:$MPORT" --override log.cleaner.backoff.ms=200 >"$LOG" 2>&1 &
PID=$!
RC=1
cleanup() {
  kill -TERM "$PID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  rm -rf "$DATA"
  if grep -q -E 'panicked|ERROR' "$LOG" 2>/dev/null; then
    echo "WARNING: the broker log has panics/errors:" >&2
    grep -E 'panicked|ERROR' "$LOG" | head -20 >&2
    RC=1
  fi
  if [[ "$RC" == 0 && "${KEEP_LOG:-0}" != 1 ]]; then rm -f "$LOG"; else echo "broker log: $LOG" >&2; fi
}
trap cleanup EXIT
for _ in $(seq 300); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$PID" 2>/dev/null || { echo "the broker exited at start-up" >&2; exit 1; }
set +e
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench-compaction-work.XXXXXX")
SLUICE_PID=$PID BROKER_LOG=$LOG WORK=$WORK PYTHONDONTWRITEBYTECODE=1 "${CLIENT_PIN[@]}" "$CACHE/venv/bin/python" -u \
  "$REPO/bench/compaction.py" "127.0.0.1:$PORT" "$DATA" "$RP" "${1:-3}"
RC=$?
set -e
trap - EXIT
cleanup
exit "$RC"
