#!/usr/bin/env bash
# The real-client compat runner: compat-tests/run.sh [suite...]
#
# Runs setup.sh (clients into ${SLUICE_CACHE:-$HOME/.cache/sluice}) and `cargo build --release`,
# then for each suite: a fresh broker on a free loopback port with a temp data dir, the suite under
# a timeout, then SIGTERM (SIGKILL after 10 s). A suite passes when it exits 0, or when every check
# it failed is listed in allowlist.txt. On failure the suite output and broker log are kept and the
# log's tail is printed. The last line is exactly "N passed, M failed" (suites).
#
# Environment:
#   SLUICE_SKIP_SETUP=1   do not run setup.sh        SLUICE_SKIP_BUILD=1  do not run cargo build
#   SLUICE_BIN=path       broker binary (default: ${CARGO_TARGET_DIR:-target}/release/sluice)
#   SLUICE_NUM_MESSAGES   messages per codec run (default 10000)
#   SLUICE_SUITE_TIMEOUT  seconds per suite, overriding the built-in per-suite timeouts
#   SLUICE_KEEP_LOGS=1    keep the work dir even when everything passed
#   SLUICE_FUZZ_SECONDS   seconds per fuzz target in the fuzz suite (default 60)
#   SLUICE_FAULTCHECK_ARGS  arguments for the faultcheck suite (default: the short schedule)
#   SLUICE_WIRETAP=1      relay every suite through lib/wiretap.py and print the APIs and versions
#                         each client sent (the broker advertises the relay's port)
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CT="$ROOT/compat-tests"
ALL_SUITES=(java-4.3.0 java-3.9.1 kcat confluent-kafka kafka-python kafkajs crash
  java-groups confluent-kafka-groups kafka-python-groups kafkajs-groups groups-restart observability
  transactions confluent-kafka-txn kafka-python-txn compaction connect old-clients security acls hardening cluster faultcheck fuzz)
# Suites that start, kill -9 and restart their own broker (run.sh only gives them a port and a dir),
# or need none (fuzz).
SELF_MANAGED=" crash groups-restart observability transactions compaction connect security acls hardening cluster faultcheck fuzz "

suite_cmd() {
  case "$1" in
    java-4.3.0) echo "$CT/java/run.sh 4.3.0" ;;
    java-3.9.1) echo "$CT/java/run.sh 3.9.1" ;;
    kcat | confluent-kafka | kafka-python | kafkajs | crash | groups-restart | observability | transactions | compaction | connect | old-clients | security | acls | hardening | cluster) echo "$CT/$1/run.sh" ;;
    java-groups) echo "$CT/java/run.sh 4.3.0 groups-suite" ;;
    fuzz) echo "$ROOT/fuzz/run.sh ${SLUICE_FUZZ_SECONDS:-60}" ;;
    faultcheck) echo "env SLUICE_SKIP_SETUP=1 SLUICE_SKIP_BUILD=1 $CT/faultcheck/run.sh ${SLUICE_FAULTCHECK_ARGS:-}" ;;
    confluent-kafka-groups | kafka-python-groups | kafkajs-groups) echo "$CT/${1%-groups}/groups.sh" ;;
    confluent-kafka-txn | kafka-python-txn) echo "$CT/${1%-txn}/txn.sh" ;;
    *) return 1 ;;
  esac
}

# Seconds; generous against a slow CI machine, far above a healthy run (see FINDINGS.md for timings).
suite_timeout() {
  if [[ -n "${SLUICE_SUITE_TIMEOUT:-}" ]]; then echo "$SLUICE_SUITE_TIMEOUT"; return; fi
  case "$1" in
    kafka-python) echo 420 ;;
    crash) echo 300 ;;
    cluster) echo 480 ;;
    connect) echo 420 ;;
    faultcheck) echo 600 ;;
    fuzz) echo 900 ;;
    *) echo 300 ;;
  esac
}

usage() {
  echo "usage: compat-tests/run.sh [suite...]   suites: ${ALL_SUITES[*]}" >&2
  exit 2
}

