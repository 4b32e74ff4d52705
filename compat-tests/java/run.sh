#!/usr/bin/env bash
# java/run.sh VERSION [SluiceClient args...]
# Compiles SluiceClient.java against the cached kafka-clients VERSION jars (compat-tests/setup.sh)
# into the cache, then runs it. With no further arguments it runs the suite against
# $SLUICE_BOOTSTRAP; otherwise the arguments are a SluiceClient command, e.g.
#   java/run.sh 4.3.0 topics --list
set -euo pipefail
VERSION="${1:?usage: java/run.sh 4.3.0|3.9.1 [command args...]}"
shift
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
JARS="$CACHE/java/kafka-$VERSION"
SRC="$(cd "$(dirname "$0")" && pwd)/SluiceClient.java"
[[ -f "$JARS/.complete" ]] || { echo "no jars in $JARS: run compat-tests/setup.sh" >&2; exit 2; }
CLASSES="$CACHE/java/classes-$VERSION"
SUM="$(sha1sum "$SRC" | cut -c1-12)"
if [[ ! -f "$CLASSES/.src-$SUM" ]]; then
  rm -rf "$CLASSES"
  mkdir -p "$CLASSES"
  javac -nowarn -encoding UTF-8 -cp "$JARS/*" -d "$CLASSES" "$SRC"
  touch "$CLASSES/.src-$SUM"
fi
BOOTSTRAP="${SLUICE_BOOTSTRAP:-127.0.0.1:9092}"
if (($# == 0)); then
  set -- suite --name "java-${VERSION//./}" --num-messages "${SLUICE_NUM_MESSAGES:-10000}"
fi
# -XX:TieredStopAtLevel=1 and a small heap: fast start, modest memory on a 2-core machine.
exec java -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xmx512m \
  -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
  -cp "$CLASSES:$JARS/*" SluiceClient --bootstrap-server "$BOOTSTRAP" "$@"
