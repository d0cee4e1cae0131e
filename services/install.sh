#!/usr/bin/env bash
# Provision what the project's tests, benchmarks and dev stack need on a fresh
# Debian machine: redis-server and chromium (apt), a Java runtime + Maven, and
# the jars of a single-node Kafka broker (Maven Central, into a cache dir that
# is never inside the repo).
#
# Idempotent and quiet when everything is already there.
#
#   bash services/install.sh               # everything
#   bash services/install.sh --kafka-only  # just the Kafka jars (used by services/kafka.ts)
#   bash services/install.sh --no-chromium # everything but the browser
#   bash services/install.sh --print-kafka-home  # print the Kafka dir and exit
#
# Env: CLICKFOLD_CACHE (default $HOME/.cache/clickfold)
#      CLICKFOLD_SKIP_CHROMIUM=1 (same as --no-chromium)
#      KAFKA_VERSION (default: <kafka.version> of services/kafka/pom.xml, the
#        newest 4.x; a 3.x version is fetched through services/kafka/pom-3.xml)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pom="$here/kafka/pom.xml"
cache="${CLICKFOLD_CACHE:-${HOME:-/root}/.cache/clickfold}"

kafka_only=0
want_chromium=1
print_home=0
[[ "${CLICKFOLD_SKIP_CHROMIUM:-}" == "1" ]] && want_chromium=0
for arg in "$@"; do
  case "$arg" in
    --kafka-only) kafka_only=1 ;;
    --no-chromium) want_chromium=0 ;;
    --print-kafka-home) print_home=1 ;;
    -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "install.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

say() { echo "[services:install] $*"; }
die() { echo "[services:install] ERROR: $*" >&2; exit 1; }

kafka_version="${KAFKA_VERSION:-$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom" | head -n1)}"
[[ -n "$kafka_version" ]] || die "cannot read <kafka.version> from $pom"
[[ "$kafka_version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "KAFKA_VERSION must look like 4.4.0, not '$kafka_version'"
# 3.x logs through log4j 1.x (reload4j), 4.x through log4j2: one pom per line.
[[ "$kafka_version" == 3.* ]] && pom="$here/kafka/pom-3.xml"
kafka_home="$cache/kafka-$kafka_version"

if [[ $print_home == 1 ]]; then echo "$kafka_home"; exit 0; fi

# ---- apt ---------------------------------------------------------------------
apt_updated=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install manually: $*"
  local sudo=""
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to apt-get install $*"
    sudo="sudo"
  fi
  local log
  log="$(mktemp)"
  if [[ $apt_updated == 0 ]]; then
    say "apt-get update"
    if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$log" 2>&1; then
      tail -n 20 "$log" >&2; rm -f "$log"; die "apt-get update failed"
    fi
    apt_updated=1
  fi
  say "apt-get install $*"
  if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >"$log" 2>&1; then
    tail -n 20 "$log" >&2; rm -f "$log"; die "apt-get install $* failed"
  fi
  rm -f "$log"
}

if [[ $kafka_only == 0 ]]; then
  if ! command -v redis-server >/dev/null 2>&1; then
    apt_install redis-server
    say "installed redis-server: $(redis-server --version | head -n1)"
  fi
  if [[ $want_chromium == 1 ]] && [[ ! -x /usr/bin/chromium ]]; then
    say "installing chromium (slow, only this once)"
    apt_install chromium
    say "installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
  fi
fi

# ---- java + maven --------------------------------------------------------------
java_major() {
  # 'openjdk version "17.0.15" 2025-04-15' -> 17 ; '"1.8.0_392"' -> 8
  java -version 2>&1 | sed -n 's/.* version "\([0-9][0-9._]*\).*/\1/p' | head -n1 \
    | awk -F. '{ if ($1 == 1) print $2; else print $1 }'
}
if ! command -v java >/dev/null 2>&1; then
  if [[ $kafka_only == 1 ]]; then die "java not found: run 'npm run services:install'"; fi
  apt_install default-jre-headless
fi
jm="$(java_major)"
[[ -n "$jm" && "$jm" -ge 11 ]] || die "Kafka $kafka_version needs Java 11+, found: $(java -version 2>&1 | head -n1)"

# ---- kafka jars ------------------------------------------------------------------
# Marker holds a hash of the pom, so editing the pom (version, extra jar) refetches.
marker="$kafka_home/.complete"
pom_hash="$( { cat "$pom"; echo "$kafka_version"; } | sha256sum | cut -d' ' -f1)"
if [[ -f "$marker" && "$(cat "$marker")" == "$pom_hash" ]]; then
  : # already fetched: stay quiet
else
  if ! command -v mvn >/dev/null 2>&1; then
    if [[ $kafka_only == 1 ]]; then die "mvn not found: run 'npm run services:install'"; fi
    apt_install maven
  fi
  mkdir -p "$cache"
  # Serialise concurrent fetches (two test runs, a stack and a test run...).
  exec 9>"$cache/.kafka-$kafka_version.lock"
  if command -v flock >/dev/null 2>&1; then flock 9; fi
  if [[ -f "$marker" && "$(cat "$marker")" == "$pom_hash" ]]; then
    : # another process finished it while we waited
  else
    say "fetching Kafka $kafka_version jars from Maven Central into $kafka_home/libs"
    start=$(date +%s)
    tmp="$(mktemp -d "$cache/.kafka-$kafka_version.XXXXXX")"
    log="$tmp/mvn.log"
    if ! mvn -B -q -f "$pom" -Dkafka.version="$kafka_version" dependency:copy-dependencies \
          -DoutputDirectory="$tmp/libs" >"$log" 2>&1; then
      tail -n 40 "$log" >&2 || true
      rm -rf "$tmp"
      die "fetching Kafka $kafka_version with Maven failed (see above)"
    fi
    ls "$tmp"/libs/kafka_2.13-"$kafka_version".jar >/dev/null 2>&1 \
      || { rm -rf "$tmp"; die "Maven finished but kafka_2.13-$kafka_version.jar is missing"; }
    rm -rf "$kafka_home"
    mkdir -p "$kafka_home"
    mv "$tmp/libs" "$kafka_home/libs"
    rm -rf "$tmp"
    echo "$pom_hash" >"$marker"
    n=$(ls "$kafka_home/libs" | wc -l)
    say "Kafka $kafka_version ready: $n jars, $(du -sh "$kafka_home/libs" | cut -f1), $(( $(date +%s) - start ))s"
  fi
  exec 9>&-
fi
