#!/usr/bin/env bash
# Builds objmount once and runs both test tiers:
#   1. scripts/check.sh: format lint, the build with warnings as errors, declared imports, and
#      the hermetic tier (`swift test`, no FUSE needed; reuses the same .build)
#   2. FUSE:     `python3 -m pytest -q Tests/fuse` against the built binary (needs root + /dev/fuse)
# Installs what is missing first (Debian packages fuse3 libfuse3-dev libssl-dev pkg-config rsync curl attr s3fs systemd;
# pytest; a virtualenv with ks3sdk and boto3, see Tests/fuse/testvenv.py).
# Exits non-zero if the build or any tier failed.
#
# Environment:
#   SWIFT                 the Swift driver (default /opt/swift/usr/bin/swift; /usr/bin/swift may be
#                         the OpenStack CLI)
#   OBJMOUNT_TEST_REMOTES remotes for the FUSE tier (default memory://), see Tests/fuse/conftest.py
#   FUSE_TIER_TIMEOUT     seconds before the FUSE tier is stopped (default 2400)
#   OBJMOUNT_TEST_VENV    the tests' virtualenv (default /tmp/objmount-test-venv)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

SWIFT="${SWIFT:-/opt/swift/usr/bin/swift}"
# The same flags as scripts/check.sh, so that its build is this build.
BUILD_FLAGS=(--explicit-target-dependency-import-check error -Xswiftc -warnings-as-errors)

warn() { printf 'WARNING: %s\n' "$*" >&2; }


install_test_tools() {
    install_missing_packages "${TEST_PACKAGES[@]}"
    if ! python3 -m pytest --version >/dev/null 2>&1; then
        log "installing pytest"
        python3 -m pip install -q pytest
    fi
}

# fuse.objmount mount points under $1, from util-linux's findmnt (its raw output escapes
# spaces and other bytes as \xNN, decoded here).
objmount_mounts_under() {
    local root="${1%/}/" mp
    findmnt -rn -t fuse.objmount -o TARGET 2>/dev/null |
        while IFS= read -r mp; do
            mp="$(printf '%b' "$mp")"
            case "$mp/" in "$root"*) printf '%s\n' "$mp" ;; esac
        done
}

cleanup_mounts() {
    local roots=() root mp
    [ -n "$TEST_TMP" ] && roots+=("$TEST_TMP")
    roots+=("${TMPDIR:-/tmp}/pytest-of-$(id -un)")
    for root in "${roots[@]}"; do
        while IFS= read -r mp; do
            [ -n "$mp" ] || continue
            warn "left-over objmount mount $mp: unmounting"
            if [ -n "$BIN" ] && [ -x "$BIN" ] && timeout 120 "$BIN" unmount "$mp"; then continue; fi
            timeout 60 fusermount3 -u "$mp" 2>/dev/null || timeout 60 fusermount3 -uz "$mp" || true
        done < <(objmount_mounts_under "$root")
    done
}
SWIFT_SERVER_STARTED=0
HUBIC_PID=""
KS3_PID=""
on_exit() {
    cleanup_mounts
    if [ -n "$HUBIC_PID" ]; then kill "$HUBIC_PID" 2>/dev/null || true; fi
    if [ -n "$KS3_PID" ]; then kill "$KS3_PID" 2>/dev/null || true; fi
    if [ "$SWIFT_SERVER_STARTED" = 1 ]; then "$ROOT/scripts/swift-server.sh" stop >/dev/null 2>&1 || true; fi
}
trap on_exit EXIT

install_test_tools

FAILED=()
build_rc=0 hermetic_rc=0 fuse_rc=0

log "swift build ${BUILD_FLAGS[*]} --build-tests"
"$SWIFT" build "${BUILD_FLAGS[@]}" --build-tests || build_rc=$?
if [ "$build_rc" -ne 0 ]; then
    echo "build: FAILED (exit $build_rc); no tests run" >&2
    exit 1
fi
BIN="$("$SWIFT" build "${BUILD_FLAGS[@]}" --show-bin-path)/objmount"
[ -x "$BIN" ] || { echo "build: no binary at $BIN" >&2; exit 1; }

