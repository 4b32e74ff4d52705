#!/usr/bin/env bash
# Sluice benchmark: see bench/README.md.
#
#   bench/run.sh               build what is needed, run every phase, print the table
#   bench/run.sh --mock-only   only the reference figures (librdkafka mock broker, iperf3)
#   bench/run.sh --no-build    do not run cargo for the broker (use SLUICE_BIN or target/release/sluice)
#   bench/run.sh --rdkafka-performance   only build (or find) rdkafka_performance; print its path
#
# Results: printed at the end and written to bench/out/latest.txt; raw logs in bench/out/logs/.
# Exit status: 0 if every phase ran (targets met or not), 1 if a phase failed to run, 2 on setup errors.
set -Eeuo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
CACHE=${SLUICE_CACHE:-$HOME/.cache/sluice}
OUT=$BENCH_DIR/out
LOGS=$OUT/logs
LIB=$BENCH_DIR/lib/benchlib.py

# ---- workload sizes (env overrides; the defaults keep a run well under 10 minutes) ----
P1_MSGS=${P1_MSGS:-2000000}     # 1 KiB, acks=1          (~2 GB)
P2_MSGS=${P2_MSGS:-4000000}     # 100 B, acks=-1, idempotent
C1_MSGS=${C1_MSGS:-2000000}     # 1 KiB consumed from the beginning
L1_MSGS=${L1_MSGS:-220000}      # 1 KiB, acks=-1, at L1_RATE msg/s (~12 s)
L1_WARMUP=${L1_WARMUP:-20000}   # leading L1 samples left out of the percentiles (connection set-up)
L1_RATE=${L1_RATE:-20000}
L1_LINGER=${L1_LINGER:-0.5}     # ms; see README (at 0 the client cannot keep up on one core)
IPERF_SECS=${IPERF_SECS:-3}
REPEAT=${REPEAT:-3}             # rounds; the best run of each figure counts
PHASE_TIMEOUT=${PHASE_TIMEOUT:-60}   # hard limit for one load-generator run, seconds
MEASURE_BUDGET=${MEASURE_BUDGET:-480} # no new round starts if it would likely end after this many s
L1_TIMEOUT=${L1_TIMEOUT:-40}
START_TIMEOUT=${START_TIMEOUT:-30}   # broker must accept TCP connections within this
BUILD_TIMEOUT=${BUILD_TIMEOUT:-1200} # limit for each build (librdkafka once; the broker's cargo build)
PREFAULT=${PREFAULT:-1}              # touch page-cache memory once before measuring (see README)
QUIET_WAIT=${QUIET_WAIT:-30}         # wait up to this long for other processes to leave the CPUs idle
RDKAFKA_SYS_VERSION=${RDKAFKA_SYS_VERSION:-=4.10.0}   # which rdkafka-sys (librdkafka 2.12.1) to build from

BROKER_CPU=0
CLIENT_CPU=1

MOCK_ONLY=0
NO_BUILD=0
RP_ONLY=0
for a in "$@"; do
  case "$a" in
    --mock-only) MOCK_ONLY=1 ;;
    --rdkafka-performance) RP_ONLY=1 ;;
    --no-build) NO_BUILD=1 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown argument: $a (see --help)" >&2; exit 2 ;;
  esac
done

T_RUN0=$SECONDS
log() { printf '[bench %4ds] %s\n' $((SECONDS - T_RUN0)) "$*" >&2; }
die() { log "FATAL: $*"; exit 2; }

# ---------------------------------------------------------------- processes we start
STARTED_PIDS=()
WORK=""
BROKER_PID=""
forget_pid() {
  local p keep=()
  for p in "${STARTED_PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  STARTED_PIDS=("${keep[@]}")
}
cleanup() {
  local rc=$?
  set +e
  for pid in "${STARTED_PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null
      wait "$pid" 2>/dev/null
    fi
  done
  [[ -n "$WORK" && -d "$WORK" ]] && rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- dependencies
APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null || die "need to install $* but apt-get is not available"
  if [[ $APT_UPDATED == 0 ]]; then
    log "apt-get update"
    apt-get update -qq >"$LOGS/apt.log" 2>&1 || die "apt-get update failed (see $LOGS/apt.log)"
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >>"$LOGS/apt.log" 2>&1 \
    || die "apt-get install $* failed (see $LOGS/apt.log)"
}

