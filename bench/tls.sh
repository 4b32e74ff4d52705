#!/usr/bin/env bash
# TLS benchmark (see bench/tls.py): a fresh broker with a PLAINTEXT and an SSL listener (a CA and
# a broker certificate made with openssl, SAN localhost and 127.0.0.1), P1/C1 over each, handshake
# time and idle TLS connections' memory; prints the table, stops the broker.
#   bench/tls.sh [ROUNDS]   (needs compat-tests/setup.sh's venv; builds the broker unless SLUICE_BIN is set)
# PIN=0 leaves the broker and the client unpinned (default: broker CPU 0, client CPU 1, as run.sh).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${SLUICE_CACHE:-$HOME/.cache/sluice}
[[ -x "$CACHE/venv/bin/python" ]] || "$REPO/compat-tests/setup.sh"
# rdkafka_performance built with OpenSSL (bench/run.sh's RP_SSL=1 variant, cached beside the other).
RP=$(RP_SSL=1 "$REPO/bench/run.sh" --rdkafka-performance | tail -n 1)
[[ -x "$RP" ]] || { echo "no rdkafka_performance ($RP)" >&2; exit 1; }
if [[ -z "${SLUICE_BIN:-}" ]]; then
  (cd "$REPO" && cargo build --release --bin sluice)
  SLUICE_BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/sluice"
fi
BROKER_PIN=() CLIENT_PIN=()
if [[ "${PIN:-1}" == 1 ]] && command -v taskset >/dev/null && (($(nproc) >= 2)); then
  BROKER_PIN=(taskset -c 0) CLIENT_PIN=(taskset -c 1)
fi
DATA=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench-tls.XXXXXX")
PKI="$DATA.pki"
LOG="$DATA.log"
mkdir -p "$PKI"
(
  cd "$PKI"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=sluice bench CA" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr -subj "/CN=localhost" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >broker.ext
  openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out broker.crt -days 2 \
    -extfile broker.ext 2>/dev/null
  cat broker.key broker.crt >broker.pem
)
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
PORT=$(freeport)
SSL_PORT=$(freeport)
# Up to 10,000 idle TLS connections beside the clients: descriptors for both.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"${BROKER_PIN[@]}" "$SLUICE_BIN" --override "listeners=PLAINTEXT://127.0.0.1:$PORT,SSL://127.0.0.1:$SSL_PORT" \
  --override "ssl.keystore.location=$PKI/broker.pem" --override "log.dirs=$DATA" \
  --override "metrics.listener=" --override max.connections=20000 --override max.connections.per.ip=20000 \
  >"$LOG" 2>&1 &
PID=$!
RC=1
cleanup() {
  kill -TERM "$PID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  rm -rf "$DATA" "$PKI"
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
SLUICE_PID=$PID PIN=${PIN:-1} PYTHONDONTWRITEBYTECODE=1 "${CLIENT_PIN[@]}" "$CACHE/venv/bin/python" -u \
  "$REPO/bench/tls.py" "127.0.0.1:$PORT" "127.0.0.1:$SSL_PORT" "$PKI/ca.pem" "$RP" "${1:-3}"
RC=$?
set -e
trap - EXIT
cleanup
exit "$RC"
