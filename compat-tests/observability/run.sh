#!/usr/bin/env bash
# Runs this folder's suite.py with the cached venv (compat-tests/setup.sh); needs SLUICE_BOOTSTRAP
# and the self-managed suite's SLUICE_BIN, SLUICE_PORT, SLUICE_DATA_DIR, SLUICE_BROKER_LOG,
# SLUICE_PID_FILE (see compat-tests/lib/broker.py).
set -euo pipefail
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"

# Debian's prometheus package: /usr/bin/prometheus (the server the suite starts on a free
# loopback port) and /usr/bin/promtool. --no-install-recommends keeps out prometheus-node-exporter
# and its collectors. The package's own service is not started: without systemd and a runlevel
# (containers, CI) invoke-rc.d refuses to start it, as does a policy-rc.d; the suite never uses it.
ensure_prometheus() {
  if [[ -x /usr/bin/promtool && -x /usr/bin/prometheus ]]; then
    return 0
  fi
  echo "# apt-get install prometheus (promtool and the server)" >&2
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get update -q >/dev/null </dev/null || return 1
  timeout 900 apt-get install -y -q --no-install-recommends prometheus >/dev/null </dev/null || return 1
  if [[ -r /run/prometheus/prometheus.pid ]]; then
    echo "# note: the packaged prometheus service is running (pid $(cat /run/prometheus/prometheus.pid));" \
      "the suite does not use it" >&2
  fi
}
# A failed install is not fatal here: the promtool and prometheus-scrape checks then fail and say so.
ensure_prometheus || echo "# installing prometheus failed; its checks will fail" >&2

export PYTHONDONTWRITEBYTECODE=1  # keep the work tree clean
exec "$CACHE/venv/bin/python" -u "$(dirname "$0")/suite.py" "$@"