log "scripts/check.sh: format lint, build with warnings as errors, declared imports, hermetic tier"
SWIFT="$SWIFT" "$ROOT/scripts/check.sh" || hermetic_rc=$?
[ "$hermetic_rc" -eq 0 ] || FAILED+=("scripts/check.sh (format lint, warnings, imports or hermetic tier; exit $hermetic_rc)")

# Starts the KS3 emulator (Tests/emulators/ks3_emulator.py, default KS3 keys) in front of the
# Swift server's s3api with python $1. Sets KS3_PID, and KS3_URL to its base URL once it reports
# `listening on` (up to 30 s); returns non-zero with KS3_URL empty otherwise (its log: KS3_LOG).
KS3_URL="" KS3_LOG=""
start_ks3_emulator() {
    local python=$1
    KS3_LOG="$(mktemp /tmp/objmount-ks3-emulator.XXXXXX)"
    PYTHONUNBUFFERED=1 "$python" "$ROOT/Tests/emulators/ks3_emulator.py" --port 0 \
        --upstream "$AWS_ENDPOINT_URL" --upstream-access-key "$AWS_ACCESS_KEY_ID" \
        --upstream-secret-key "$AWS_SECRET_ACCESS_KEY" >"$KS3_LOG" 2>"$KS3_LOG.err" &
    KS3_PID=$!
    for _ in $(seq 1 300); do
        grep -q '^listening on ' "$KS3_LOG" && break
        kill -0 "$KS3_PID" 2>/dev/null || break
        sleep 0.1
    done
    KS3_URL="$(sed -n 's/^listening on //p' "$KS3_LOG" | head -1)"
    [ -n "$KS3_URL" ]
}

# Driver tier: the storage conformance suite against a real OpenStack Swift server, its s3api
# (s3://) and the KS3 emulator in front of that (ks3://).
driver_rc=0
log "starting the OpenStack Swift test server (scripts/swift-server.sh)"
if "$ROOT/scripts/swift-server.sh" start >/dev/null; then
    SWIFT_SERVER_STARTED=1
    eval "$("$ROOT/scripts/swift-server.sh" env)"
    export ST_AUTH ST_USER ST_KEY OBJMOUNT_SWIFT_NOSLO_AUTH
    token_and_url="$(curl -s -i -H "X-Auth-User: $ST_USER" -H "X-Auth-Key: $ST_KEY" "$ST_AUTH" | tr -d '\r')"
    token="$(printf '%s\n' "$token_and_url" | awk -F': ' 'tolower($1) == "x-auth-token" { print $2 }')"
    url="$(printf '%s\n' "$token_and_url" | awk -F': ' 'tolower($1) == "x-storage-url" { print $2 }')"
    # s3://objmount-s3 and ks3://objmount-ks3: buckets of s3api are containers of the account
    # AUTH_test (test:tester), so they are created as containers. Set before the conformance
    # run, which reads the same variables.
    export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_ENDPOINT_URL AWS_REGION AWS_DEFAULT_REGION
    if curl -sf -o /dev/null -X PUT -H "X-Auth-Token: $token" "$url/objmount-s3"; then
        export OBJMOUNT_TEST_S3_BUCKET=objmount-s3
    else
        FAILED+=("could not create the s3:// test bucket objmount-s3")
    fi
    # The tests' virtualenv: ks3sdk and boto3 (the KS3 emulator and the interop tests use it).
    venv_out="$(mktemp /tmp/objmount-test-venv.XXXXXX)"
    if python3 "$ROOT/Tests/fuse/testvenv.py" ks3sdk==1.18.0 boto3 >"$venv_out" 2>"$venv_out.err" &&
            VENV_PYTHON="$(tail -n 1 "$venv_out")" && [ -x "$VENV_PYTHON" ]; then
        export OBJMOUNT_TEST_VENV_PYTHON="$VENV_PYTHON"
        if ! curl -sf -o /dev/null -X PUT -H "X-Auth-Token: $token" "$url/objmount-ks3"; then
            FAILED+=("could not create the ks3:// test bucket objmount-ks3")
        elif start_ks3_emulator "$VENV_PYTHON"; then
            export OBJMOUNT_TEST_KS3_ENDPOINT="$KS3_URL" OBJMOUNT_TEST_KS3_BUCKET=objmount-ks3
            export KS3_ACCESS_KEY_ID=AKLTobjmounttest KS3_SECRET_ACCESS_KEY=objmount-ks3-test-secret
        else
            FAILED+=("the KS3 emulator did not start: $(tail -n 5 "$KS3_LOG.err")")
        fi
    else
        FAILED+=("could not prepare the tests' virtualenv (Tests/fuse/testvenv.py): $(tail -n 5 "$venv_out.err")")
    fi
    rm -f "$venv_out" "$venv_out.err"
    log "driver tier: swift test --filter 'ConformanceTests|KSSV2LiveTests' (memory, Swift with SLO, Swift without SLO, s3, ks3; KSS signatures against ks3sdk)"
    OBJMOUNT_TEST_SWIFT=1 "$SWIFT" test "${BUILD_FLAGS[@]}" --filter "ConformanceTests|KSSV2LiveTests" || driver_rc=$?
    # The FUSE tier mounts swift://objmount-fuse/<per-test prefix> too.
    if curl -sf -o /dev/null -X PUT -H "X-Auth-Token: $token" "$url/objmount-fuse"; then
        export OBJMOUNT_TEST_SWIFT_CONTAINER=objmount-fuse
    else
        FAILED+=("could not create the FUSE tier's Swift container")
    fi
    # The FUSE tier also runs through hubic://default, via the Hubic OAuth2 emulator.
    HUBIC_LOG="$(mktemp /tmp/objmount-hubic-emulator.XXXXXX)"
    python3 "$ROOT/Tests/emulators/hubic_emulator.py" --port 0 --swift-auth "$ST_AUTH" \
        --swift-user "$ST_USER" --swift-key "$ST_KEY" >"$HUBIC_LOG" 2>"$HUBIC_LOG.err" &
    HUBIC_PID=$!
    for _ in $(seq 1 100); do grep -q '^listening on ' "$HUBIC_LOG" && break; sleep 0.1; done
    if grep -q '^listening on ' "$HUBIC_LOG"; then
        export OBJMOUNT_TEST_HUBIC_API_URL="$(sed -n 's/^listening on //p' "$HUBIC_LOG" | head -1)"
    else
        FAILED+=("the Hubic emulator did not start: $(cat "$HUBIC_LOG.err")")
    fi
