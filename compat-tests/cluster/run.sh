#!/usr/bin/env bash
# Runs this folder's suite.py with the cached venv (compat-tests/setup.sh); it starts its own
# nodes (SLUICE_BIN, SLUICE_DATA_DIR from compat-tests/run.sh; see lib/cluster.py).
# The Java checks (clients-failover, eos-failover, ...) run java/TxnClient.java with kafka-clients
# 4.3.0, compiled into the cache by java/txnclient-classpath.sh and given to suite.py as
# SLUICE_TXN_CLASSPATH. Without the jars, or if javac fails, those checks fail with the reason and
# the others run.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
# shellcheck source=../java/txnclient-classpath.sh
source "$HERE/../java/txnclient-classpath.sh"
export PYTHONDONTWRITEBYTECODE=1  # keep the work tree clean
exec "$CACHE/venv/bin/python" -u "$HERE/suite.py" "$@"
