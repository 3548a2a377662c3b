#!/usr/bin/env bash
# A real OpenStack Swift (Debian 12's 2.30 packages) as a single-replica all-in-one on 127.0.0.1,
# for objmount's tests and benchmarks.
#
#   scripts/swift-server.sh start [--no-slo]   install if needed, configure, start, wait, print env
#   scripts/swift-server.sh stop               stop every daemon by its pid file
#   scripts/swift-server.sh status             one line per daemon; exit 0 only if all run
#   scripts/swift-server.sh env                shell exports for clients (eval "$(... env)")
#
# Two proxies always run side by side on the same rings and storage (so a `start` never has to
# be redone because a test wants the other one; `--no-slo` is accepted and changes nothing):
#   - main proxy   ${OBJMOUNT_SWIFT_PORT:-8080}: tempauth, s3api, bulk, tempurl, slo, dlo, ...
#   - no-SLO proxy ${OBJMOUNT_SWIFT_NOSLO_PORT:-8081}: the same pipeline without `slo`, so its
#     /info has no "slo" key (Hubic only ever had DLO). Tokens work on both (shared memcached).
#
# Users (tempauth; S3 access key = account:user, secret = password):
#   admin:admin / admin       .admin .reseller_admin (may set X-Account-Meta-Quota-Bytes)
#   test:tester / testing     .admin                 (what `env` exports)
#   test2:tester2 / testing2  .admin                 (a second account)
#   test:tester3 / testing3   no groups              (no access unless a container ACL allows it)
#
# Environment (each instance = one work dir; several can run with different ports):
#   OBJMOUNT_SWIFT_DIR              work dir: config, rings, storage, pid files, logs (default
#                                   /tmp/objmount-swift; its filesystem needs user xattrs)
#   OBJMOUNT_SWIFT_PORT             main proxy port (default 8080)
#   OBJMOUNT_SWIFT_NOSLO_PORT       no-SLO proxy port (default 8081)
#   OBJMOUNT_SWIFT_BACKEND_PORT     first of three backend ports: object, container, account
#                                   (default 6210, away from a packaged Swift's 6200-6202)
#   OBJMOUNT_SWIFT_MEMCACHED_PORT   memcached port (default 11211; a free one if that is taken)
#   OBJMOUNT_SWIFT_TOKEN_LIFE       tempauth token lifetime in seconds (default 86400)
#   OBJMOUNT_SWIFT_UPDATER_INTERVAL seconds between updater sweeps (default 2; see below)
#   OBJMOUNT_SWIFT_FSYNC=1          keep the object server's fsync calls (default: no-ops, this
#                                   is a test server; PUT ~180 -> ~250 MB/s)
# Settings are written at `start` when the instance is not running; `stop` first to change them.
#
# Notes on Debian 12's packages (swift 2.30.1):
#   - `apt-get install --no-install-recommends` of the six packages does NOT pull
#     python3-swiftclient (its /usr/bin/swift would shadow the Swift toolchain); it does pull
#     rsyslog, uwsgi and liberasurecode. Package scripts would start and enable the packaged
#     swift-* and memcached services on machines with an init system: while installing, a
#     temporary /usr/sbin/policy-rc.d (only if none exists) denies that.
#   - Swift reads swift.conf (hash path prefix/suffix, storage policies, constraints) ONLY from
#     /etc/swift/swift.conf (hard-coded in swift.common.utils). The package ships one
#     ("changeme" prefix/suffix, policy 0, default constraints = 10,000-entry listing pages),
#     which is used as is; it is written only if missing. Everything else lives in the work dir
#     (swift_dir = $DIR/etc: rings, *-server.conf).
#   - The daemons run as the invoking user (`user =` in the configs), so the work dir needs no
#     chown to the `swift` user. No rsync/replicators/auditors: one replica, one device.
#   - On SIGTERM the Swift daemons signal their whole process group, so each is started in its
#     own session (setsid) and stopped by its pid file.
#   - Logging: each daemon runs with -v (console log -> $DIR/log/<name>.log); `log_address`
#     points at a missing socket, so no syslog daemon is needed (the fallback UDP packets to
#     localhost:514 are dropped when nothing listens).
#   - The account's X-Account-Bytes-Used/Object-Count are pushed by the container-updater, and
#     object PUTs whose container update timed out are re-sent by the object-updater. Their
#     stock daemons (swift-*-updater, default interval 300 s) fork a child per sweep (object)
#     or per container *partition* (container), and every child re-does eventlet's
#     monkey-patching (~0.45 CPU s here): with ~300 containers the container-updater alone
#     burned ~25 CPU s per 30 s. So one small Python process (daemon "updater") runs both
#     updaters' single-threaded `run_once` sweeps in a loop every
#     ${OBJMOUNT_SWIFT_UPDATER_INTERVAL:-2} s, without their rate limits: account stats lag by a
#     few seconds; a sweep costs ~1 ms CPU per container (308 containers, 2 s: ~17% of a core).
#   - DLO and SLO segment rate limiting (after 10 segments, 1 segment/s) is off: tests use
#     small segments.
#   - /info never has a "dlo" key (the dlo middleware registers no capability; the proxy inserts
#     it when missing): DLO is always available. On the no-SLO proxy, GET of an SLO manifest
#     returns the stored JSON manifest, and `PUT ?multipart-manifest=put` succeeds (201) but
#     stores the JSON as a plain object: clients must check /info for "slo".
#   - s3api (SigV2/SigV4, path-style, region us-east-1): boto3 >= 1.36 works with default
#     settings except DeleteObjects, which Swift 2.30 rejects without a Content-MD5 header
#     (botocore now sends a CRC32 instead); add it in a before-call hook.