ensure_deps() {
  local need=()
  command -v gcc >/dev/null && command -v make >/dev/null || need+=(build-essential)
  command -v pkg-config >/dev/null || need+=(pkg-config)
  [[ -e /usr/include/zlib.h ]] || need+=(zlib1g-dev)
  command -v python3 >/dev/null || need+=(python3)
  command -v taskset >/dev/null || need+=(util-linux)
  command -v iperf3 >/dev/null || need+=(iperf3)
  command -v timeout >/dev/null || need+=(coreutils)
  if ((${#need[@]})); then apt_install "${need[@]}"; fi
  command -v cargo >/dev/null || die "cargo is required (to fetch the rdkafka-sys crate and build the broker)"
  if (( $(nproc --all) < 2 )); then die "needs at least 2 CPUs for the pinning (broker on CPU 0, client on CPU 1)"; fi
  # prefer the system interpreter (a version-manager shim adds a wrapper process)
  if [[ -x /usr/bin/python3 ]]; then PY=/usr/bin/python3; else PY=$(command -v python3); fi
}

# ---------------------------------------------------------------- rdkafka_performance
# Built once from the librdkafka source carried by the rdkafka-sys crate; cached in $CACHE.
RP=""
build_rdkafka_performance() {
  mkdir -p "$CACHE"
  # one cached binary per requested rdkafka-sys version; the stamp file holds its path
  # RP_SSL=1: a second binary with OpenSSL (bench/tls.sh); the default one is built without.
  local ssl_flag=--disable-ssl suffix=""
  if [[ "${RP_SSL:-0}" == 1 ]]; then ssl_flag=--enable-ssl suffix=-ssl; fi
  local stamp="$CACHE/rdkafka_performance${suffix}-${RDKAFKA_SYS_VERSION//[^0-9A-Za-z.+-]/_}.path"
  if [[ -f "$stamp" ]] && RP=$(cat "$stamp") && [[ -x "$RP" ]]; then
    log "rdkafka_performance: cached ($RP)"
    return 0
  fi
  exec 9>"$CACHE/.build.lock"
  flock 9
  if [[ -f "$stamp" ]] && RP=$(cat "$stamp") && [[ -x "$RP" ]]; then # built while we waited
    exec 9>&-
    return 0
  fi
  log "rdkafka_performance: fetching rdkafka-sys $RDKAFKA_SYS_VERSION via cargo"
  local proj="$CACHE/rdkafka-fetch"
  mkdir -p "$proj/src"
  cat >"$proj/Cargo.toml" <<EOF
[package]
name = "rdkafka-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
rdkafka-sys = "$RDKAFKA_SYS_VERSION"

[workspace]
EOF
  echo 'fn main() {}' >"$proj/src/main.rs"
  (cd "$proj" && cargo fetch) >"$LOGS/rdkafka-fetch.log" 2>&1 || die "cargo fetch of rdkafka-sys failed (see $LOGS/rdkafka-fetch.log)"
  local manifest
  manifest=$(cd "$proj" && cargo metadata --format-version 1 2>>"$LOGS/rdkafka-fetch.log" | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
for p in d["packages"]:
    if p["name"] == "rdkafka-sys":
        print(p["version"] + " " + p["manifest_path"])
        break
') || die "cargo metadata failed (see $LOGS/rdkafka-fetch.log)"
  [[ -n "$manifest" ]] || die "rdkafka-sys not found in cargo metadata"
  local ver=${manifest%% *} src
  src="$(dirname "${manifest#* }")/librdkafka"
  [[ -f "$src/configure" ]] || die "no librdkafka/ source in $src"
  local build="$CACHE/build/librdkafka-$ver"
  log "rdkafka_performance: building librdkafka from rdkafka-sys $ver (about 1-4 minutes, once)"
  rm -rf "$build"
  mkdir -p "$CACHE/build"
  cp -r "$src" "$build"
  (
    cd "$build"
    # timeout(1) signals the whole process group of the command it runs (make and its children)
    timeout -k 10 "$BUILD_TIMEOUT" ./configure "$ssl_flag" --disable-gssapi --disable-curl --disable-lz4-ext \
      --disable-zstd &&
      timeout -k 10 "$BUILD_TIMEOUT" make -j"$(nproc)" libs &&
      timeout -k 10 "$BUILD_TIMEOUT" make -C examples rdkafka_performance
  ) >"$LOGS/rdkafka-build.log" 2>&1 || die "librdkafka build failed (see $LOGS/rdkafka-build.log)"
  mkdir -p "$CACHE/bin"
  RP="$CACHE/bin/rdkafka_performance${suffix}-$ver"
  cp "$build/examples/rdkafka_performance" "$RP"
  echo "$RP" >"$stamp"
  rm -rf "$build"
  rmdir "$CACHE/build" 2>/dev/null || true
  exec 9>&-
  log "rdkafka_performance: built $RP"
}

# ---------------------------------------------------------------- the broker
SLUICE_BIN=${SLUICE_BIN:-}
SLUICE_ERR=""
build_sluice() {
  if [[ -n "$SLUICE_BIN" ]]; then
    [[ -x "$SLUICE_BIN" ]] || SLUICE_ERR="SLUICE_BIN=$SLUICE_BIN is not executable"
    return 0
  fi
  if [[ $NO_BUILD == 1 ]]; then
    SLUICE_BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/sluice"
    [[ -x "$SLUICE_BIN" ]] || SLUICE_ERR="--no-build given but $SLUICE_BIN does not exist"
    return 0
  fi
  log "sluice: cargo build --release --bin sluice (log: $LOGS/sluice-build.log)"
  if (cd "$REPO" && timeout -k 10 "$BUILD_TIMEOUT" cargo build --release --bin sluice \
        --message-format=json-render-diagnostics >"$WORK/cargo.json" 2>"$LOGS/sluice-build.log"); then
    SLUICE_BIN=$("$PY" "$LIB" cargo-exe "$WORK/cargo.json")
    [[ -z "$SLUICE_BIN" ]] && SLUICE_BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/sluice"
    [[ -x "$SLUICE_BIN" ]] || SLUICE_ERR="build succeeded but no binary at $SLUICE_BIN"
  else
    SLUICE_ERR="cargo build --release failed: $(grep -m1 -E '^error' "$LOGS/sluice-build.log" || echo 'see log'), see bench/out/logs/sluice-build.log"
  fi
}

# Start a fresh broker (new data dir, free port) on CPU 0 and measure its start-up time.
BROKER_LOG=""
BROKER_DATA=""
# BROKER_TAG names the broker's result keys (sluice = metrics on, sluicenm = metrics off);
# METRICS_ON=0 starts it with metrics.listener empty (no recorder: nothing is recorded).
BROKER_TAG=sluice
METRICS_ON=1
start_broker() { # start_broker ROUND
  local round=$1 port datadir mport metrics
  if ((METRICS_ON)); then
    mport=$("$PY" "$LIB" freeport)
    metrics="metrics.listener=127.0.0.1:$mport"
  else
    metrics="metrics.listener="
  fi
  port=$("$PY" "$LIB" freeport)
  datadir=$(mktemp -d "$WORK/sluice-data.XXXXXX")
  BROKER_DATA=$datadir
  BROKER_LOG="$LOGS/$BROKER_TAG-r$round.log"
  BROKER_ADDR="127.0.0.1:$port"
  rm -f "$WORK/startup.json"
  log "sluice: starting on $BROKER_ADDR (CPU $BROKER_CPU), data in $datadir, $metrics"
  "$PY" "$LIB" spawn --port "$port" --result "$WORK/startup.json" --timeout "$START_TIMEOUT" -- \
    taskset -c "$BROKER_CPU" "$SLUICE_BIN" \
      --override "listeners=PLAINTEXT://$BROKER_ADDR" \
      --override "advertised.listeners=PLAINTEXT://$BROKER_ADDR" \
      --override "log.dirs=$datadir" \
      --override "num.partitions=4" \
      --override "$metrics" \
      >"$BROKER_LOG" 2>&1 &
  BROKER_PID=$!
  STARTED_PIDS+=("$BROKER_PID")
  local i
  for ((i = 0; i < (START_TIMEOUT + 10) * 20; i++)); do
    [[ -f "$WORK/startup.json" ]] && break
    sleep 0.05
  done
  if [[ ! -f "$WORK/startup.json" ]]; then
    SLUICE_ERR="no start-up result within $((START_TIMEOUT + 10)) s"
    return 1
  fi
  local err="" connect="" api="" apierr=""
  eval "$("$PY" "$LIB" startup "$WORK/startup.json")"
  if [[ -n "$err" ]]; then
    local rc=""
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then wait "$BROKER_PID" 2>/dev/null || rc=$?; fi
    SLUICE_ERR="$err${rc:+ (exit status $rc)}; broker log: $(log_tail)"
    result "$BROKER_TAG.r$round.error" "$SLUICE_ERR"
    return 1
  fi
  if [[ -n "$apierr" ]]; then
    SLUICE_ERR="the broker accepts TCP connections but $apierr"
    result "$BROKER_TAG.r$round.error" "$SLUICE_ERR"
    return 1
  fi
  result "$BROKER_TAG.r$round.connect_ms" "$connect"
  [[ -n "$api" ]] && result "$BROKER_TAG.r$round.apiversions_ms" "$api"
  log "sluice: accepting TCP after ${connect} ms, ApiVersions answered after ${api:-?} ms"
  return 0
}

stop_broker() {
  [[ -n "$BROKER_PID" ]] || return 0
  if kill -0 "$BROKER_PID" 2>/dev/null; then
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$BROKER_PID" 2>/dev/null; then
      result warn.shutdown "broker did not exit within 10 s of SIGTERM; killed"
      kill -KILL "$BROKER_PID" 2>/dev/null || true
    fi
  fi
  wait "$BROKER_PID" 2>/dev/null || true
  forget_pid "$BROKER_PID"
  BROKER_PID=""
  if [[ -s "$BROKER_LOG" ]] && grep -qE 'panicked|ERROR' "$BROKER_LOG"; then
    result "warn.brokerlog.$(basename "$BROKER_LOG" .log)" \
      "$(basename "$BROKER_LOG") has panics/errors: $(grep -m1 -E 'panicked|ERROR' "$BROKER_LOG" | cut -c1-200)"
  fi
  # free the round's data (and its page cache) before the next round
  [[ -n $BROKER_DATA ]] && rm -rf "$BROKER_DATA"
  BROKER_DATA=""
}

log_tail() { # the end of the broker's log, on one line
  local t
  t=$(tail -c 300 "$BROKER_LOG" 2>/dev/null | tr '\n' ' ')
  echo "${t:-(empty)}"
}

broker_alive() { [[ -n "$BROKER_PID" ]] && kill -0 "$BROKER_PID" 2>/dev/null; }

# is something listening on 127.0.0.1:PORT? (reads /proc/net/tcp, sends nothing)
is_listening() {
  local hex
  hex=$(printf '%04X' "$1")
  awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }' /proc/net/tcp
}

status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null; }

# ---------------------------------------------------------------- results
RESULTS=""
result() { printf '%s=%s\n' "$1" "$2" >>"$RESULTS"; }

# quiet_check NAME: before each measured run, note whether other processes are using the CPUs
# (this harness runs nothing between runs; the idle broker counts, and should be near 0).
quiet_check() {
  local b busy
  busy=$("$PY" "$LIB" cpubusy 0.5)
  for b in $busy; do
    if ((b > 15)); then
      result "warn.load.$1" "$1: other processes were using the CPUs just before it (${busy// /% / }%)"
      log "WARNING: CPUs busy before $1 (${busy} %)"
      return 0
    fi
  done
}

# CHILD_CPU = CPU seconds (user + system) used by this shell's reaped children so far. Must not
# run in a subshell: `times` there would report the subshell's children.
CHILD_CPU=0
children_cpu() {
  times >"$WORK/times"
  CHILD_CPU=$(awk 'NR == 2 {
    n = 0
    for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); n += a[1] * 60 + a[2] }
    print n }' "$WORK/times")
}

# CPU time (clock ticks) used so far by a process, from /proc/PID/stat (utime + stime)
proc_ticks() {
  local st
  st=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  st=${st##*) }
  # after "comm) ": state is field 3, utime 14, stime 15 -> indexes 11 and 12 here
  awk '{ print $12 + $13 }' <<<"$st"
}

# ---------------------------------------------------------------- load generator runs
# Common producer settings. rdkafka_performance's own defaults (linger.ms=1000, retries=3,
# retry.backoff.ms=500) are overridden where they matter.
PRODUCER_X=(
  -X linger.ms=5
  -X batch.size=1048576
  -X message.max.bytes=1048588
  -X batch.num.messages=100000
  -X queue.buffering.max.messages=1000000
  -X queue.buffering.max.kbytes=2097151
  -X message.timeout.ms=45000
)

# run_perf NAME TARGET TIMEOUT ARGS...  (TARGET = mock | sluice)
# Runs rdkafka_performance on CPU 1 with a deadline. For the mock, the process starts on
# CPU 1 and its mock-broker thread ("rdk:mock") is then moved to CPU 0, so the mock gets
# the same CPU as Sluice does. With PERF_SCHED=latency (L1), the generator's own threads are
# re-prioritised as described in adjust_threads.
PERF_SCHED=""
CUR_KEY=""
run_perf() {
  local name=$1 target=$2 tmo=$3
  shift 3
  local logf="$LOGS/$name.log" conn=()
  if [[ $target == mock ]]; then conn=(-X test.mock.num.brokers=1); else conn=(-b "$BROKER_ADDR"); fi
  quiet_check "$name"
  echo "+ taskset -c $CLIENT_CPU $RP ${conn[*]} $*" >"$logf"
  local t0=0 c0
  [[ $target == sluice ]] && t0=$(proc_ticks "$BROKER_PID")
  children_cpu
  c0=$CHILD_CPU
  taskset -c "$CLIENT_CPU" "$RP" "${conn[@]}" "$@" >>"$logf" 2>&1 &
  local pid=$! rc=0
  STARTED_PIDS+=("$pid")
  if [[ $target == mock || $PERF_SCHED == latency ]]; then
    adjust_threads "$pid" "$target" "$logf" "$name"
  fi
  local deadline=$((SECONDS + tmo))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      echo "% bench: TIMEOUT after ${tmo}s, stopping" >>"$logf"
      kill -TERM "$pid" 2>/dev/null || true
      sleep 3
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
  wait "$pid" || rc=$?
  forget_pid "$pid"
  if [[ $target == sluice && -n $CUR_KEY ]]; then
    # CPU seconds used while this load generator ran, by the broker (CPU 0) and by the generator
    # (CPU 1); the report divides them by the phase's measured duration
    children_cpu
    result "$CUR_KEY.broker_cpu_s" "$(awk -v a="$t0" -v b="$(proc_ticks "$BROKER_PID")" -v hz="$(getconf CLK_TCK)" \
      'BEGIN { printf "%.2f", (b - a) / hz }')"
    result "$CUR_KEY.client_cpu_s" "$(awk -v a="$c0" -v b="$CHILD_CPU" 'BEGIN { printf "%.2f", b - a }')"
  fi
  PERF_RC=$rc
  PERF_TIMEDOUT=0
  if grep -q '^% bench: TIMEOUT' "$logf"; then
    PERF_TIMEDOUT=1
    if [[ $target == sluice ]]; then
      # a broker that stalls one phase would stall every other one: skip the rest
      SLUICE_ERR="$name did not finish within ${tmo} s (broker stalled?); later Sluice phases skipped"
    fi
  fi
  return 0
}

# adjust_threads PID TARGET LOG NAME
# - mock: move the "rdk:mock" thread to CPU 0 (normal priority, alone there, like Sluice).
# - PERF_SCHED=latency: rdkafka_performance's -r limiter busy-waits between messages in the
#   application thread, on the same core as librdkafka's I/O threads; under the default
#   scheduler the spinning thread delays the I/O threads by whole time slices (p99 of 5 ms
#   even against the in-process mock). So the application thread gets SCHED_IDLE and the
#   librdkafka threads ("rdk:main", "rdk:brokerN", ...) SCHED_FIFO 10: network I/O then runs
#   the moment it is ready, and the spinning only uses the time left over. Threads appear
#   over the first few hundred ms (brokers are learnt from Metadata); this watches for 2 s.
adjust_threads() {
  local pid=$1 target=$2 logf=$3 name=$4 i t tid comm pinned="" stop seen_main=""
  local -A done_tids=()
  if [[ $PERF_SCHED == latency ]]; then stop=$((SECONDS + 3)); else stop=$((SECONDS + 4)); fi
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < stop)); do
    for t in /proc/"$pid"/task/*; do
      tid=${t##*/}
      [[ -n ${done_tids[$tid]:-} ]] && continue
      comm=""
      read -r comm 2>/dev/null <"$t/comm" || continue
      if [[ $comm == rdk:mock ]]; then
        if [[ $target == mock ]]; then
          taskset -p -c "$BROKER_CPU" "$tid" >>"$logf" 2>&1 && pinned=$tid
        fi
        done_tids[$tid]=1
      elif [[ $PERF_SCHED == latency && $comm == rdk:* ]]; then
        [[ $comm == rdk:main ]] && seen_main=1
        if ! chrt -f -p 10 "$tid" >>"$logf" 2>&1 && [[ -e /proc/$pid/task/$tid ]]; then
          result "warn.$name" "chrt -f failed on $comm (not root?)" # (short-lived threads may be gone)
        fi
        echo "% bench: thread $tid ($comm) -> SCHED_FIFO 10" >>"$logf"
        done_tids[$tid]=1
      elif [[ $PERF_SCHED == latency && $tid == "$pid" && -n $seen_main && ( $target != mock || -n $pinned ) ]]; then
        # only once rd_kafka_new() has created its threads, which would inherit SCHED_IDLE
        if ! chrt -i -p 0 "$tid" >>"$logf" 2>&1 && [[ -e /proc/$pid/task/$tid ]]; then
          result "warn.$name" "chrt -i failed on the application thread"
        fi
        echo "% bench: thread $tid ($comm, application) -> SCHED_IDLE" >>"$logf"
        done_tids[$tid]=1
      fi
    done
    [[ $PERF_SCHED != latency && ( -n $pinned || $target != mock ) ]] && break
    sleep 0.005
  done
  if [[ $target == mock && -z $pinned ]]; then
    result "warn.$name" "could not find the rdk:mock thread to pin it to CPU $BROKER_CPU"
  fi
}

