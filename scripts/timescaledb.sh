#!/usr/bin/env bash
# Build TimescaleDB from ../shared/vendor into private copies of the machine's PostgreSQL 15 tree, one prefix per
# version, so the system PostgreSQL (and the plain-table test path) never sees the extension.
#
#   bash scripts/timescaledb.sh build [VERSION ...]   # default: every version in TIMESCALEDB_VERSIONS below
#   bash scripts/timescaledb.sh prefix VERSION         # print the prefix (its usr/lib/postgresql/15/bin has initdb)
#
# Needs Debian's postgresql-15, postgresql-server-dev-15, cmake, build-essential, libssl-dev, libkrb5-dev
# (.ci/run installs them). Builds are cached in $SQAL_TIMESCALEDB_CACHE (default ~/.cache/sqal/timescaledb):
# a second run with the same source archive does nothing. Measured here: 2.17.2 ~35 s, 2.28.3 ~100 s (2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

TIMESCALEDB_VERSIONS=(2.17.2 2.28.3)
PG_MAJOR=15
CACHE="${SQAL_TIMESCALEDB_CACHE:-${HOME:-/root}/.cache/sqal/timescaledb}"
VENDOR="${SQAL_VENDOR_DIR:-$(cd .. && pwd)/shared/vendor}"

prefix_of() { echo "$CACHE/pg$PG_MAJOR-timescaledb-$1"; }

build_one() {
  local version=$1 prefix archive stamp work
  prefix=$(prefix_of "$version")
  archive="$VENDOR/timescaledb-$version.tar.gz"
  [ -f "$archive" ] || { echo "timescaledb.sh: no source archive $archive" >&2; return 1; }
  stamp="$prefix/.built-$(cksum < "$archive" | cut -d' ' -f1)"
  if [ -f "$stamp" ]; then echo "timescaledb $version: cached in $prefix"; return 0; fi
  [ -x "/usr/lib/postgresql/$PG_MAJOR/bin/pg_config" ] || {
    echo "timescaledb.sh: PostgreSQL $PG_MAJOR server headers missing (apt-get install postgresql-server-dev-$PG_MAJOR)" >&2
    return 1
  }
  echo "timescaledb $version: building into $prefix"
  rm -rf "$prefix"
  mkdir -p "$prefix/usr/lib/postgresql" "$prefix/usr/share/postgresql" "$prefix/usr/include"
  # Debian's binaries find share/ and lib/ relative to their own bin/: a copy keeping the layout is self-contained.
  cp -a "/usr/lib/postgresql/$PG_MAJOR" "$prefix/usr/lib/postgresql/"
  cp -a "/usr/share/postgresql/$PG_MAJOR" "$prefix/usr/share/postgresql/"
  cp -a /usr/include/postgresql "$prefix/usr/include/"
  work=$(mktemp -d)
  tar -xzf "$archive" -C "$work"
  local started=$SECONDS
  (
    cd "$work/timescaledb-$version"
    ./bootstrap -DPG_CONFIG="$prefix/usr/lib/postgresql/$PG_MAJOR/bin/pg_config" -DREGRESS_CHECKS=OFF \
      -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF -DAPACHE_ONLY=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    make -C build -j"$(nproc)" >/dev/null
    make -C build install >/dev/null
  )
  rm -rf "$work"
  # The cluster runs as the postgres user: it must read the tree.
  chmod -R a+rX "$prefix"
  touch "$stamp"
  echo "timescaledb $version: built in $((SECONDS - started)) s"
}

case "${1:-build}" in
  build)
    shift || true
    versions=("$@")
    [ ${#versions[@]} -gt 0 ] || versions=("${TIMESCALEDB_VERSIONS[@]}")
    for version in "${versions[@]}"; do build_one "$version"; done
    ;;
  prefix) prefix_of "${2:?version}" ;;
  versions) echo "${TIMESCALEDB_VERSIONS[@]}" ;;
  *) echo "usage: $0 build [VERSION ...] | prefix VERSION | versions" >&2; exit 2 ;;
esac
