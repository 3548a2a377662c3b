#!/usr/bin/env bash
# Sequential dd through a memory:// mount (1 MiB blocks): write (to close, fsync'd) and read
# with the page cache dropped. A benchmark run, not a test. Usage: scripts/bench-dd.sh [MiB] [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
RUNS=${2:-3}
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
release_build
BIN=$RELEASE_BIN
WORK=$(mktemp -d /tmp/objmount-bench.XXXXXX)
MNT=$WORK/mnt
mkdir -p "$MNT"
cleanup() {
    "$BIN" unmount "$MNT" 2>/dev/null || fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
"$BIN" mount memory://bench "$MNT" --cache-dir "$WORK/cache"
mbps() { python3 -c "import sys; print(f'{$1/1e6/$2:.0f}')"; }
echo "dd bs=1M count=$SIZE_MIB through memory:// ($(nproc) cores, $(uname -r)); MB = 10^6 B"
for i in $(seq 1 "$RUNS"); do
    rm -f "$MNT/f"
    t0=$(date +%s.%N)
    dd if=/dev/zero of="$MNT/f" bs=1M count="$SIZE_MIB" conv=fsync status=none
    t1=$(date +%s.%N)
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    t2=$(date +%s.%N)
    dd if="$MNT/f" of=/dev/null bs=1M status=none
    t3=$(date +%s.%N)
    bytes=$((SIZE_MIB * 1048576))
    echo "run $i: write $(mbps $bytes "($t1-$t0)") MB/s, read $(mbps $bytes "($t3-$t2)") MB/s"
done
