#!/usr/bin/env bash
# Runs this folder's suite.py with the cached venv (compat-tests/setup.sh); it starts its own
# nodes (SLUICE_BIN, SLUICE_DATA_DIR from compat-tests/run.sh; see lib/cluster.py).
# The Java checks (clients-failover, eos-failover) run java/TxnClient.java with kafka-clients
# 4.3.0: compiled against the cached jars into the cache (its own classes dir, the way
# transactions/run.sh does it) and given to suite.py as SLUICE_TXN_CLASSPATH. Without the jars,
# or if javac fails, those checks fail with the reason and the others run.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
VERSION=4.3.0
JARS="$CACHE/java/kafka-$VERSION"
SRC="$HERE/../java/TxnClient.java"
CLASSES="$CACHE/java/txnclient-cluster-classes-$VERSION"
if [[ ! -f "$JARS/.complete" ]]; then
  export SLUICE_TXN_CLASSPATH_ERROR="no kafka-clients jars in $JARS: run compat-tests/setup.sh"
else
  SUM="$(sha1sum "$SRC" | cut -c1-12)"
  if [[ ! -f "$CLASSES/.src-$SUM" ]]; then
    # Compile next to the cache entry and swap it in, so a failed build leaves no half-written classes.
    TMP="$(mktemp -d "$CACHE/java/.txnclient-cluster-build.XXXXXX")"
    if javac -nowarn -encoding UTF-8 -cp "$JARS/*" -d "$TMP" "$SRC" >"$TMP.log" 2>&1; then
      touch "$TMP/.src-$SUM"
      rm -rf "$CLASSES"
      mv "$TMP" "$CLASSES"
      rm -f "$TMP.log"
    else
      cat "$TMP.log" >&2
      export SLUICE_TXN_CLASSPATH_ERROR="javac of $SRC failed (output above)"
      rm -rf "$TMP" "$TMP.log"
    fi
  fi
  if [[ -f "$CLASSES/.src-$SUM" ]]; then
    export SLUICE_TXN_CLASSPATH="$CLASSES:$JARS/*"
  fi
fi
export PYTHONDONTWRITEBYTECODE=1  # keep the work tree clean
exec "$CACHE/venv/bin/python" -u "$HERE/suite.py" "$@"