# record_produce NAME KEY EXPECTED
record_produce() {
  # shellcheck disable=SC2034 # locals for the eval below, some unused
  local name=$1 key=$2 expect=$3 mode="" produced="" delivered="" failed="" msgs_s="" mb_s="" ms=""
  eval "$("$PY" "$LIB" perfsum "$LOGS/$name.log")"
  if [[ $mode != produce ]]; then
    result "$key.error" "no summary from rdkafka_performance (rc=$PERF_RC$( ((PERF_TIMEDOUT)) && echo ", timed out")); see bench/out/logs/$name.log"
    log "$name: FAILED (no summary)"
    return 1
  fi
  if ((PERF_TIMEDOUT)) || [[ $delivered != "$expect" || $failed != 0 ]]; then
    result "$key.error" "delivered $delivered of $expect, $failed failed$( ((PERF_TIMEDOUT)) && echo ", timed out"); see bench/out/logs/$name.log"
    log "$name: FAILED: delivered $delivered/$expect failed $failed"
    return 1
  fi
  result "$key.msgs_s" "$msgs_s"
  result "$key.mb_s" "$mb_s"
  result "$key.ms" "$ms"
  log "$name: $msgs_s msgs/s, $mb_s MB/s ($delivered msgs in $ms ms)"
}

