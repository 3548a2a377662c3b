#!/usr/bin/env bash
# A hands-on demo: builds objmount, mounts memory://demo at ./mnt preloaded (--seed) with a small
# sample tree, tells you what to try, and unmounts when you press Ctrl-C (or on SIGTERM / exit).
#
# Without a terminal on stdin (CI) it only smoke-tests: mount, ls -lR, df -h, compare with the
# sample, unmount, exit 0.
#
# Environment:
#   SWIFT         the Swift driver (default /opt/swift/usr/bin/swift)
#   OBJMOUNT_BIN  use this objmount binary instead of building one
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

SWIFT="${SWIFT:-/opt/swift/usr/bin/swift}"
BUILD_FLAGS=(--explicit-target-dependency-import-check error)
MNT="$ROOT/mnt"

die() { printf 'demo: %s\n' "$*" >&2; exit 1; }



# The filesystem type mounted at $1 (the last mount there), or nothing (util-linux's findmnt
# reads the kernel's mount table).
mount_type() { findmnt -n -o FSTYPE --mountpoint "$1" 2>/dev/null | tail -n 1; }
is_mounted() { [ -n "$(mount_type "$1")" ]; }

install_missing_packages

if [ -n "${OBJMOUNT_BIN:-}" ]; then
    BIN="$OBJMOUNT_BIN"
else
    log "building objmount (debug)"
    "$SWIFT" build "${BUILD_FLAGS[@]}"
    BIN="$("$SWIFT" build "${BUILD_FLAGS[@]}" --show-bin-path)/objmount"
fi
[ -x "$BIN" ] || die "no objmount binary at $BIN"

if is_mounted "$MNT"; then
    [ "$(mount_type "$MNT")" = fuse.objmount ] || die "$MNT is already mounted ($(mount_type "$MNT")); unmount it first"
    log "$MNT is still mounted from an earlier demo: unmounting it"
    "$BIN" unmount "$MNT"
fi
mkdir -p "$MNT"
[ -z "$(ls -A "$MNT")" ] || die "$MNT is not empty; empty or remove it first"

DEMO_TMP="$(mktemp -d "${TMPDIR:-/tmp}/objmount-demo.XXXXXX")"
SAMPLE="$DEMO_TMP/sample"
CACHE="$DEMO_TMP/cache"

CLEANED=0
cleanup() {
    local rc=$?
    [ "$CLEANED" -eq 0 ] || return 0
    CLEANED=1
    trap '' INT TERM HUP
    if is_mounted "$MNT"; then
        echo
        log "unmounting $MNT"
        if ! timeout 120 "$BIN" unmount "$MNT"; then
            echo "demo: a process still uses $MNT (a shell cd'ed into it?); detaching it lazily" >&2
            timeout 60 fusermount3 -u "$MNT" 2>/dev/null || timeout 60 fusermount3 -uz "$MNT" || true
        fi
    fi
    if is_mounted "$MNT"; then
        echo "demo: $MNT is still mounted; the log is $CACHE/objmount.log" >&2
        rc=1
    else
        rm -rf --one-file-system "$DEMO_TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

log "making a sample tree in $SAMPLE"
mkdir -p "$SAMPLE/notes" "$SAMPLE/data" "$SAMPLE/empty dir"
if [ -d /usr/share/doc/apt ]; then
    cp -a /usr/share/doc/apt "$SAMPLE/apt"
fi
cat >"$SAMPLE/README.txt" <<EOF
objmount demo
=============
This tree was preloaded into the in-memory store memory://demo with --seed
and is mounted at $MNT. Everything you write here lives in the daemon's memory
and is gone after unmount.

Generated on $(date -u +%Y-%m-%dT%H:%M:%SZ) by scripts/demo.sh.
EOF
printf 'hello from objmount\n' >"$SAMPLE/notes/hello.txt"
printf 'a file name with spaces and ünïcode\n' >"$SAMPLE/notes/spaces and ünïcode.txt"
seq 1 1000 | awk '{ print $1 "," $1 * $1 }' >"$SAMPLE/data/squares.csv"
head -c 1048576 /dev/urandom >"$SAMPLE/data/random-1MiB.bin"
touch -d '2001-09-09 01:46:40 UTC' "$SAMPLE/notes/hello.txt"

log "mounting memory://demo at $MNT"
"$BIN" mount memory://demo "$MNT" --seed "$SAMPLE" --cache-dir "$CACHE"

if [ ! -t 0 ]; then
    # Non-interactive (CI): a short smoke test, then unmount via the EXIT trap.
    log "ls -lR mnt | head -n 30"
    { ls -lR "$MNT" || true; } | head -n 30
    log "df -h mnt"
    df -h "$MNT"
    log "diff -r <sample> mnt"
    diff -r "$SAMPLE" "$MNT"
    [ "$(cat "$MNT/notes/hello.txt")" = "hello from objmount" ] || die "unexpected content in mnt/notes/hello.txt"
    log "objmount status mnt"
    "$BIN" status "$MNT"
    log "demo smoke test OK"
    exit 0
fi

REL="${MNT#"$PWD"/}"
cat <<EOF

objmount is serving memory://demo at ./$REL  (log: $CACHE/objmount.log)
Try, in another terminal (cd $ROOT):

  ls -l $REL $REL/notes
  cat $REL/README.txt
  cp -a /usr/share/doc/bash $REL/ && ls -l $REL/bash
  rsync -a --stats /usr/share/doc/coreutils/ $REL/coreutils/
  dd if=/dev/zero of=$REL/zeros bs=1M count=64 conv=fsync
  df -h $REL
  $BIN unmount $REL

Press Ctrl-C here to unmount and quit.
EOF

# Wait until Ctrl-C / SIGTERM, or until someone unmounts it by hand.
while is_mounted "$MNT"; do
    sleep 1 &
    wait $! || true
done
log "$MNT was unmounted"
