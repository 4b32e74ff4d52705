# Sourced (bash) by the suites that run java/TxnClient.java (kafka-clients 4.3.0) processes:
# compiles it against the cached jars into the cache (once per source version; compiled next to
# the cache entry and swapped in, so a failed build leaves no half-written classes) and exports
# SLUICE_TXN_CLASSPATH, or SLUICE_TXN_CLASSPATH_ERROR with the reason it cannot be used.
_txn_cache="${SLUICE_CACHE:-$HOME/.cache/sluice}"
_txn_version=4.3.0
_txn_jars="$_txn_cache/java/kafka-$_txn_version"
_txn_src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/TxnClient.java"
_txn_classes="$_txn_cache/java/txnclient-cluster-classes-$_txn_version"
if [[ ! -f "$_txn_jars/.complete" ]]; then
  export SLUICE_TXN_CLASSPATH_ERROR="no kafka-clients jars in $_txn_jars: run compat-tests/setup.sh"
else
  _txn_sum="$(sha1sum "$_txn_src" | cut -c1-12)"
  if [[ ! -f "$_txn_classes/.src-$_txn_sum" ]]; then
    _txn_tmp="$(mktemp -d "$_txn_cache/java/.txnclient-cluster-build.XXXXXX")"
    if javac -nowarn -encoding UTF-8 -cp "$_txn_jars/*" -d "$_txn_tmp" "$_txn_src" >"$_txn_tmp.log" 2>&1; then
      touch "$_txn_tmp/.src-$_txn_sum"
      rm -rf "$_txn_classes"
      mv "$_txn_tmp" "$_txn_classes"
      rm -f "$_txn_tmp.log"
    else
      cat "$_txn_tmp.log" >&2
      export SLUICE_TXN_CLASSPATH_ERROR="javac of $_txn_src failed (output above)"
      rm -rf "$_txn_tmp" "$_txn_tmp.log"
    fi
  fi
  if [[ -f "$_txn_classes/.src-$_txn_sum" ]]; then
    export SLUICE_TXN_CLASSPATH="$_txn_classes:$_txn_jars/*"
  fi
fi
