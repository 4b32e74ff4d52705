#!/usr/bin/env bash
# Consumer-group timing benchmark (see bench/groups.py): starts a fresh broker on a free loopback
# port with a temp data dir, runs the rounds, prints the table, stops the broker.
#   bench/groups.sh [ROUNDS]      (needs compat-tests/setup.sh's venv; builds the broker unless SLUICE_BIN is set)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${SLUICE_CACHE:-$HOME/.cache/sluice}
[[ -x "$CACHE/venv/bin/python" ]] || "$REPO/compat-tests/setup.sh"
if [[ -z "${SLUICE_BIN:-}" ]]; then
  (cd "$REPO" && cargo build --release --bin sluice)
  SLUICE_BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/sluice"
fi
DATA=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench-groups.XXXXXX")
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
PORT=$(freeport)
MPORT=$(freeport)  # metrics on (the default), on a free port: 9644 may be another broker's
"$SLUICE_BIN" --override "listeners=PLAINTEXT://127.0.0.1:$PORT" --override "log.dirs=$DATA" \
  --override "metrics.listener=127.0.0.1:$MPORT" >"$DATA.log" 2>&1 &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DATA" "$DATA.log"' EXIT
for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
PYTHONDONTWRITEBYTECODE=1 "$CACHE/venv/bin/python" -u "$REPO/bench/groups.py" "127.0.0.1:$PORT" "${1:-3}"
