#!/usr/bin/env bash
# dd through an s3:// mount next to `aws s3 cp` upload/download of the same file, on the local
# Swift server's s3api (scripts/swift-server.sh). A benchmark run, not a test.
# Usage: scripts/bench-s3.sh [MiB] [runs]
#
# The peer is Debian's awscli (/usr/bin/aws, apt-get installed when missing; any other `aws` in
# PATH is not used). If that package cannot be installed, boto3's upload_file/download_file from
# the tests' virtualenv (Tests/fuse/testvenv.py) stand in, and the output says so. Both use 8 MiB
# parts above 8 MiB, 10 in flight; objmount runs with its defaults (one PUT up to 64 MiB, 16 MiB
# parts above, 4 in flight).
# OBJMOUNT_BENCH_PEER=boto3 picks boto3 even where awscli is installable.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
SIZE_MIB=${1:-512}
RUNS=${2:-3}
BUCKET=objmount-bench
install_missing_packages
release_build
BIN=$RELEASE_BIN
scripts/swift-server.sh start >/dev/null
eval "$(scripts/swift-server.sh env)"
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_ENDPOINT_URL AWS_REGION AWS_DEFAULT_REGION

# The peer: PEER_NAME, and peer_upload FILE KEY / peer_download KEY print the seconds taken.
AWS=/usr/bin/aws
if [ "${OBJMOUNT_BENCH_PEER:-}" != boto3 ] && install_packages_if_missing awscli >&2 && [ -x "$AWS" ]; then
    PEER_NAME="aws s3 cp ($("$AWS" --version 2>&1 | cut -d' ' -f1), Debian)"
    # (Debian's awscli 2.9 predates AWS_ENDPOINT_URL: the endpoint is passed explicitly.)
    peer_upload() {
        local t0 t1
        t0=$(now); "$AWS" --endpoint-url "$AWS_ENDPOINT_URL" s3 cp --only-show-errors "$1" "s3://$BUCKET/$2"; t1=$(now)
        secs "$t0" "$t1"
    }
    peer_download() {
        local t0 t1
        t0=$(now); "$AWS" --endpoint-url "$AWS_ENDPOINT_URL" s3 cp --only-show-errors "s3://$BUCKET/$1" - >/dev/null; t1=$(now)
        secs "$t0" "$t1"
    }
    peer_delete() { "$AWS" --endpoint-url "$AWS_ENDPOINT_URL" s3 rm --only-show-errors "s3://$BUCKET/$1"; }
    # The peer's figures include the CLI's start-up: report one listing request's wall time.
    peer_overhead() {
        local t0 t1
        t0=$(now); "$AWS" --endpoint-url "$AWS_ENDPOINT_URL" s3 ls "s3://$BUCKET/no-such-prefix/" >/dev/null || true; t1=$(now)
        echo "peer figures include aws start-up: \`aws s3 ls\` of an empty prefix takes $(python3 -c "print(f'{$t1 - $t0:.2f}')") s"
    }
else
    why="Debian's awscli could not be installed here"
    [ "${OBJMOUNT_BENCH_PEER:-}" != boto3 ] || why="OBJMOUNT_BENCH_PEER=boto3"
    echo "NOTE: $why; the peer is boto3 upload_file/download_file (timed inside python, without" \
        "interpreter start-up) instead of \`aws s3 cp\`." >&2
    VENV_PY=$(python3 Tests/fuse/testvenv.py boto3 | tail -n 1)
    PEER_NAME="boto3 $("$VENV_PY" -c 'import boto3; print(boto3.__version__)') upload_file/download_file ($why)"
    BOTO3_PRELUDE='import os, sys, time, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], config=Config(s3={"addressing_style": "path"}))
'
    peer_upload() {
        "$VENV_PY" -c "$BOTO3_PRELUDE"'
t0 = time.monotonic(); s3.upload_file(sys.argv[1], sys.argv[2], sys.argv[3]); print(time.monotonic() - t0)' "$1" "$BUCKET" "$2"
    }
    peer_download() {
        "$VENV_PY" -c "$BOTO3_PRELUDE"'
t0 = time.monotonic(); s3.download_file(sys.argv[1], sys.argv[2], "/dev/null"); print(time.monotonic() - t0)' "$BUCKET" "$1"
    }
    peer_delete() {
        "$VENV_PY" -c "$BOTO3_PRELUDE"'s3.delete_object(Bucket=sys.argv[1], Key=sys.argv[2])' "$BUCKET" "$1"
    }
    peer_overhead() { echo "peer figures are timed inside python (no interpreter start-up)"; }
fi

WORK=$(mktemp -d /tmp/objmount-bench-s3.XXXXXX)
MNT=$WORK/mnt
mkdir -p "$MNT"
PEER_KEYS=()
cleanup() {
    local k
    rm -f "$MNT"/f* 2>/dev/null || true
    "$BIN" unmount "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null || true
    for k in "${PEER_KEYS[@]}"; do peer_delete "$k" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# The bucket is a container of the account test:tester.
token_and_url="$(curl -sf -D - -o /dev/null -H "X-Auth-User: $ST_USER" -H "X-Auth-Key: $ST_KEY" "$ST_AUTH" | tr -d '\r')"
token="$(awk -F': ' 'tolower($1) == "x-auth-token" { print $2 }' <<< "$token_and_url")"
url="$(awk -F': ' 'tolower($1) == "x-storage-url" { print $2 }' <<< "$token_and_url")"
curl -sf -o /dev/null -X PUT -H "X-Auth-Token: $token" "$url/$BUCKET"

head -c $((SIZE_MIB << 20)) /dev/urandom > "$WORK/file"
bytes=$((SIZE_MIB << 20))
now() { date +%s.%N; }
secs() { python3 -c "print($2 - $1)"; }
mbps() { python3 -c "print(f'{$bytes / 1e6 / $1:.0f}')"; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }

"$BIN" mount "s3://$BUCKET" "$MNT" --cache-dir "$WORK/cache"
echo "s3:// vs $PEER_NAME, $SIZE_MIB MiB of random data, $(nproc) cores, s3api of Swift 2.30 on 127.0.0.1; MB = 10^6 B"
peer_overhead
W=() R=() U=() D=()
for i in $(seq 1 "$RUNS"); do
    t0=$(now); dd if="$WORK/file" of="$MNT/f$i" bs=1M conv=fsync status=none; t1=$(now)
    drop_caches
    t2=$(now); dd if="$MNT/f$i" of=/dev/null bs=1M status=none; t3=$(now)
    PEER_KEYS+=("peer$i")
    up=$(peer_upload "$WORK/file" "peer$i")
    drop_caches
    down=$(peer_download "peer$i")
    W+=("$(secs "$t0" "$t1")") R+=("$(secs "$t2" "$t3")") U+=("$up") D+=("$down")
    echo "run $i: objmount write $(mbps "${W[-1]}") MB/s, read $(mbps "${R[-1]}") MB/s" \
        "| peer upload $(mbps "$up") MB/s, download $(mbps "$down") MB/s"
done
python3 - "$bytes" "${W[*]}" "${R[*]}" "${U[*]}" "${D[*]}" <<'EOF'
import statistics, sys
size = int(sys.argv[1])
w, r, u, d = (statistics.median(size / 1e6 / float(t) for t in arg.split()) for arg in sys.argv[2:6])
print(f"median: objmount write {w:.0f} MB/s vs peer upload {u:.0f} MB/s ({w / u:.2f}x); "
      f"objmount read {r:.0f} MB/s vs peer download {d:.0f} MB/s ({r / d:.2f}x)")
EOF