set -euo pipefail

DIR=${OBJMOUNT_SWIFT_DIR:-/tmp/objmount-swift}
PROXY_PORT=${OBJMOUNT_SWIFT_PORT:-8080}
NOSLO_PORT=${OBJMOUNT_SWIFT_NOSLO_PORT:-8081}
BACKEND_PORT=${OBJMOUNT_SWIFT_BACKEND_PORT:-6210}
OBJECT_PORT=$BACKEND_PORT
CONTAINER_PORT=$((BACKEND_PORT + 1))
ACCOUNT_PORT=$((BACKEND_PORT + 2))
MEMCACHED_PORT=${OBJMOUNT_SWIFT_MEMCACHED_PORT:-11211}
UPDATER_INTERVAL=${OBJMOUNT_SWIFT_UPDATER_INTERVAL:-2}
TOKEN_LIFE=${OBJMOUNT_SWIFT_TOKEN_LIFE:-86400}
PACKAGES=(swift swift-proxy swift-account swift-container swift-object memcached)
PY=/usr/bin/python3   # Debian's python3 (python3-swift); `python3` in PATH may be another one
# Start order; stop runs it backwards.
DAEMONS=(memcached account-server container-server object-server
         updater proxy-server proxy-server-noslo)
MARKER="OBJMOUNT_SWIFT_INSTANCE=$DIR"   # in every daemon's environment: "is this pid ours?"

log() { printf 'swift-server: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

# --- installation --------------------------------------------------------------------------

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$p")
        fi
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]}"
        local policy=/usr/sbin/policy-rc.d made_policy=
        if [ ! -e "$policy" ]; then
            # Keep the package scripts from starting the packaged services (port clashes).
            as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
            made_policy=1
        fi
        local rc=0
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || rc=$?
        if [ "$rc" -eq 0 ]; then
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                --no-install-recommends "${missing[@]}" >&2 || rc=$?
        fi
        [ -z "$made_policy" ] || as_root rm -f "$policy"
        [ "$rc" -eq 0 ] || die "apt-get failed ($rc)"
    fi
    if [ -e /usr/bin/swift ] && { dpkg -S /usr/bin/swift 2>/dev/null | grep -q swiftclient \
            || head -c 200 /usr/bin/swift | grep -q python; }; then
        log "warning: /usr/bin/swift is the OpenStack client (python3-swiftclient); it shadows" \
            "the Swift toolchain if that comes later in PATH. Prefer pip's python-swiftclient" \
            "in a virtualenv: apt-get remove python3-swiftclient"
    fi
    if [ ! -f /etc/swift/swift.conf ]; then
        log "writing /etc/swift/swift.conf (Swift reads it from there only)"
        as_root mkdir -p /etc/swift
        as_root sh -c 'cat > /etc/swift/swift.conf' <<'EOF'
[swift-hash]
swift_hash_path_suffix = objmount-test
swift_hash_path_prefix = objmount-test

[storage-policy:0]
name = Policy-0
default = yes

