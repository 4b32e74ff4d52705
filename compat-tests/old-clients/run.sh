#!/usr/bin/env bash
# The old-clients suite: builds kgo.go (segmentio/kafka-go 0.2.1 from Debian's
# golang-github-segmentio-kafka-go-dev, GOPATH mode, no downloads) into the cache, then runs
# suite.py with the cached venv; needs SLUICE_BOOTSTRAP.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
mkdir -p "$CACHE/bin"
KGO="$CACHE/bin/kgo-0.2.1"
if [[ ! -x "$KGO" || "$HERE/kgo.go" -nt "$KGO" ]]; then
  env GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$CACHE/go-build" \
    go build -o "$KGO.tmp" "$HERE/kgo.go"
  mv "$KGO.tmp" "$KGO"
fi
export KGO PYTHONDONTWRITEBYTECODE=1
exec "$CACHE/venv/bin/python" -u "$HERE/suite.py" "$@"