# ---------------------------------------------------------------- phases
# Each phase function takes TARGET (mock|sluice) and the round number; every round writes to
# new topics, so each P1/P2/L1 run starts from empty partitions.
p1() {
  run_perf "p1-$1-r$2" "$1" "$PHASE_TIMEOUT" -P -t "bench-p1-r$2" -s 1024 -c "$P1_MSGS" -a 1 "${PRODUCER_X[@]}"
  record_produce "p1-$1-r$2" "p1.$1.r$2" "$P1_MSGS"
}

p2() {
  run_perf "p2-$1-r$2" "$1" "$PHASE_TIMEOUT" -P -t "bench-p2-r$2" -s 100 -c "$P2_MSGS" -a -1 \
    -X enable.idempotence=true "${PRODUCER_X[@]}"
  record_produce "p2-$1-r$2" "p2.$1.r$2" "$P2_MSGS"
}

l1() {
  local name="l1-$1-r$2" key="l1.$1.r$2" lat="$WORK/l1-$1-r$2.lat"
  rm -f "$lat"
  PERF_SCHED=latency
  run_perf "$name" "$1" "$L1_TIMEOUT" -P -t "bench-l1-r$2" -s 1024 -c "$L1_MSGS" -a -1 -r "$L1_RATE" -l -A "$lat" \
    "${PRODUCER_X[@]}" -X "linger.ms=$L1_LINGER"
  PERF_SCHED=""
  record_produce "$name" "$key" "$L1_MSGS" || return 1
  cp "$lat" "$LOGS/$name.latencies.txt"
  tail -n +"$((L1_WARMUP + 1))" "$lat" >"$lat.steady"
  lat="$lat.steady"
  # shellcheck disable=SC2034 # locals for the eval below, some unused
  local samples="" p50_ms="" p99_ms="" p999_ms="" max_ms="" mean_ms=""
  eval "$("$PY" "$LIB" pct "$lat")"
  if [[ -z $samples || $samples == 0 ]]; then
    result "$key.error" "no latency samples"
    return 1
  fi
  result "$key.samples" "$samples"
  result "$key.p50_ms" "$p50_ms"
  result "$key.p99_ms" "$p99_ms"
  result "$key.p999_ms" "$p999_ms"
  result "$key.max_ms" "$max_ms"
  log "$name: p50 $p50_ms ms, p99 $p99_ms ms, p99.9 $p999_ms ms, max $max_ms ms ($samples samples)"
}

