#!/usr/bin/env bash
# Runs this folder's suite.py with the cached venv (compat-tests/setup.sh); needs SLUICE_BOOTSTRAP.
set -euo pipefail
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
export PYTHONDONTWRITEBYTECODE=1  # keep the work tree clean
exec "$CACHE/venv/bin/python" -u "$(dirname "$0")/suite.py" "$@"