else
    driver_rc=1
fi
[ "$driver_rc" -eq 0 ] || FAILED+=("driver tier (Swift server or conformance suite, exit $driver_rc)")

log "FUSE tier: OBJMOUNT_BIN=$BIN python3 -m pytest -q Tests/fuse"
if [ ! -e /dev/fuse ] || [ "$(id -u)" -ne 0 ]; then
    warn "FUSE tier needs root and /dev/fuse; its tests will be reported as skipped"
fi
TEST_TMP="$(mktemp -d "${TMPDIR:-/tmp}/objmount-fuse-tests.XXXXXX")"
OBJMOUNT_BIN="$BIN" PYTHONDONTWRITEBYTECODE=1 \
    timeout --kill-after=30 "${FUSE_TIER_TIMEOUT:-2400}" \
    python3 -m pytest -q -rs -p no:cacheprovider --basetemp "$TEST_TMP/pytest" Tests/fuse || fuse_rc=$?
case "$fuse_rc" in
    0) ;;
    5) FAILED+=("FUSE tier (pytest collected no tests, exit 5)") ;;
    124 | 137) FAILED+=("FUSE tier (timed out after ${FUSE_TIER_TIMEOUT:-2400} s)") ;;
    *) FAILED+=("FUSE tier (pytest exit $fuse_rc)") ;;
esac

cleanup_mounts
if [ "$fuse_rc" -eq 0 ] && [ -z "$(objmount_mounts_under "$TEST_TMP")" ]; then
    rm -rf --one-file-system "$TEST_TMP"
else
    echo "FUSE tier files kept in $TEST_TMP (daemon logs: $TEST_TMP/pytest/cache*/objmount.log)"
fi

if [ "${#FAILED[@]}" -gt 0 ]; then
    for f in "${FAILED[@]}"; do echo "FAILED: $f" >&2; done
    exit 1
fi
log "build, hermetic tier and FUSE tier OK"