[swift-constraints]
EOF
    fi
}

# --- processes -----------------------------------------------------------------------------

pidfile() { echo "$DIR/run/$1.pid"; }

# True if pid is alive and was started by this script for this work dir.
is_ours() {
    local pid=$1
    # (a zombie's environ reads as empty or fails: not running)
    [ -n "$pid" ] && { tr '\0' '\n' < "/proc/$pid/environ"; } 2>/dev/null | grep -qxF "$MARKER"
}

running_pid() {   # prints the pid of daemon $1 if it runs
    local f pid
    f=$(pidfile "$1")
    [ -f "$f" ] || return 1
    pid=$(cat "$f" 2>/dev/null) || return 1
    is_ours "$pid" || return 1
    echo "$pid"
}

all_running() {
    local d
    for d in "${DAEMONS[@]}"; do running_pid "$d" >/dev/null || return 1; done
}

any_running() {
    local d
    for d in "${DAEMONS[@]}"; do running_pid "$d" >/dev/null && return 0; done
    return 1
}

# Members of session $1 (each daemon is a session leader) that are ours.
session_members() {
    local sid=$1 p
    for p in $(ps -o pid= -s "$sid" 2>/dev/null); do
        is_ours "$p" && echo "$p"
    done
    return 0
}

stop_daemon() {
    local name=$1 f pid i left
    f=$(pidfile "$name")
    [ -f "$f" ] || return 0
    pid=$(cat "$f" 2>/dev/null || true)
    if [ -n "$pid" ]; then
        if is_ours "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
        for i in $(seq 1 100); do   # up to 10 s for the daemon and its workers
            left=$(session_members "$pid")
            [ -z "$left" ] && break
            sleep 0.1
        done
        left=$(session_members "$pid")
        if [ -n "$left" ]; then
            log "$name did not stop on TERM; killing $left"
            # shellcheck disable=SC2086
            kill -KILL $left 2>/dev/null || true
            sleep 0.2
        fi
    fi
    rm -f "$f"
}

