# Shared by the scripts (sourced, not run).

log() { printf '==> %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

# Debian packages objmount needs to build and mount, plus the packages "$@" (e.g.
# "${TEST_PACKAGES[@]}"): installed only if missing.
install_missing_packages() {
    install_packages_if_missing fuse3 libfuse3-dev libssl-dev pkg-config rsync curl "$@"
}

# Installs the Debian packages "$@" that are not installed yet (one apt-get run for all).
install_packages_if_missing() {
    local missing=() p
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$p")
        fi
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]}"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}

# Debian packages scripts/test.sh needs on top of those:
#   attr  getfattr/setfattr (the FUSE tier sets and reads user.* attributes)
#   s3fs  Debian's s3fs, to check that it and objmount read each other's symlinks
#   systemd  systemd-analyze, to verify the example units in doc/systemd
# (scripts/bench-s3.sh installs awscli itself; the tests do not need it.)
# shellcheck disable=SC2034  # used by the scripts that source this file
TEST_PACKAGES=(attr s3fs systemd)

# The release build that the benchmarks and scripts/scale.sh measure, as a user would build it
# to install (README, "Use"): optimized, with the Swift runtime and Foundation linked in
# statically (--static-swift-stdlib), so that the daemon maps only the code it uses: 28 MiB
# resident at mount instead of 33.5 with the toolchain's shared libraries. Builds into
# ${OBJMOUNT_RELEASE_BUILD:-.build-release} and sets RELEASE_BIN to the binary; returns the
# build's exit status.
release_build() {
    local swift=/opt/swift/usr/bin/swift scratch=${OBJMOUNT_RELEASE_BUILD:-.build-release}
    local flags=(-c release --static-swift-stdlib --scratch-path "$scratch")
    "$swift" build "${flags[@]}" >/dev/null || return
    RELEASE_BIN="$("$swift" build "${flags[@]}" --show-bin-path)/objmount"
}
