#!/usr/bin/env bash
# Kafka transactions with the official Java client (kafka-clients 4.3.0): compiles
# java/TxnClient.java against the cached jars (compat-tests/setup.sh) into the cache, the way
# java/run.sh compiles SluiceClient, then runs this folder's suite.py, which starts, kill -9s and
# restarts its own broker (SLUICE_BIN, SLUICE_PORT, SLUICE_DATA_DIR, SLUICE_BROKER_LOG,
# SLUICE_PID_FILE from compat-tests/run.sh; see lib/broker.py).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
VERSION=4.3.0
JARS="$CACHE/java/kafka-$VERSION"
SRC="$HERE/../java/TxnClient.java"
[[ -f "$JARS/.complete" ]] || { echo "no jars in $JARS: run compat-tests/setup.sh" >&2; exit 2; }
CLASSES="$CACHE/java/txnclient-classes-$VERSION"
SUM="$(sha1sum "$SRC" | cut -c1-12)"
if [[ ! -f "$CLASSES/.src-$SUM" ]]; then
  # Compile next to the cache entry and swap it in, so a failed build leaves no half-written classes.
  TMP="$(mktemp -d "$CACHE/java/.txnclient-build.XXXXXX")"
  javac -nowarn -encoding UTF-8 -cp "$JARS/*" -d "$TMP" "$SRC"
  touch "$TMP/.src-$SUM"
  rm -rf "$CLASSES"
  mv "$TMP" "$CLASSES"
fi
export SLUICE_TXN_CLASSPATH="$CLASSES:$JARS/*"
export PYTHONDONTWRITEBYTECODE=1  # keep the work tree clean
PY="$CACHE/venv/bin/python"
[[ -x "$PY" ]] || PY=python3
exec "$PY" -u "$HERE/suite.py" "$@"
