#!/usr/bin/env bash
# Metadata at scale (issue 13), not part of CI: for each COUNT (default 100000 1000000), the
# bench S3 server starts with COUNT objects made at once (--fill: a tenth in one directory
# `big/`, the rest in directories of 1,000), objmount mounts it, and bench/scale.py reports
# `find | wc -l` (time, per object), `ls -f` of the largest directory (time to the first line
# and in all), `ls -l` of a 10,000-object directory, and the daemon's peak RSS.
#
#   scripts/scale.sh [COUNT...]      e.g. scripts/scale.sh 100000 1000000
#
# Needs root (FUSE) and about 1.5 GB of memory for the server's index per million objects.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

[ "$(id -u)" -eq 0 ] || { echo "scale.sh: run as root (FUSE mounts, drop_caches)" >&2; exit 1; }
install_missing_packages
log "building objmount (release)"
release_build
exec /usr/bin/python3 bench/scale.py --objmount "$RELEASE_BIN" "$@"