# C1 reads the topic that this round's P1 wrote (P1_MSGS x 1 KiB), or, if that run failed or
# the counts differ, a topic it fills itself first.
c1_sluice() {
  local rep=$1 name="c1-sluice-r$1" key="c1.sluice.r$1" topic="bench-p1-r$1"
  if [[ $C1_MSGS != "$P1_MSGS" ]] || ! grep -q "^p1\.sluice\.r$rep\.msgs_s=" "$RESULTS"; then
    topic="bench-c1-r$rep"
    log "c1: producing $C1_MSGS messages to $topic first"
    run_perf "c1-load-r$rep" sluice "$PHASE_TIMEOUT" -P -t "$topic" -s 1024 -c "$C1_MSGS" -a 1 "${PRODUCER_X[@]}"
    if ! record_produce "c1-load-r$rep" "c1load.r$rep" "$C1_MSGS"; then
      result "$key.error" "could not produce the $C1_MSGS messages to consume (see bench/out/logs/c1-load-r$rep.log)"
      return 1
    fi
  fi
  run_perf "$name" sluice "$PHASE_TIMEOUT" -C -t "$topic" -p 0 -p 1 -p 2 -p 3 -o beginning -e -c "$C1_MSGS"
  # shellcheck disable=SC2034 # locals for the eval below, some unused
  local mode="" consumed="" msgs_s="" mb_s="" ms="" bytes=""
  eval "$("$PY" "$LIB" perfsum "$LOGS/$name.log")"
  if [[ $mode != consume ]] || ((PERF_TIMEDOUT)) || [[ $consumed != "$C1_MSGS" ]]; then
    result "$key.error" "consumed ${consumed:-0} of $C1_MSGS (rc=$PERF_RC$( ((PERF_TIMEDOUT)) && echo ", timed out")); see bench/out/logs/$name.log"
    log "$name: FAILED (consumed ${consumed:-0}/$C1_MSGS)"
    return 1
  fi
  result "$key.msgs_s" "$msgs_s"
  result "$key.mb_s" "$mb_s"
  result "$key.ms" "$ms"
  log "$name: $mb_s MB/s, $msgs_s msgs/s ($consumed msgs in $ms ms)"
}

