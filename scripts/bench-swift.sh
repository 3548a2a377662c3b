#!/usr/bin/env bash
# dd through a swift:// mount next to python-swiftclient's upload/download of the same file, on
# the local Swift server (scripts/swift-server.sh). A benchmark run, not a test.
# Usage: scripts/bench-swift.sh [MiB] [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-512}
RUNS=${2:-3}
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
release_build
BIN=$RELEASE_BIN
scripts/swift-server.sh start >/dev/null
eval "$(scripts/swift-server.sh env)"
export ST_AUTH ST_USER ST_KEY
VENV=${OBJMOUNT_BENCH_VENV:-/tmp/objmount-bench-venv}
[ -x "$VENV/bin/swift" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q python-swiftclient; }
WORK=$(mktemp -d /tmp/objmount-bench-swift.XXXXXX)
MNT=$WORK/mnt
mkdir -p "$MNT"
cleanup() {
    "$BIN" unmount "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
"$VENV/bin/swift" post bench
head -c $((SIZE_MIB << 20)) /dev/urandom > "$WORK/file"
bytes=$((SIZE_MIB << 20))
mbps() { python3 -c "print(f'{$bytes/1e6/($2-$1):.0f}')"; }
now() { date +%s.%N; }
"$BIN" mount swift://bench "$MNT" --cache-dir "$WORK/cache"
echo "swift:// vs python-swiftclient, $SIZE_MIB MiB of random data, $(nproc) cores; MB = 10^6 B"
for i in $(seq 1 "$RUNS"); do
    t0=$(now); dd if="$WORK/file" of="$MNT/f$i" bs=1M conv=fsync status=none; t1=$(now)
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    t2=$(now); dd if="$MNT/f$i" of=/dev/null bs=1M status=none; t3=$(now)
    # python-swiftclient: default segment size off (one PUT), as `swift upload` does it here.
    t4=$(now); (cd "$WORK" && "$VENV/bin/swift" upload bench file --object-name "py$i" >/dev/null); t5=$(now)
    t6=$(now); "$VENV/bin/swift" download bench "py$i" -o /dev/null >/dev/null; t7=$(now)
    echo "run $i: objmount write $(mbps $t0 $t1) MB/s, read $(mbps $t2 $t3) MB/s | python-swiftclient upload $(mbps $t4 $t5) MB/s, download $(mbps $t6 $t7) MB/s"
done
