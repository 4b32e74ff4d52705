#!/usr/bin/env bash
# Runs suite.js with the cached node_modules (compat-tests/setup.sh); needs SLUICE_BOOTSTRAP.
set -euo pipefail
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
export NODE_PATH="$CACHE/node/node_modules"
exec node "$(dirname "$0")/suite.js" "$@"