iperf_loopback() {
  local key="iperf.r$1"
  quiet_check "iperf3-r$1"
  local port pid rc=0
  port=$("$PY" "$LIB" freeport)
  taskset -c "$BROKER_CPU" iperf3 -s -B 127.0.0.1 -p "$port" >"$LOGS/iperf3-server.log" 2>&1 &
  pid=$!
  STARTED_PIDS+=("$pid")
  local i
  for ((i = 0; i < 100; i++)); do
    is_listening "$port" && break
    sleep 0.05
  done
  # -R: the server (CPU 0) sends and the client (CPU 1) receives, the direction a consumer sees.
  timeout -k 5 $((IPERF_SECS + 20)) taskset -c "$CLIENT_CPU" iperf3 -c 127.0.0.1 -p "$port" -R -t "$IPERF_SECS" -J \
    >"$LOGS/iperf3-r$1.json" 2>"$LOGS/iperf3-client.err" || rc=$?
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  forget_pid "$pid"
  # shellcheck disable=SC2034 # locals for the eval below, some unused
  local mb_s="" secs="" error=""
  eval "$("$PY" "$LIB" iperf "$LOGS/iperf3-r$1.json" 2>/dev/null || echo 'error="cannot parse iperf3 output"')"
  if [[ -n $error || -z $mb_s ]]; then
    result "$key.error" "iperf3 failed (rc=$rc): ${error:-no result}"
    log "iperf3: FAILED"
    return 1
  fi
  result "$key.mb_s" "$mb_s"
  log "iperf3 loopback (CPU $BROKER_CPU -> CPU $CLIENT_CPU): $mb_s MB/s"
}

