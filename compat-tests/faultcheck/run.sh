#!/usr/bin/env bash
# The fault checker (faultcheck.py): one command that builds the broker, installs the clients into
# the cache (compat-tests/setup.sh) and runs the checker; arguments go to faultcheck.py
# (--help lists them). As a suite of compat-tests/run.sh it gets SLUICE_BIN and SLUICE_DATA_DIR and
# skips setup and build (done already).
#
#   compat-tests/faultcheck/run.sh                         # short schedule: each fault once (~4 min)
#   compat-tests/faultcheck/run.sh --schedule long --duration 900 --seed 7
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
if [[ -z "${SLUICE_SKIP_SETUP:-}" ]]; then
  "$ROOT/compat-tests/setup.sh" >&2
fi
if [[ -z "${SLUICE_SKIP_BUILD:-}" ]]; then
  (cd "$ROOT" && cargo build --release --bin sluice >&2)
fi
export SLUICE_BIN="${SLUICE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice}"
# The kafka-clients (Java) producer: SLUICE_TXN_CLASSPATH, or the reason it is left out.
# shellcheck source=../java/txnclient-classpath.sh
source "$ROOT/compat-tests/java/txnclient-classpath.sh"
export PYTHONDONTWRITEBYTECODE=1 # keep the work tree clean
# The work dir is chosen here so that whatever a crashed checker left (brokers by their PID files,
# network namespaces, the tmpfs) can be cleaned up after it.
WORK=""
ARGS=()
while (($#)); do
  case "$1" in
    --work) WORK="$2"; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
if [[ -z "$WORK" ]]; then
  if [[ -n "${SLUICE_DATA_DIR:-}" ]]; then
    WORK="$SLUICE_DATA_DIR" # under compat-tests/run.sh: its fresh dir, kept by it on failure
    ARGS+=(--keep)
  else
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/sluice-faultcheck.XXXXXX")"
  fi
fi
cleanup() {
  for f in "$WORK"/node*.pid; do
    [[ -f "$f" ]] || continue
    pid="$(cat "$f")"
    if [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "log.dirs=$WORK/"; then
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  while read -r _ mnt _; do
    [[ "$mnt" == "$WORK"/* ]] && umount -l "$mnt" 2>/dev/null || true
  done </proc/mounts
  for ns in $(ip netns list 2>/dev/null | awk '/^sluicecut[0-9]/ {print $1}'); do ip netns del "$ns" || true; done
  ip link del sluicecutbr 2>/dev/null || true
}
trap 'cleanup; exit 1' TERM INT
set +e
"$CACHE/venv/bin/python" -u -X faulthandler "$HERE/faultcheck.py" --work "$WORK" "${ARGS[@]}"
STATUS=$?
set -e
if ((STATUS > 2)); then
  echo "# faultcheck: the checker died (status $STATUS); stopping what it left" >&2
  cleanup
  STATUS=1
fi
exit "$STATUS"
