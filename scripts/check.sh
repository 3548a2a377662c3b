#!/usr/bin/env bash
# The checks to pass before committing; CI runs the same script.
#   1. format lint:  swift-format lint --strict (the repo's .swift-format) over Sources, Tests,
#                    Package.swift; any finding fails (without --strict findings are warnings and
#                    lint exits 0)
#   2. build:        swift build --build-tests with Swift warnings as errors
#                    (-Xswiftc -warnings-as-errors) and --explicit-target-dependency-import-check
#                    error, in the usual .build: SwiftPM gives -Xswiftc flags to this package's
#                    targets only (dependencies keep -suppress-warnings), so alternating with a
#                    plain `swift build` recompiles this package's modules, not the dependencies
#                    (measured on the 2-core VM: 32-38 s each way, against 8.5 min and 875 MB for
#                    a cold separate scratch path; set CHECK_SCRATCH for one anyway)
#   3. imports:      python3 scripts/check-imports.py (skipped with a notice while absent)
#   4. hermetic tier: swift test on that build, with the driver tier's variables unset (no
#                    server, no FUSE; scripts/test.sh runs the driver and FUSE tiers)
# Every step runs even after an earlier one failed (the tests only if the build succeeded);
# a summary follows, and the exit status is non-zero if any step failed.
#
# Usage: scripts/check.sh [--fix] [--no-test]
#   --fix      swift-format format -i over the same files first (then lint what is left: lines
#              too long that format cannot break, in comments and string literals)
#   --no-test  skip step 4
#
# Environment:
#   SWIFT          the Swift driver (default /opt/swift/usr/bin/swift; /usr/bin/swift may be the
#                  OpenStack CLI)
#   SWIFT_FORMAT   swift-format (default: next to $SWIFT, else on PATH)
#   CHECK_SCRATCH  a scratch path of its own for the check build and tests (default: .build)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SWIFT="${SWIFT:-/opt/swift/usr/bin/swift}"
if [ -z "${SWIFT_FORMAT:-}" ]; then
    SWIFT_FORMAT="$(dirname "$SWIFT")/swift-format"
    [ -x "$SWIFT_FORMAT" ] || SWIFT_FORMAT="$(command -v swift-format || echo swift-format)"
fi
BUILD_FLAGS=(--explicit-target-dependency-import-check error -Xswiftc -warnings-as-errors)
[ -n "${CHECK_SCRATCH:-}" ] && BUILD_FLAGS+=(--scratch-path "$CHECK_SCRATCH")
FORMAT_PATHS=(Sources Tests Package.swift)
# Variables that switch on tests needing a server (ConformanceTests, KSSV2LiveTests).
DRIVER_TIER_VARIABLES=(OBJMOUNT_TEST_SWIFT OBJMOUNT_TEST_S3_BUCKET OBJMOUNT_TEST_KS3_ENDPOINT OBJMOUNT_TEST_VENV_PYTHON)

fix=0
run_tests=1
for arg in "$@"; do
    case "$arg" in
        --fix) fix=1 ;;
        --no-test) run_tests=0 ;;
        -h | --help)
            sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "check.sh: unknown option $arg (options: --fix, --no-test)" >&2
            exit 2
            ;;
    esac
done

SUMMARY=()
FAILED=0
STEP_START=0
log() { printf '\n== %s\n' "$*"; }
begin() {
    log "$1"
    STEP_START=$SECONDS
}
# record NAME STATUS [DETAIL]
record() {
    local line
    line="$(printf '%-14s %-8s %4ss' "$1" "$2" "$((SECONDS - STEP_START))")"
    [ -n "${3:-}" ] && line+="  $3"
    SUMMARY+=("$line")
    [ "$2" = FAILED ] && FAILED=1
    return 0
}

# 0. --fix
if [ "$fix" = 1 ]; then
    begin "format: $SWIFT_FORMAT format -i --recursive --parallel ${FORMAT_PATHS[*]}"
    if "$SWIFT_FORMAT" format -i --recursive --parallel "${FORMAT_PATHS[@]}"; then
        record format OK
    else
        record format FAILED "swift-format format exited $?"
    fi
fi

# 1. Format lint.
begin "format lint: $SWIFT_FORMAT lint --strict --recursive --parallel ${FORMAT_PATHS[*]}"
lint_out="$(mktemp "${TMPDIR:-/tmp}/objmount-check-lint.XXXXXX")"
"$SWIFT_FORMAT" lint --strict --recursive --parallel "${FORMAT_PATHS[@]}" >"$lint_out" 2>&1
lint_rc=$?
findings="$(grep -cE ':[0-9]+:[0-9]+: (error|warning):' "$lint_out")"
if [ "$lint_rc" -eq 0 ] && [ "$findings" -eq 0 ]; then
    record "format lint" OK
else
    head -n 40 "$lint_out"
    [ "$findings" -gt 40 ] && echo "... $((findings - 40)) more"
    rules="$(sed -nE 's/.*: (error|warning): \[([A-Za-z]+)\].*/\2/p' "$lint_out" | sort | uniq -c | sort -rn |
        awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1 }')"
    [ "$lint_rc" -ne 0 ] && [ "$findings" -eq 0 ] && rules="swift-format exited $lint_rc: $(tail -n 1 "$lint_out")"
    record "format lint" FAILED "$findings finding(s)${rules:+: $rules}; scripts/check.sh --fix formats"
fi
rm -f "$lint_out"

# 2. Build with warnings as errors.
begin "build: $SWIFT build --build-tests ${BUILD_FLAGS[*]}"
build_ok=0
build_out="$(mktemp "${TMPDIR:-/tmp}/objmount-check-build.XXXXXX")"
"$SWIFT" build --build-tests "${BUILD_FLAGS[@]}" 2>&1 | tee "$build_out"
build_rc=${PIPESTATUS[0]}
if [ "$build_rc" -eq 0 ]; then
    build_ok=1
    record build OK
else
    # Warnings made errors still print as "warning:" on some compilers; count both.
    n="$(grep -E '^/.*:[0-9]+:[0-9]+: (error|warning):' "$build_out" | sort -u | wc -l)"
    record build FAILED "exit $build_rc, $n diagnostic(s)"
fi
rm -f "$build_out"

# 3. Import check.
if [ -f scripts/check-imports.py ]; then
    begin "imports: python3 scripts/check-imports.py"
    if python3 scripts/check-imports.py; then record imports OK; else record imports FAILED "exit $?"; fi
else
    STEP_START=$SECONDS
    log "imports: scripts/check-imports.py does not exist (yet): skipped"
    record imports SKIPPED "no scripts/check-imports.py"
fi

# 4. Hermetic tier.
if [ "$run_tests" = 0 ]; then
    STEP_START=$SECONDS
    record tests SKIPPED "--no-test"
elif [ "$build_ok" = 0 ]; then
    STEP_START=$SECONDS
    record tests SKIPPED "the build failed"
else
    unset_args=()
    for v in "${DRIVER_TIER_VARIABLES[@]}"; do unset_args+=(-u "$v"); done
    begin "hermetic tier: swift test ${BUILD_FLAGS[*]}"
    if env "${unset_args[@]}" "$SWIFT" test "${BUILD_FLAGS[@]}"; then
        record tests OK "hermetic tier"
    else
        record tests FAILED "hermetic tier, exit $?"
    fi
fi

printf '\n== summary\n'
for line in "${SUMMARY[@]}"; do printf '%s\n' "$line"; done
if [ "$FAILED" -ne 0 ]; then
    echo "check: FAILED"
    exit 1
fi
echo "check: OK"