stop_all() {
    local i f
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do stop_daemon "${DAEMONS[i]}"; done
    # pid files of daemons this version no longer starts
    for f in "$DIR"/run/*.pid; do
        [ -e "$f" ] && stop_daemon "$(basename "$f" .pid)"
    done
    return 0
}

# Start "$@" as daemon $name: own session, stdio to its log, pid file = the daemon's pid.
launch() {
    local name=$1; shift
    OBJMOUNT_SWIFT_INSTANCE=$DIR setsid bash -c 'echo $$ > "$0"; exec "$@"' \
        "$(pidfile "$name")" "$@" < /dev/null >> "$DIR/log/$name.log" 2>&1 &
}

port_busy() {   # something listens on 127.0.0.1:$1
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- configuration -------------------------------------------------------------------------

write_config() {
    local etc=$DIR/etc user
    user=$(id -un)
    mkdir -p "$etc" "$DIR/srv/node/d1" "$DIR/run" "$DIR/log" "$DIR/cache"

    # Common [DEFAULT] for the servers. log_address is a path that does not exist: Swift then
    # falls back to UDP syslog on localhost, which needs no syslog daemon; -v logs to stderr.
    local common="swift_dir = $etc
devices = $DIR/srv/node
mount_check = false
disable_fallocate = true
bind_ip = 127.0.0.1
user = $user
log_level = INFO
log_address = $DIR/run/no-syslog
recon_cache_path = $DIR/cache"

    cat > "$etc/account-server.conf" <<EOF
[DEFAULT]
$common
bind_port = $ACCOUNT_PORT
workers = 1
log_name = account-server

[pipeline:main]
pipeline = healthcheck account-server

[app:account-server]
use = egg:swift#account
log_requests = false

[filter:healthcheck]
use = egg:swift#healthcheck
EOF

    cat > "$etc/container-server.conf" <<EOF
[DEFAULT]
$common
bind_port = $CONTAINER_PORT
workers = 1
log_name = container-server

[pipeline:main]
pipeline = healthcheck container-server

[app:container-server]
use = egg:swift#container
log_requests = false

[filter:healthcheck]
use = egg:swift#healthcheck

# Pushes container object counts/bytes to the account (X-Account-Bytes-Used); run by the
# "updater" daemon of scripts/swift-server.sh (interval $UPDATER_INTERVAL s).
[container-updater]
containers_per_second = 0
log_name = container-updater
log_level = WARNING
EOF

    cat > "$etc/object-server.conf" <<EOF
[DEFAULT]
$common
bind_port = $OBJECT_PORT
workers = 2
log_name = object-server

[pipeline:main]
pipeline = healthcheck object-server

[app:object-server]
use = egg:swift#object
log_requests = false

[filter:healthcheck]
use = egg:swift#healthcheck

# Re-sends container updates that timed out (async pendings), so listings catch up; run by
# the "updater" daemon of scripts/swift-server.sh.
[object-updater]
objects_per_second = 0
log_name = object-updater
log_level = WARNING
EOF

    # Proxy pipeline after Swift 2.30's sample proxy-server.conf: s3api right before tempauth;
    # copy, quotas, slo, dlo, versioned_writes, symlink after auth.
    local pipeline="catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl s3api tempauth copy container-quotas account-quotas slo dlo versioned_writes symlink proxy-logging proxy-server"
    write_proxy_config "$etc/proxy-server.conf" "$PROXY_PORT" proxy-server 2 "$pipeline"
    write_proxy_config "$etc/proxy-server-noslo.conf" "$NOSLO_PORT" proxy-server-noslo 1 \
        "${pipeline/ slo / }"
}

write_proxy_config() {
    local file=$1 port=$2 name=$3 workers=$4 pipeline=$5
    cat > "$file" <<EOF
[DEFAULT]
swift_dir = $DIR/etc
bind_ip = 127.0.0.1
bind_port = $port
workers = $workers
user = $(id -un)
log_name = $name
log_level = INFO
log_address = $DIR/run/no-syslog

[pipeline:main]
pipeline = $pipeline

[app:proxy-server]
use = egg:swift#proxy
allow_account_management = true
account_autocreate = true
# Default 64 KiB; at 1 MiB a 512 MiB GET went from 171 to 634 MB/s.
object_chunk_size = 1048576
client_chunk_size = 1048576

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$MEMCACHED_PORT

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:bulk]
use = egg:swift#bulk
# bulk delete (POST /v1/AUTH_x?bulk-delete) and archive extraction; defaults:
# max_deletes_per_request = 10000

[filter:tempurl]
use = egg:swift#tempurl
# keys: X-Account-Meta-Temp-URL-Key(-2), X-Container-Meta-Temp-URL-Key(-2)

[filter:s3api]
use = egg:swift#s3api
location = us-east-1

[filter:tempauth]
use = egg:swift#tempauth
token_life = $TOKEN_LIFE
user_admin_admin = admin .admin .reseller_admin
user_test_tester = testing .admin
user_test2_tester2 = testing2 .admin
user_test_tester3 = testing3

[filter:copy]
use = egg:swift#copy

[filter:container-quotas]
use = egg:swift#container_quotas

[filter:account-quotas]
use = egg:swift#account_quotas

[filter:slo]
use = egg:swift#slo
rate_limit_segments_per_sec = 0

[filter:dlo]
use = egg:swift#dlo
rate_limit_segments_per_sec = 0

[filter:versioned_writes]
use = egg:swift#versioned_writes
allow_versioned_writes = true
allow_object_versioning = true

[filter:symlink]
use = egg:swift#symlink
EOF
}

build_rings() {
    local etc=$DIR/etc kind port stamp
    # The device's port is in each ring: rebuild when the ports change (or a ring is missing).
    # With one device every partition lands on d1, so stored data stays reachable.
    stamp="part_power=10 replicas=1 ports=$ACCOUNT_PORT,$CONTAINER_PORT,$OBJECT_PORT"
    if [ "$(cat "$etc/rings.stamp" 2>/dev/null)" = "$stamp" ] && [ -f "$etc/account.ring.gz" ] &&
            [ -f "$etc/container.ring.gz" ] && [ -f "$etc/object.ring.gz" ]; then
        return 0
    fi
    for kind in account container object; do
        case $kind in
            account) port=$ACCOUNT_PORT ;;
            container) port=$CONTAINER_PORT ;;
            object) port=$OBJECT_PORT ;;
        esac
        rm -f "$etc/$kind.builder" "$etc/$kind.ring.gz"
        rm -rf "$etc/backups"
        swift-ring-builder "$etc/$kind.builder" create 10 1 1 >/dev/null
        swift-ring-builder "$etc/$kind.builder" add \
            --region 1 --zone 1 --ip 127.0.0.1 --port "$port" --device d1 --weight 100 >/dev/null
        swift-ring-builder "$etc/$kind.builder" rebalance >/dev/null
    done
    echo "$stamp" > "$etc/rings.stamp"
}

check_xattrs() {
    "$PY" - "$DIR/srv/node/d1" <<'EOF' || die "$DIR does not support user xattrs (Swift needs them); set OBJMOUNT_SWIFT_DIR"
import os, sys
p = os.path.join(sys.argv[1], ".xattr-check")
open(p, "w").close()
try:
    os.setxattr(p, "user.objmount", b"1")
finally:
    os.unlink(p)
EOF
}

# --- state shared with `env` ---------------------------------------------------------------

save_ports() {
    cat > "$DIR/ports" <<EOF
PROXY_PORT=$PROXY_PORT
NOSLO_PORT=$NOSLO_PORT
MEMCACHED_PORT=$MEMCACHED_PORT
EOF
}

load_ports() {
    local k v
    [ -f "$DIR/ports" ] || return 0
    while IFS='=' read -r k v; do
        case $k in
            PROXY_PORT) PROXY_PORT=$v ;;
            NOSLO_PORT) NOSLO_PORT=$v ;;
            MEMCACHED_PORT) MEMCACHED_PORT=$v ;;
        esac
    done < "$DIR/ports"
}

print_env() {
    cat <<EOF
export OBJMOUNT_SWIFT_DIR=$DIR
export ST_AUTH=http://127.0.0.1:$PROXY_PORT/auth/v1.0
export ST_USER=test:tester
export ST_KEY=testing
export OBJMOUNT_SWIFT_NOSLO_AUTH=http://127.0.0.1:$NOSLO_PORT/auth/v1.0
export OBJMOUNT_SWIFT_ADMIN_USER=admin:admin
export OBJMOUNT_SWIFT_ADMIN_KEY=admin
export AWS_ACCESS_KEY_ID=test:tester
export AWS_SECRET_ACCESS_KEY=testing
export AWS_ENDPOINT_URL=http://127.0.0.1:$PROXY_PORT
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
EOF
}

# --- commands ------------------------------------------------------------------------------

wait_ready() {
    local deadline=$((SECONDS + 60)) d token url
    while [ "$SECONDS" -lt "$deadline" ]; do
        for d in "${DAEMONS[@]}"; do
            if ! running_pid "$d" >/dev/null; then
                log "$d exited; last lines of $DIR/log/$d.log:"
                tail -n 20 "$DIR/log/$d.log" >&2 || true
                return 1
            fi
        done
        local port ok=1
        for port in "$PROXY_PORT" "$NOSLO_PORT"; do
            curl -sf -o /dev/null "http://127.0.0.1:$port/info" || { ok=; break; }
            # tempauth GET, then HEAD the account (autocreated; reaches the backends)
            local hdrs
            hdrs=$(curl -sf -D - -o /dev/null -H 'X-Auth-User: test:tester' \
                -H 'X-Auth-Key: testing' "http://127.0.0.1:$port/auth/v1.0" | tr -d '\r') \
                || { ok=; break; }
            token=$(sed -n 's/^[Xx]-[Aa]uth-[Tt]oken: //p' <<< "$hdrs")
            url=$(sed -n 's/^[Xx]-[Ss]torage-[Uu]rl: //p' <<< "$hdrs")
            [ -n "$token" ] && [ -n "$url" ] || { ok=; break; }
            curl -sf -o /dev/null -I -H "X-Auth-Token: $token" "$url" || { ok=; break; }
        done
        [ -n "$ok" ] && return 0
        sleep 0.3
    done
    log "timed out after 60 s waiting for the proxies; logs in $DIR/log"
    return 1
}

cmd_start() {
    local a
    for a in "$@"; do
        case $a in
            --no-slo) ;;   # the no-SLO proxy always runs alongside; see the header
            *) die "start: unknown option $a" ;;
        esac
    done
    if all_running; then
        load_ports
        print_env
        return 0
    fi
    if any_running; then
        log "some daemons of $DIR run, not all: restarting"
    fi
    stop_all   # also clears stale pid files
    install_packages
    mkdir -p "$DIR/srv/node/d1" "$DIR/run" "$DIR/log"
    check_xattrs

    local p
    for p in "$PROXY_PORT" "$NOSLO_PORT" "$OBJECT_PORT" "$CONTAINER_PORT" "$ACCOUNT_PORT"; do
        port_busy "$p" && die "port 127.0.0.1:$p is in use (see OBJMOUNT_SWIFT_*PORT)"
    done
    if port_busy "$MEMCACHED_PORT"; then
        MEMCACHED_PORT=$(free_port)
        log "memcached port ${OBJMOUNT_SWIFT_MEMCACHED_PORT:-11211} is taken; using $MEMCACHED_PORT"
    fi

    write_config
    build_rings
    save_ports

    local etc=$DIR/etc mc_user=()
    [ "$(id -u)" -eq 0 ] && mc_user=(-u root)   # memcached refuses root without -u
    launch memcached memcached -l 127.0.0.1 -p "$MEMCACHED_PORT" -U 0 -m 64 "${mc_user[@]}"
    launch account-server swift-account-server "$etc/account-server.conf" -v
    launch container-server swift-container-server "$etc/container-server.conf" -v
    if [ "${OBJMOUNT_SWIFT_FSYNC:-0}" = 1 ]; then
        launch object-server swift-object-server "$etc/object-server.conf" -v
    else
        # Same as /usr/bin/swift-object-server, with fsync/fdatasync turned into no-ops
        # (test server only: a crash may lose acknowledged writes).
        launch object-server "$PY" -c '
import os, sys
os.fsync = os.fdatasync = lambda fd: None
from swift.common.utils import parse_options
from swift.common.wsgi import run_wsgi
from swift.obj import server
conf_file, options = parse_options()
sys.exit(run_wsgi(conf_file, "object-server",
                  global_conf_callback=server.global_conf_callback, **options))
' "$etc/object-server.conf" -v
    fi
    # Both updaters' single-threaded sweeps in one process (see the header for why).
    launch updater "$PY" -c '
import sys, time
from swift.common.utils import readconf, get_logger, eventlet_monkey_patch
from swift.container.updater import ContainerUpdater
from swift.obj.updater import ObjectUpdater
eventlet_monkey_patch()
container_conf, object_conf, interval = sys.argv[1], sys.argv[2], float(sys.argv[3])
cconf = readconf(container_conf, "container-updater")
oconf = readconf(object_conf, "object-updater")
cu = ContainerUpdater(cconf, logger=get_logger(
    cconf, "container-updater", log_to_console=True, log_route="container-updater"))
ou = ObjectUpdater(oconf, logger=get_logger(
    oconf, "object-updater", log_to_console=True, log_route="object-updater"))
print("updater: sweeping every %g s" % interval, file=sys.stderr, flush=True)
while True:
    begin = time.time()
    for updater in (ou, cu):
        try:
            updater.run_once()
        except Exception:
            updater.logger.exception("sweep failed")
    now = time.time()
    cu.account_suppressions = {
        a: u for a, u in cu.account_suppressions.items() if u >= now}
    time.sleep(max(0.0, interval - (now - begin)))
' "$etc/container-server.conf" "$etc/object-server.conf" "$UPDATER_INTERVAL"
    launch proxy-server swift-proxy-server "$etc/proxy-server.conf" -v
    launch proxy-server-noslo swift-proxy-server "$etc/proxy-server-noslo.conf" -v
    sleep 0.2   # let the pid files appear

    if ! wait_ready; then
        stop_all
        die "start failed"
    fi
    log "running in $DIR: proxy 127.0.0.1:$PROXY_PORT, no-SLO proxy 127.0.0.1:$NOSLO_PORT"
    print_env
}

cmd_stop() {
    stop_all
    rm -f "$DIR/ports"
    log "stopped (data kept in $DIR)"
}

cmd_status() {
    local d pid rc=0
    for d in "${DAEMONS[@]}"; do
        if pid=$(running_pid "$d"); then
            printf '%-20s running (pid %s)\n' "$d" "$pid"
        else
            printf '%-20s stopped\n' "$d"
            rc=3
        fi
    done
    return "$rc"
}

cmd_env() {
    load_ports
    all_running || log "warning: the server in $DIR is not (fully) running; run: $0 start"
    print_env
}

case ${1:-} in
    start) shift; cmd_start "$@" ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *) echo "usage: $0 start [--no-slo] | stop | status | env" >&2; exit 2 ;;
esac