SUITES=()
for a in "$@"; do
  case "$a" in
    -h | --help) usage ;;
    *) suite_cmd "$a" >/dev/null || { echo "unknown suite: $a" >&2; usage; }; SUITES+=("$a") ;;
  esac
done
((${#SUITES[@]})) || SUITES=("${ALL_SUITES[@]}")

# Plain logs: the broker (tracing) and node colour their output unless NO_COLOR is set.
export NO_COLOR=1
WORK="$(mktemp -d "${TMPDIR:-/tmp}/sluice-compat.XXXXXX")"
BROKER_PID=""
say() { printf '[compat] %s\n' "$*"; }

# ------------------------------------------------------------------ process helpers (by PID only)
is_running() { # alive and not a zombie
  [[ -n "$1" && -r "/proc/$1/stat" ]] || return 1
  local state
  state="$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ "$state" != "Z" && "$state" != "X" ]]
}

# stop_pid PID: SIGTERM, wait up to 10 s, then SIGKILL. Prints how it ended.
stop_pid() {
  local pid="$1" i
  is_running "$pid" || { echo "already exited"; return 0; }
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 100; i++)); do
    is_running "$pid" || { echo "stopped by SIGTERM"; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
  for ((i = 0; i < 50; i++)); do is_running "$pid" || break; sleep 0.1; done
  echo "did not stop within 10 s of SIGTERM: SIGKILLed"
  return 1
}

cleanup() {
  [[ -n "$BROKER_PID" ]] && stop_pid "$BROKER_PID" >/dev/null
  local f pid
  for f in "$WORK"/*/broker.pid "$WORK"/*/data.*/node*.pid; do
    [[ -f "$f" ]] || continue
    pid="$(cat "$f")"
    # Only a broker we started: its command line must be our binary.
    if is_running "$pid" && grep -qa -- "--override" "/proc/$pid/cmdline" 2>/dev/null; then
      stop_pid "$pid" >/dev/null
    fi
  done
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_listening() { # wait_listening PID PORT: up to 30 s
  local i
  for ((i = 0; i < 300; i++)); do
    is_running "$1" || return 1
    (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# ------------------------------------------------------------------ allow-list
# Lines: SUITE CHECK REASON... (SUITE and CHECK are shell globs). '#' starts a comment.
allowed_reason() { # allowed_reason SUITE CHECK -> prints the reason, or fails
  local s c reason
  [[ -f "$CT/allowlist.txt" ]] || return 1
  while read -r s c reason; do
    [[ -z "$s" || "$s" == \#* ]] && continue
    # shellcheck disable=SC2053 # globs on purpose
    if [[ "$1" == $s && "$2" == $c ]]; then
      echo "${reason:-no reason given}"
      return 0
    fi
  done <"$CT/allowlist.txt"
  return 1
}

# ------------------------------------------------------------------ setup and build
declare -A RESULT DETAIL SECS
passed=0
failed=0
fatal=""

if [[ "${SLUICE_SKIP_SETUP:-}" != 1 ]]; then
  say "setup: $CT/setup.sh"
  if ! "$CT/setup.sh" </dev/null >"$WORK/setup.log" 2>&1; then
    tail -n 30 "$WORK/setup.log"
    fatal="setup.sh failed (log: $WORK/setup.log)"
  fi
fi

BIN="${SLUICE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice}"
if [[ -z "$fatal" && "${SLUICE_SKIP_BUILD:-}" != 1 ]]; then
  say "build: cargo build --release"
  if ! (cd "$ROOT" && cargo build --release </dev/null >"$WORK/build.log" 2>&1); then
    grep -E '^(error|warning: unused)' -A5 "$WORK/build.log" | head -n 40
    tail -n 5 "$WORK/build.log"
    fatal="cargo build --release failed (log: $WORK/build.log)"
  fi
fi
if [[ -z "$fatal" && ! -x "$BIN" ]]; then fatal="no broker binary at $BIN"; fi

# ------------------------------------------------------------------ one suite
run_suite() {
  local suite="$1" dir="$WORK/$1" port t0 rc out log cmd tmo exit_note=""
  mkdir -p "$dir"
  out="$dir/output.txt"
  log="$dir/broker.log"
  port="$(free_port)"
  local data
  data="$(mktemp -d "$dir/data.XXXXXX")"
  cmd="$(suite_cmd "$suite")"
  tmo="$(suite_timeout "$suite")"
  t0=$SECONDS
  say "---- $suite (port $port, timeout ${tmo}s)"

  local tap_pid="" bport="$port" mport
  mport="$(free_port)"
  if [[ "$SELF_MANAGED" != *" $suite "* ]]; then
    if [[ "${SLUICE_WIRETAP:-}" == 1 ]]; then
      # Clients talk to the relay (port), the broker listens on bport and advertises the relay.
      bport="$(free_port)"
      python3 "$CT/lib/wiretap.py" "$port" "$bport" "$dir/wire.txt" </dev/null >"$dir/wiretap.log" 2>&1 &
      tap_pid=$!
    fi
    "$BIN" --override "listeners=PLAINTEXT://127.0.0.1:$bport" \
      --override "advertised.listeners=PLAINTEXT://127.0.0.1:$port" \
      --override "log.dirs=$data" --override "metrics.listener=127.0.0.1:$mport" </dev/null >"$log" 2>&1 &
    BROKER_PID=$!
    if ! wait_listening "$BROKER_PID" "$bport" || { [[ -n "$tap_pid" ]] && ! wait_listening "$tap_pid" "$port"; }; then
      RESULT[$suite]=FAIL
      if is_running "$BROKER_PID"; then
        DETAIL[$suite]="broker did not listen on 127.0.0.1:$bport within 30 s"
      else
        DETAIL[$suite]="broker exited before listening on 127.0.0.1:$bport"
      fi
      say "$suite FAILED: ${DETAIL[$suite]}; last lines of the broker log $log:"
      tail -n 40 "$log" 2>/dev/null | cut -c1-400 | sed 's/^/    /'
      stop_pid "$BROKER_PID" >/dev/null
      [[ -n "$tap_pid" ]] && stop_pid "$tap_pid" >/dev/null
      BROKER_PID=""
      SECS[$suite]=$((SECONDS - t0))
      return
    fi
  fi

  # The crash suite manages its own broker (kill -9, restart) with these.
  SLUICE_BOOTSTRAP="127.0.0.1:$port" SLUICE_BIN="$BIN" SLUICE_PORT="$port" SLUICE_DATA_DIR="$data" SLUICE_METRICS_PORT="$mport" \
    SLUICE_BROKER_LOG="$log" SLUICE_PID_FILE="$dir/broker.pid" \
    timeout --kill-after=10 "$tmo" $cmd </dev/null 2>&1 | tee "$out" | grep --line-buffered -E '^(PASS|FAIL|#)'
  rc=${PIPESTATUS[0]}

  local pidfile own m
  for pidfile in "$dir/broker.pid" "$data"/node*.pid "$data"/extra-*.pid; do
    # A self-managed suite's own brokers (and helper processes: "PID MARKER" in extra-*.pid, MARKER
    # a string of their command line): normally stopped by the suite, not if it timed out.
    [[ -f "$pidfile" ]] || continue
    local marker="--override"
    read -r own m <"$pidfile" && [[ -n "${m:-}" ]] && marker="$m"
    if is_running "$own" && grep -qa -- "$marker" "/proc/$own/cmdline" 2>/dev/null; then
      stop_pid "$own" >/dev/null
    fi
  done
  if [[ -n "$BROKER_PID" ]]; then
    if ! is_running "$BROKER_PID"; then
      wait "$BROKER_PID"
      exit_note="broker died during the suite (exit status $?)"
    else
      local how
      how="$(stop_pid "$BROKER_PID")" || exit_note="broker $how"
      wait "$BROKER_PID" 2>/dev/null
    fi
    BROKER_PID=""
  fi
  SECS[$suite]=$((SECONDS - t0))
  if [[ -n "$tap_pid" ]]; then
    stop_pid "$tap_pid" >/dev/null
    wait "$tap_pid" 2>/dev/null
    say "$suite: requests seen by the wiretap (client id, API, version, count):"
    sed 's/^/    /' "$dir/wire.txt" 2>/dev/null
  fi

  local fails=() unexplained=() allowed=() line check reason
  while IFS= read -r line; do
    check="${line#FAIL }"
    check="${check%%:*}"
    fails+=("$check")
    if reason="$(allowed_reason "$suite" "$check")"; then
      allowed+=("$check ($reason)")
    else
      unexplained+=("$check")
    fi
  done < <(grep -E '^FAIL [^ :]+:' "$out")

  if ((rc == 124 || rc == 137)); then
    RESULT[$suite]=FAIL
    DETAIL[$suite]="timed out after ${tmo}s${unexplained:+; failed: ${unexplained[*]}}"
  elif [[ -n "$exit_note" ]]; then
    RESULT[$suite]=FAIL
    DETAIL[$suite]="$exit_note${unexplained:+; failed: ${unexplained[*]}}"
  elif ((rc == 0 && ${#fails[@]} == 0)); then
    RESULT[$suite]=PASS
    DETAIL[$suite]=""
  elif ((${#fails[@]} > 0 && ${#unexplained[@]} == 0)); then
    RESULT[$suite]=PASS
    DETAIL[$suite]="allow-listed: ${allowed[*]}"
  elif ((${#unexplained[@]} > 0)); then
    RESULT[$suite]=FAIL
    DETAIL[$suite]="failed: ${unexplained[*]}"
  else
    RESULT[$suite]=FAIL
    DETAIL[$suite]="exit status $rc without a FAIL line (see $out)"
  fi

  if [[ "${RESULT[$suite]}" == FAIL ]]; then
    say "$suite FAILED: ${DETAIL[$suite]}"
    say "last lines of $out:"
    grep -vE '^(PASS|#)' "$out" | tail -n 15 | sed 's/^/    /'
    say "last lines of the broker log $log:"
    tail -n 40 "$log" 2>/dev/null | sed -e 's/\x1b\[[0-9;]*m//g' | cut -c1-400 | sed 's/^/    /'
    say "broker data dir kept: $data"
  else
    rm -rf "$data"
  fi
}

if [[ -n "$fatal" ]]; then
  say "$fatal"
  for s in "${SUITES[@]}"; do RESULT[$s]=FAIL; DETAIL[$s]="$fatal"; SECS[$s]=0; done
else
  for s in "${SUITES[@]}"; do run_suite "$s"; done
fi

# ------------------------------------------------------------------ summary
# test-all.sh reports the unit tests as one more line of the summary.
if [[ -n "${SLUICE_UNIT_TESTS:-}" ]]; then
  SUITES=(cargo-test "${SUITES[@]}")
  SECS[cargo-test]="${SLUICE_UNIT_TESTS_SECS:-0}"
  if [[ "$SLUICE_UNIT_TESTS" == pass ]]; then RESULT[cargo-test]=PASS; DETAIL[cargo-test]="cargo test --release"
  else RESULT[cargo-test]=FAIL; DETAIL[cargo-test]="cargo test --release failed (see its output above)"; fi
fi
echo
say "summary (work dir $WORK)"
for s in "${SUITES[@]}"; do
  printf '  %-16s %-4s %4ss  %s\n' "$s" "${RESULT[$s]}" "${SECS[$s]}" "${DETAIL[$s]}"
  if [[ "${RESULT[$s]}" == PASS ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
if ((failed == 0)) && [[ "${SLUICE_KEEP_LOGS:-}" != 1 ]]; then
  rm -rf "$WORK"
else
  say "logs kept in $WORK"
fi
echo "$passed passed, $failed failed"
((failed == 0))