# ================================================================ main
mkdir -p "$OUT" "$LOGS"
rm -f "$LOGS"/*.log "$LOGS"/*.json "$LOGS"/*.txt "$LOGS"/*.err 2>/dev/null || true
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
RESULTS="$WORK/results.txt"
: >"$RESULTS"

ensure_deps
build_rdkafka_performance
export RP # lib/mock_as_broker.py uses it
if [[ $RP_ONLY == 1 ]]; then echo "$RP"; exit 0; fi
if [[ $MOCK_ONLY == 0 ]]; then build_sluice; else SLUICE_ERR="skipped (--mock-only)"; fi

# From here on the harness itself (this shell, its helpers) stays off the broker's core.
taskset -p -c "$CLIENT_CPU" $$ >/dev/null 2>&1 || true

result meta.date "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
result meta.host "$(nproc --all) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(uname -r)"
result meta.git "$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo 'no commit')$(cd "$REPO" && [[ -n $(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] && echo ' + uncommitted changes in src/')"
result meta.librdkafka "$(basename "$RP" | sed 's/^rdkafka_performance-//') (rdkafka-sys), rdkafka_performance"
result meta.rounds "$REPEAT"
result l1.rate "$L1_RATE"
result l1.linger "$L1_LINGER"
result meta.pinning "broker (Sluice, or the mock's rdk:mock thread) on CPU $BROKER_CPU; load generator on CPU $CLIENT_CPU"

busy=$("$PY" "$LIB" cpubusy 1)
quiet_deadline=$((SECONDS + QUIET_WAIT))
while ((SECONDS < quiet_deadline)) && [[ -n $(for b in $busy; do ((b > 15)) && echo busy; done) ]]; do
  log "CPUs busy (${busy} %), waiting up to $((quiet_deadline - SECONDS)) s for them to quieten"
  busy=$("$PY" "$LIB" cpubusy 2)
done
result meta.load "CPU busy before start (1 s sample): ${busy// /% / }%"
for b in $busy; do
  if ((b > 15)); then
    result warn.load "other processes were using the CPUs when the run started (${busy// /% / }%): figures are unreliable"
    log "WARNING: machine is busy (${busy} % per CPU); figures will be noisy"
    break
  fi
done

# On this kind of VM, page-cache pages the guest has never used before cost ~4x more kernel time
# to write into than recycled ones (buffered writes drop from ~2.5 GB/s to ~0.5 GB/s once fresh
# memory is needed). P1 writes ~2 GB per round; so that round 1 does not pay for that when the
# machine is freshly booted, write and delete a file of that size once, first.
if [[ $PREFAULT == 1 && -z $SLUICE_ERR ]]; then
  pf_mb=$(( P1_MSGS * 1100 / 1048576 + 256 ))
  log "touching ${pf_mb} MiB of page cache (write + delete a file) so that P1 does not meet fresh memory"
  dd if=/dev/zero of="$WORK/prefault" bs=1M count="$pf_mb" status=none 2>/dev/null || true
  rm -f "$WORK/prefault"
fi

PHASE_FAILED=0
sluice_phase() { # sluice_phase KEY FUNC ARGS...: run a Sluice phase or record why not
  local key=$1
  shift
  if [[ -n $SLUICE_ERR ]]; then
    result "$key.error" "Sluice not available: $SLUICE_ERR"
    [[ $MOCK_ONLY == 1 ]] || PHASE_FAILED=1
    return 0
  fi
  if ! broker_alive; then
    local rc=0
    wait "$BROKER_PID" 2>/dev/null || rc=$?
    SLUICE_ERR="broker process died (exit status $rc); log tail: $(log_tail)"
    result "$key.error" "$SLUICE_ERR"
    PHASE_FAILED=1
    return 0
  fi
  CUR_KEY=$key
  "$@" || PHASE_FAILED=1
  CUR_KEY=""
  if ! broker_alive; then
    local rc=0
    wait "$BROKER_PID" 2>/dev/null || rc=$?
    SLUICE_ERR="broker process died during $key (exit status $rc); log tail: $(log_tail)"
    result "$key.error" "$SLUICE_ERR"
    PHASE_FAILED=1
  fi
}

p1_sluice() {
  # reset the peak-RSS counter so VmHWM covers this P1 run only
  echo 5 >"/proc/$BROKER_PID/clear_refs" 2>/dev/null || result warn.hwm "could not reset VmHWM; the peak includes start-up"
  local rc=0
  p1 sluice "$1" || rc=$?
  result "p1.sluice.r$1.hwm_kb" "$(status_kb "$BROKER_PID" VmHWM)"
  return $rc
}

# Rounds: every figure is measured REPEAT times, mock and Sluice back to back, and the best run
# counts (see README: interference from other processes only ever makes a run worse).
T_MEASURE0=$SECONDS
last_round_secs=0
for ((round = 1; round <= REPEAT; round++)); do
  if ((round > 1 && SECONDS - T_MEASURE0 + last_round_secs > MEASURE_BUDGET)); then
    result warn.budget "only $((round - 1)) of $REPEAT rounds run: another would pass the ${MEASURE_BUDGET} s budget"
    log "stopping after $((round - 1)) rounds (time budget)"
    break
  fi
  t_round0=$SECONDS
  # every round gets a fresh broker with an empty data directory
  if [[ -z $SLUICE_ERR ]]; then
    if start_broker "$round"; then
      sleep 0.5
      result "sluice.r$round.idle_rss_kb" "$(status_kb "$BROKER_PID" VmRSS)"
    else
      PHASE_FAILED=1
    fi
  fi
  log "== round $round/$REPEAT: P1 produce 1 KiB, acks=1, linger 5 ms, 1 MiB batches, $P1_MSGS msgs"
  p1 mock "$round" || PHASE_FAILED=1
  sluice_phase "p1.sluice.r$round" p1_sluice "$round"

  log "== round $round/$REPEAT: loopback bandwidth (iperf3), C1's reference"
  iperf_loopback "$round" || PHASE_FAILED=1

  log "== round $round/$REPEAT: C1 consume $C1_MSGS x 1 KiB from the beginning"
  sluice_phase "c1.sluice.r$round" c1_sluice "$round"

  log "== round $round/$REPEAT: P2 produce 100 B, acks=-1, idempotent, $P2_MSGS msgs"
  p2 mock "$round" || PHASE_FAILED=1
  sluice_phase "p2.sluice.r$round" p2 sluice "$round"

  log "== round $round/$REPEAT: L1 1 KiB, acks=-1, linger $L1_LINGER ms, -r $L1_RATE, $L1_MSGS msgs (first $L1_WARMUP not counted)"
  l1 mock "$round" || PHASE_FAILED=1
  sluice_phase "l1.sluice.r$round" l1 sluice "$round"
  stop_broker

  # The metrics cost (issue #4): P1 and P2 again on a fresh broker with metrics off.
  if [[ -z $SLUICE_ERR ]]; then
    BROKER_TAG=sluicenm METRICS_ON=0
    if start_broker "$round"; then
      log "== round $round/$REPEAT: P1 and P2 with metrics off"
      sluice_phase "p1.sluicenm.r$round" p1 sluicenm "$round"
      sluice_phase "p2.sluicenm.r$round" p2 sluicenm "$round"
    else
      PHASE_FAILED=1
    fi
    stop_broker
    BROKER_TAG=sluice METRICS_ON=1
  fi
  last_round_secs=$((SECONDS - t_round0))
done

result meta.duration "$((SECONDS - T_RUN0)) s (this run)"
echo
"$PY" "$LIB" report "$RESULTS" "$OUT/latest.txt"
cp "$RESULTS" "$OUT/latest-raw.txt"
echo "(table: bench/out/latest.txt, raw figures: bench/out/latest-raw.txt, logs: bench/out/logs/)"
exit $PHASE_FAILED
