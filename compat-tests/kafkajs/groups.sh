#!/usr/bin/env bash
# Runs groups.js (consumer groups) with the cached node_modules (compat-tests/setup.sh); needs SLUICE_BOOTSTRAP.
set -euo pipefail
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
export NODE_PATH="$CACHE/node/node_modules"
exec node "$(dirname "$0")/groups.js" "$@"
